"""Named administrator tokens (role, unit scope) and the audit log of roster changes.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03

See :mod:`services.roster.admins`. ``admin_tokens`` keeps only the SHA-256 of each token; ``audit_log`` is
append-only (who, role, action, subject, before, after).
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
CREATE TABLE IF NOT EXISTS admin_tokens (
    token_sha256 bytea       PRIMARY KEY,
    name         text        NOT NULL UNIQUE,
    role         text        NOT NULL CHECK (role IN ('city_admin', 'registrar')),
    unit_code    text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);
CREATE TABLE IF NOT EXISTS audit_log (
    id      bigserial   PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    actor   text        NOT NULL,
    role    text        NOT NULL,
    action  text        NOT NULL,
    subject text,
    before  jsonb,
    after   jsonb
);
CREATE INDEX IF NOT EXISTS audit_log_subject ON audit_log (subject, id);
"""
    )


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
