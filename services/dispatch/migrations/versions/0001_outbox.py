"""Outbox, processed events and dead letters (shared shape, from shared.outbox.OUTBOX_DDL).

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from alembic import op

from shared.outbox import OUTBOX_DDL

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(OUTBOX_DDL)


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
