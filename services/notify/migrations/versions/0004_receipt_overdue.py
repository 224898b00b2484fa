"""WeChat messages whose delivery receipt is overdue but which are not sent again by SMS.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29

The sender falls back to SMS when a WeChat message has had no delivery receipt for
``wechat_receipt_timeout_seconds``, except when sending again would only repeat what the volunteer already
has (see :meth:`services.notify.sender.Sender.fallback_unreceipted`). Such a message stays ``sent`` (a late
receipt still marks it delivered) and ``receipt_overdue`` records why it was not sent again; it then leaves
the partial index the time-out sweep reads, which would otherwise grow with every one of them.
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

DDL = """
ALTER TABLE messages ADD COLUMN receipt_overdue text
    CHECK (receipt_overdue IN ('answered', 'closed', 'expired', 'no_sms', 'listener_gap'));
DROP INDEX messages_awaiting_receipt;
CREATE INDEX messages_awaiting_receipt ON messages (sent_at)
    WHERE status = 'sent' AND channel = 'wechat' AND receipt_overdue IS NULL;
"""


def upgrade() -> None:
    op.execute(DDL)


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
