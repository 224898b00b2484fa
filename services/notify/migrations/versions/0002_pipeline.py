"""Notify's pipeline: contact projection, open call-outs, messages, replies, early receipts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29

Personal data: mobiles and openids are stored only encrypted (Fernet, ``*_enc``) with a keyed hash
(HMAC-SHA256, ``*_hash``) for looking up the sender of a reply; see services/notify/adapters/crypto.py.
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

DDL = """
CREATE TABLE contacts (
    volunteer_id      uuid PRIMARY KEY,
    revision          integer     NOT NULL,
    mobile_enc        bytea,
    mobile_hash       bytea,
    openid_enc        bytea,
    openid_hash       bytea,
    wechat_subscribed boolean     NOT NULL DEFAULT false,
    preferred_channel text        NOT NULL DEFAULT 'sms',
    sms_consent       boolean     NOT NULL DEFAULT true,
    sms_opt_out_at    timestamptz,                 -- TD/退订 received; wins over older roster snapshots
    updated_at        timestamptz NOT NULL         -- occurred_at of the snapshot
);
CREATE INDEX contacts_mobile_hash ON contacts (mobile_hash);
CREATE INDEX contacts_openid_hash ON contacts (openid_hash);

-- Call-outs a volunteer may still answer (open/assigned), to map replies and add reply codes.
CREATE TABLE callouts (
    callout_id    uuid PRIMARY KEY,
    volunteer_id  uuid        NOT NULL,
    incident_id   uuid        NOT NULL,
    reply_code    text        NOT NULL,
    drill         boolean     NOT NULL DEFAULT false,
    state         text        NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'assigned', 'closed')),
    requested_at  timestamptz NOT NULL,
    closed_at     timestamptz
);
CREATE INDEX callouts_open ON callouts (volunteer_id, requested_at DESC) WHERE state <> 'closed';

-- One message per (call-out, kind): THE idempotency key. message_id goes to the provider
-- (OutId / SessionContext / client_msg_id).
CREATE TABLE messages (
    message_id          uuid PRIMARY KEY,
    callout_id          uuid        NOT NULL,
    kind                text        NOT NULL,
    volunteer_id        uuid        NOT NULL,
    incident_id         uuid,
    causation_id        uuid,
    drill               boolean     NOT NULL DEFAULT false,
    content             jsonb       NOT NULL,      -- what the template needs (title, place, role, code...)
    status              text        NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'sending', 'sent', 'delivered', 'failed')),
    channel             text,
    provider            text,
    failed_channels     text[]      NOT NULL DEFAULT '{}',
    body                text,
    attempts            integer     NOT NULL DEFAULT 0,
    next_attempt_at     timestamptz NOT NULL DEFAULT now(),
    provider_message_id text,
    error_code          text,
    sending_since       timestamptz,
    sent_at             timestamptz,
    delivered_at        timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT messages_one_per_callout_kind UNIQUE (callout_id, kind)
);
CREATE INDEX messages_due ON messages (next_attempt_at) WHERE status = 'pending';
CREATE INDEX messages_in_doubt ON messages (sending_since) WHERE status = 'sending';
CREATE INDEX messages_awaiting_receipt ON messages (sent_at) WHERE status = 'sent' AND channel = 'wechat';
CREATE INDEX messages_provider_id ON messages (provider, provider_message_id);

CREATE OR REPLACE FUNCTION messages_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('notify_messages', '');
    RETURN NULL;
END $$;
CREATE TRIGGER messages_notify AFTER INSERT ON messages FOR EACH STATEMENT EXECUTE FUNCTION messages_notify();

-- Receipts that arrived before the send's result was stored (the provider answers fast).
CREATE TABLE early_receipts (
    provider            text        NOT NULL,
    provider_message_id text        NOT NULL,
    delivered           boolean     NOT NULL,
    error_code          text,
    reported_at         timestamptz NOT NULL,
    stored_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, provider_message_id)
);

-- Every reply, kept (unrecognised and unknown senders too); (provider, dedup_key) refuses replays.
CREATE TABLE replies (
    reply_id      uuid PRIMARY KEY,
    provider      text        NOT NULL,
    dedup_key     text        NOT NULL,
    channel       text        NOT NULL,
    volunteer_id  uuid,
    callout_id    uuid,
    sender_hash   bytea,
    sender_masked text,
    text          text        NOT NULL,
    intent        text        NOT NULL,
    eta_minutes   integer,
    received_at   timestamptz NOT NULL,
    stored_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT replies_dedup UNIQUE (provider, dedup_key)
);
CREATE INDEX replies_unknown ON replies (stored_at) WHERE volunteer_id IS NULL;
"""


def upgrade() -> None:
    op.execute(DDL)


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
