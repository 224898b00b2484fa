"""Messages of operator broadcasts: several per call-out, one per broadcast.

``broadcast_id`` names the broadcast a ``broadcast`` message belongs to (NULL for every other kind). The
one-message-per-(call-out, kind) constraint keeps its name and now includes it, with NULLs not distinct
(PostgreSQL 15), so every other kind is still one per call-out and a broadcast is one per call-out and
broadcast: the same broadcast delivered twice inserts nothing.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE messages ADD COLUMN IF NOT EXISTS broadcast_id uuid;
        ALTER TABLE messages DROP CONSTRAINT messages_one_per_callout_kind;
        ALTER TABLE messages ADD CONSTRAINT messages_one_per_callout_kind
            UNIQUE NULLS NOT DISTINCT (callout_id, kind, broadcast_id);
        """
    )


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
