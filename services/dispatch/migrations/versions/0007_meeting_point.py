"""Incidents: a meeting point (text and WGS84 point) and the operator's callback number.

All nullable: NULL means the incident's own place and point (rows older than the columns too), and no
callback number.

Revision ID: 0007_meeting_point
Revises: 0005
Create Date: 2026-12-03
"""

from alembic import op

revision = "0007_meeting_point"
down_revision = "0005"
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
        """
    )


def downgrade() -> None:
    op.execute(
        "ALTER TABLE incidents DROP COLUMN meeting_point, DROP COLUMN meeting_lat, DROP COLUMN meeting_lon, "
        "DROP COLUMN callback_phone"
    )
