"""Incidents: a meeting point (text and WGS84 point) and the operator's callback number; operator broadcasts.

The incident columns are nullable: NULL means the incident's own place and point (rows older than the
columns too), and no callback number. ``broadcasts`` records each operator broadcast once (its id is the
idempotency key of a repeated request).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE incidents
            ADD COLUMN meeting_point  text,
            ADD COLUMN meeting_lat    double precision,
            ADD COLUMN meeting_lon    double precision,
            ADD COLUMN callback_phone text;
        CREATE TABLE broadcasts (
            broadcast_id  uuid PRIMARY KEY,
            incident_id   uuid        NOT NULL REFERENCES incidents (incident_id),
            audience      text        NOT NULL CHECK (audience IN ('assigned', 'called')),
            text          text        NOT NULL,
            sent_by       text        NOT NULL,
            sent_at       timestamptz NOT NULL,
            recipients    int         NOT NULL
        );
        CREATE INDEX broadcasts_by_incident ON broadcasts (incident_id, sent_at);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE broadcasts")
    op.execute(
        "ALTER TABLE incidents DROP COLUMN meeting_point, DROP COLUMN meeting_lat, DROP COLUMN meeting_lon, "
        "DROP COLUMN callback_phone"
    )
