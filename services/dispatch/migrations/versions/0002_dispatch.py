"""Dispatch's own tables: roster projection, incidents, requirements, call-outs, replies, messages,
timeline, operators and the append-only audit log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

DDL = """
-- roster projection (from roster.volunteer-profile.v1 and roster.team.v1); no contact data
CREATE TABLE volunteers (
    volunteer_id      uuid PRIMARY KEY,
    revision          int         NOT NULL,
    display_name      text        NOT NULL DEFAULT '',
    unit_code         text        NOT NULL,
    lat               double precision,
    lon               double precision,
    skills            text[]      NOT NULL DEFAULT '{}',
    certificates      jsonb       NOT NULL DEFAULT '[]'::jsonb,
    team_ids          uuid[]      NOT NULL DEFAULT '{}',
    availability      text        NOT NULL DEFAULT 'available',
    unavailable_until timestamptz,
    consent           boolean     NOT NULL,
    active            boolean     NOT NULL DEFAULT true,
    retired           boolean     NOT NULL DEFAULT false,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX volunteers_unit ON volunteers (unit_code text_pattern_ops) WHERE active AND consent AND NOT retired;
CREATE INDEX volunteers_skills ON volunteers USING gin (skills);

CREATE TABLE teams (
    team_id     uuid PRIMARY KEY,
    revision    int     NOT NULL,
    name        text    NOT NULL,
    team_type   text    NOT NULL,
    unit_code   text    NOT NULL,
    leader_id   uuid,
    member_ids  uuid[]  NOT NULL DEFAULT '{}',
    lat         double precision,
    lon         double precision,
    active      boolean NOT NULL DEFAULT true,
    retired     boolean NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE incidents (
    incident_id            uuid PRIMARY KEY,
    kind                   text        NOT NULL,
    title                  text        NOT NULL,
    mode                   text        NOT NULL,
    lat                    double precision NOT NULL,
    lon                    double precision NOT NULL,
    unit_code              text        NOT NULL,
    place                  text        NOT NULL,
    start_level            text        NOT NULL,
    max_level              text        NOT NULL,
    over_call_factor       double precision NOT NULL,
    wave_deadline_seconds  int         NOT NULL,
    status                 text        NOT NULL DEFAULT 'open',   -- open | closed
    outcome                text,
    opened_by              text        NOT NULL,
    opened_at              timestamptz NOT NULL,
    closed_at              timestamptz,
    opened_event_id        uuid        NOT NULL
);
CREATE INDEX incidents_open ON incidents (opened_at DESC);

CREATE TABLE requirements (
    requirement_id  uuid PRIMARY KEY,
    incident_id     uuid NOT NULL REFERENCES incidents,
    position        int  NOT NULL,
    skill           text,
    team_type       text,
    count           int  NOT NULL CHECK (count > 0),
    filled          int  NOT NULL DEFAULT 0 CHECK (filled >= 0 AND filled <= count),
    level           text NOT NULL,
    wave            int  NOT NULL DEFAULT 0,
    status          text NOT NULL DEFAULT 'open',  -- open | filled | unfilled | stood_down | closed
    deadline_at     timestamptz,
    filled_at       timestamptz
);
CREATE INDEX requirements_due ON requirements (deadline_at) WHERE deadline_at IS NOT NULL;
CREATE INDEX requirements_incident ON requirements (incident_id);

CREATE TABLE callouts (
    callout_id      uuid PRIMARY KEY,
    incident_id     uuid NOT NULL REFERENCES incidents,
    requirement_id  uuid NOT NULL REFERENCES requirements,
    volunteer_id    uuid NOT NULL,
    team_id         uuid,
    wave            int  NOT NULL,
    level           text NOT NULL,
    reply_code      text NOT NULL,
    state           text NOT NULL DEFAULT 'requested',
    distance_m      double precision,
    manual          boolean NOT NULL DEFAULT false,
    requested_at    timestamptz NOT NULL,
    respond_by      timestamptz NOT NULL,
    accepted_at     timestamptz,
    arrived_at      timestamptz,
    eta_minutes     int,
    cancel_reason   text,
    last_reply_at   timestamptz,
    UNIQUE (incident_id, volunteer_id)   -- nobody is called twice in one incident
);
CREATE INDEX callouts_requirement ON callouts (requirement_id, state);
CREATE INDEX callouts_volunteer ON callouts (volunteer_id, requested_at DESC);
CREATE UNIQUE INDEX callouts_open_code ON callouts (volunteer_id, reply_code)
    WHERE state IN ('requested', 'timed_out', 'assigned');

CREATE TABLE replies (
    reply_id      uuid PRIMARY KEY,
    event_id      uuid NOT NULL,
    callout_id    uuid,
    incident_id   uuid,
    volunteer_id  uuid,
    intent        text NOT NULL,
    text          text NOT NULL,
    eta_minutes   int,
    channel       text NOT NULL,
    sender        text,
    received_at   timestamptz NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    applied       boolean NOT NULL DEFAULT false,
    note          text NOT NULL
);
CREATE INDEX replies_callout ON replies (callout_id, received_at);
CREATE INDEX replies_incident ON replies (incident_id);
CREATE INDEX replies_unmatched ON replies (received_at) WHERE callout_id IS NULL;

CREATE TABLE messages (
    event_id     uuid PRIMARY KEY,
    message_id   uuid NOT NULL,
    callout_id   uuid NOT NULL,
    incident_id  uuid,
    volunteer_id uuid NOT NULL,
    kind         text NOT NULL,
    channel      text NOT NULL,
    provider     text NOT NULL,
    status       text NOT NULL,    -- sent | delivered | failed
    error_code   text,
    fallback     boolean NOT NULL DEFAULT false,
    occurred_at  timestamptz NOT NULL
);
CREATE INDEX messages_incident ON messages (incident_id);

CREATE TABLE timeline (
    id           bigserial PRIMARY KEY,
    incident_id  uuid NOT NULL,
    at           timestamptz NOT NULL,
    kind         text NOT NULL,
    detail       jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX timeline_incident ON timeline (incident_id, id);

CREATE TABLE operators (
    token_sha256  text PRIMARY KEY,
    name          text NOT NULL,
    role          text NOT NULL,   -- city | county | town | viewer
    unit_code     text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);

CREATE TABLE audit_log (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    operator     text NOT NULL,
    role         text NOT NULL,
    action       text NOT NULL,
    incident_id  uuid,
    before       jsonb,
    after        jsonb
);
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
"""


def upgrade() -> None:
    op.execute(DDL)


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
