"""The audit log by actor and time: the bulk-retirement check counts an administrator's recent retirements.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03

See :mod:`services.roster.handlers.bulk`.
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX IF NOT EXISTS audit_log_actor_at ON audit_log (actor, at)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS audit_log_actor_at")
