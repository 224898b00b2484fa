"""A narrow search table: rows per (skill or *) × unit of each active volunteer (which ones: migration 0007).

``volunteer_search (key, unit_code, volunteer_id)`` with key ``<skill>@<unit code>`` or
``*@<unit code>``: "first-aiders in 柯桥区, page 3" is an index-only range scan in the page's
order, and the total an index-only count, without touching the wide volunteers table. The roster
writes it with every change of a volunteer (see ``services/roster/adapters/repository.py``).
Replaces the ``search_keys`` array column of migrations 0003/0004.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
CREATE TABLE volunteer_search (
    key           text COLLATE "C" NOT NULL,
    unit_code     text COLLATE "C" NOT NULL,
    volunteer_id  uuid NOT NULL,
    PRIMARY KEY (key, unit_code, volunteer_id)
);
CREATE INDEX volunteer_search_volunteer ON volunteer_search (volunteer_id);
INSERT INTO volunteer_search (key, unit_code, volunteer_id)
SELECT DISTINCT s || '@' || u, v.unit_code, v.id
FROM volunteers v
CROSS JOIN LATERAL unnest(array_append(v.skills, '*')) AS s
CROSS JOIN LATERAL unnest(ARRAY[left(v.unit_code, 4), left(v.unit_code, 6), left(v.unit_code, 9)]) AS u
WHERE v.active;
DROP INDEX IF EXISTS volunteers_search_keys;
ALTER TABLE volunteers DROP COLUMN IF EXISTS search_keys;
"""
    )


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
