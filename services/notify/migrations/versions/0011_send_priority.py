"""Send-queue priority: a cardiac arrest's messages go out ahead of any mass fan-out (issue #17).

``messages.priority`` (0 normal, 10 urgent: the call-outs and assignments of a ``cardiac_arrest`` incident);
the sender claims due messages by priority, then due time, through a due index led by the priority
(``messages_due`` stays for the other readers of due messages).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE messages ADD COLUMN priority smallint NOT NULL DEFAULT 0;
        CREATE INDEX messages_due_by_priority ON messages (priority DESC, next_attempt_at) WHERE status = 'pending';
        """
    )


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
