"""Drop ``volunteers_name``: name search is a substring match (LIKE '%…%'), which a b-tree cannot serve.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DROP INDEX IF EXISTS volunteers_name")


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
