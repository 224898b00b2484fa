"""Search keys: skill × county and skill × town, so "first-aiders in 柯桥区" is one GIN lookup.

``search_keys`` holds ``<skill>@<county code>`` and ``<skill>@<town code>`` for every skill of the
volunteer (a generated column, so it never drifts from ``skills`` and ``unit_code``).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
CREATE OR REPLACE FUNCTION roster_search_keys(unit_code text, skills text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(k), '{}') FROM (
        SELECT s || '@' || left(unit_code, 6) AS k FROM unnest(skills) AS s
        UNION ALL
        SELECT s || '@' || left(unit_code, 9) FROM unnest(skills) AS s
    ) keys
$$;
ALTER TABLE volunteers ADD COLUMN IF NOT EXISTS search_keys text[]
    GENERATED ALWAYS AS (roster_search_keys(unit_code, skills)) STORED;
CREATE INDEX IF NOT EXISTS volunteers_search_keys ON volunteers USING gin (search_keys) WHERE active;
"""
    )


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
