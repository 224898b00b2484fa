"""Aliyun provider message ids without the mobile: ``"{OutId}:{11 digits}"`` → ``"{OutId}:{keyed digest}"``.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03

Ids written before this revision carry the volunteer's mobile in clear (issue #14, outside check). They are
rewritten with :func:`services.notify.channels.aliyun_id_key` (the key the running service uses), so a receipt
still pending matches its message. Without notify's settings (no ``NOTIFY_ENCRYPTION_KEY`` nor AccessKey
secret in the environment) the mobile is dropped instead: messages keep ``OutId`` only (their later receipts no
longer match; the receipt-overdue path handles them) and early receipts of that form are deleted.
"""

import re

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_OLD = r":1[0-9]{10}$"


def _key() -> bytes | None:
    from services.notify.channels import ChannelConfigError, aliyun_id_key
    from shared.settings import NotifySettings

    try:
        return aliyun_id_key(NotifySettings())
    except (ChannelConfigError, ValueError):
        return None


def upgrade() -> None:
    from services.notify.channels.aliyun import aliyun_provider_message_id

    bind = op.get_bind()
    key = _key()
    for table, keys in (("messages", "message_id"), ("early_receipts", "provider_message_id")):
        rows = bind.execute(sa.text(
            f"SELECT {keys} AS k, provider_message_id AS pid FROM {table} "
            "WHERE provider = 'aliyun' AND provider_message_id ~ :old"), {"old": _OLD}).all()
        for row in rows:
            out_id, mobile = re.split(":", row.pid)[0], row.pid.rsplit(":", 1)[1]
            if key is not None:
                new: str | None = aliyun_provider_message_id(out_id, mobile, key)
            else:
                new = None if table == "early_receipts" else out_id
            if new is None:
                bind.execute(sa.text(f"DELETE FROM {table} WHERE provider = 'aliyun' AND {keys} = :k"), {"k": row.k})
            else:
                bind.execute(sa.text(f"UPDATE {table} SET provider_message_id = :new "
                                     f"WHERE provider = 'aliyun' AND {keys} = :k"), {"new": new, "k": row.k})


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
