"""Fewer search rows: skill × county, skill × town and * × county only (bulk imports write ~45% fewer rows).

City-wide and town-wide unit-only searches use the volunteers table (GIN on skills, prefix b-tree).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
DELETE FROM volunteer_search WHERE length(split_part(key, '@', 2)) = 4
    OR (key LIKE '*@%' AND length(split_part(key, '@', 2)) = 9);
"""
    )


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
