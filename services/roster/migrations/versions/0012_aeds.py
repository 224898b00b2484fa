"""The AED registry, and the volunteers' opt-out of cardiac-arrest alerts (issue #17).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03

``aeds``: one row per defibrillator (:mod:`services.roster.domain.aeds`); ``serial`` is unique (the import's
upsert key); the point is WGS84. ``volunteers.cardiac_alerts``: False when the volunteer opted out of the
cardiac-arrest circle's alerts (default True: the circle calls certified people who have consented).
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
CREATE TABLE IF NOT EXISTS aeds (
    id                uuid        PRIMARY KEY,
    revision          integer     NOT NULL CHECK (revision >= 1),
    serial            text        NOT NULL UNIQUE,
    lat               float8      NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lon               float8      NOT NULL CHECK (lon BETWEEN -180 AND 180),
    address           text        NOT NULL,
    location          text        NOT NULL DEFAULT '',
    unit_code         text        NOT NULL REFERENCES units (code),
    owner             text        NOT NULL DEFAULT '',
    access_hours      text        NOT NULL DEFAULT '24/7',
    status            text        NOT NULL DEFAULT 'in_service' CHECK (status IN ('in_service', 'out_of_service')),
    pads_expire_on    date,
    battery_expire_on date,
    last_checked_on   date,
    last_checked_by   text        NOT NULL DEFAULT '',
    active            boolean     NOT NULL DEFAULT true,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS aeds_unit ON aeds (unit_code text_pattern_ops);
ALTER TABLE volunteers ADD COLUMN IF NOT EXISTS cardiac_alerts boolean NOT NULL DEFAULT true;
"""
    )


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
