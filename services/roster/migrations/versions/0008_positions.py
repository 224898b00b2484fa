"""Volunteers' positions may be approximate: the centre of the smallest division known for them.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03

``position_approximate`` is true when ``lat``/``lon`` is the centre of the volunteer's unit (or of its
nearest ancestor with a centre) rather than their own point (:mod:`services.roster.domain.positions`).
Volunteers stored before this revision keep what they have (no point: ranked last) until their next
import or edit; the column's default writes nothing into existing rows (PostgreSQL 11+ stores it in the
catalogue).
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE volunteers ADD COLUMN IF NOT EXISTS position_approximate boolean NOT NULL DEFAULT false")


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
