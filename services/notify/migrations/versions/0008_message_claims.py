"""Who claimed a message for sending, and which claim: in-doubt resolution by liveness, records by ownership.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29

``claimed_by`` is the claiming sender's instance id; a live sender holds a session advisory lock on it
(:mod:`services.notify.sender`), so another replica resolves a ``sending`` message in doubt only when its
claimer is gone, not merely because it started earlier. ``claim_id`` names one claim; a provider's answer
is recorded only on rows that still carry it, so an answer arriving after the row was resolved elsewhere
changes nothing and emits nothing. Both nullable without default: adding them rewrites nothing.
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE messages ADD COLUMN IF NOT EXISTS claimed_by uuid, ADD COLUMN IF NOT EXISTS claim_id uuid")


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
