"""Replies by call-out: the receipt time-out sweep asks, per overdue WeChat message, whether it was answered.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29

``replies`` keeps every reply; without this index the sweep's ``EXISTS (… WHERE callout_id = …)`` read
the whole table each time it found overdue messages.
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX replies_callout ON replies (callout_id) WHERE callout_id IS NOT NULL")


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
