"""Call-outs by incident: closing an incident closes notify's view of all its call-outs.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29

``close_incident_callouts`` selects an incident's call-outs; without an index it read the whole table on
every incident close (notify keeps every call-out). Built CONCURRENTLY, outside a transaction, so a long
history does not block the consumers' writes during a deploy.
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("CREATE INDEX CONCURRENTLY IF NOT EXISTS callouts_incident ON callouts (incident_id)")


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
