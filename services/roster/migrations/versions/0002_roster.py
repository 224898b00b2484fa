"""Roster tables: units, volunteers, teams, team members, and the indexes searches use.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
CREATE TABLE IF NOT EXISTS units (
    code          text PRIMARY KEY CHECK (code ~ '^[0-9]{6}([0-9]{3}([0-9]{3})?)?$'),
    name          text NOT NULL,
    level         text NOT NULL CHECK (level IN ('city', 'county', 'town', 'village')),
    parent_code   text REFERENCES units (code),
    centre_lat    double precision,          -- as given in the source, in centre_datum
    centre_lon    double precision,
    centre_datum  text CHECK (centre_datum IN ('GCJ-02', 'WGS84')),
    lat           double precision,          -- WGS84
    lon           double precision
);
CREATE INDEX IF NOT EXISTS units_parent ON units (parent_code);

CREATE TABLE IF NOT EXISTS volunteers (
    id                 uuid PRIMARY KEY,
    revision           integer NOT NULL CHECK (revision >= 1),
    name               text NOT NULL,
    mobile             text NOT NULL UNIQUE CHECK (mobile ~ '^\\+861[3-9][0-9]{9}$'),
    unit_code          text NOT NULL REFERENCES units (code),
    lat                double precision,     -- WGS84
    lon                double precision,
    skills             text[] NOT NULL DEFAULT '{}',
    certificates       jsonb NOT NULL DEFAULT '[]'::jsonb,
    availability       text NOT NULL DEFAULT 'available' CHECK (availability IN ('available', 'unavailable', 'off_duty')),
    unavailable_until  timestamptz,
    wechat_openid      text,
    wechat_subscribed  boolean NOT NULL DEFAULT false,
    preferred_channel  text NOT NULL DEFAULT 'sms',
    consent            boolean NOT NULL DEFAULT true,
    sms_consent        boolean NOT NULL DEFAULT true,
    active             boolean NOT NULL DEFAULT true,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
-- Search by unit subtree (code prefix) and skill: prefix scans need text_pattern_ops.
CREATE INDEX IF NOT EXISTS volunteers_unit ON volunteers (unit_code text_pattern_ops, id) WHERE active;
CREATE INDEX IF NOT EXISTS volunteers_skills ON volunteers USING gin (skills) WHERE active;
CREATE INDEX IF NOT EXISTS volunteers_name ON volunteers (name);

CREATE TABLE IF NOT EXISTS teams (
    id          uuid PRIMARY KEY,
    revision    integer NOT NULL CHECK (revision >= 1),
    name        text NOT NULL,
    team_type   text NOT NULL,
    unit_code   text NOT NULL REFERENCES units (code),
    leader_id   uuid REFERENCES volunteers (id),
    lat         double precision,
    lon         double precision,
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS teams_active_name ON teams (name) WHERE active;
CREATE INDEX IF NOT EXISTS teams_unit ON teams (unit_code text_pattern_ops) WHERE active;

CREATE TABLE IF NOT EXISTS team_members (
    team_id       uuid NOT NULL REFERENCES teams (id),
    volunteer_id  uuid NOT NULL REFERENCES volunteers (id),
    PRIMARY KEY (team_id, volunteer_id)
);
CREATE INDEX IF NOT EXISTS team_members_volunteer ON team_members (volunteer_id);
"""
    )


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
