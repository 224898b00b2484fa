"""WeChat callback nonces: a signed (timestamp, nonce) pair is accepted once.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29

WeChat signs ``sha1(sorted(token, timestamp, nonce))`` and not the body, so a captured callback could be
replayed (or its body swapped) within the freshness window (``wechat_callback_max_skew_seconds``). Each
accepted pair is stored with the SHA-256 of its body; rows whose timestamp has left the window are
pruned by the callback route (such timestamps are refused as stale anyway).
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

DDL = """
CREATE TABLE wechat_callback_nonces (
    timestamp    bigint      NOT NULL,            -- the callback's signed timestamp, Unix seconds
    nonce        text        NOT NULL,
    body_sha256  bytea       NOT NULL,            -- an exact provider retry is answered, a new body refused
    seen_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (timestamp, nonce)
);
"""


def upgrade() -> None:
    op.execute(DDL)


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
