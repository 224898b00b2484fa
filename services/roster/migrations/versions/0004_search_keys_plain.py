"""Search keys as a plain column written by the roster (the generated column's per-row SQL function slowed COPY).

The roster computes ``search_keys`` (:func:`services.roster.adapters.repository.search_keys`) on
every insert and update of a volunteer; existing rows are backfilled here.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
ALTER TABLE volunteers RENAME COLUMN search_keys TO search_keys_generated;
ALTER TABLE volunteers ADD COLUMN search_keys text[] NOT NULL DEFAULT '{}';
UPDATE volunteers SET search_keys = search_keys_generated;
DROP INDEX IF EXISTS volunteers_search_keys;
ALTER TABLE volunteers DROP COLUMN search_keys_generated;
DROP FUNCTION IF EXISTS roster_search_keys(text, text[]);
CREATE INDEX volunteers_search_keys ON volunteers USING gin (search_keys) WHERE active;
"""
    )


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
