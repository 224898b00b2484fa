"""Call-outs: ``released_at``, when an arrived volunteer's service ended, for service hours (issue #19).

Service is counted from arrival (``arrived_at``) to release: the moment the call-out leaves ``arrived``
(stood down, removed, moved to another incident) or its incident closes (arrived call-outs stay
``arrived`` after a close). Both are set here by triggers, so every writer — the use cases, a
migration, an operator's SQL — keeps the record: ``callouts_release`` (BEFORE UPDATE OF state, only for
rows leaving ``arrived``) and ``incidents_release_arrived`` (AFTER UPDATE OF status, on a close). Rows of
incidents closed before this migration take their incident's ``closed_at``.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

DDL = """
ALTER TABLE callouts ADD COLUMN released_at timestamptz;

UPDATE callouts c SET released_at = i.closed_at
FROM incidents i
WHERE i.incident_id = c.incident_id AND c.state = 'arrived' AND i.status <> 'open' AND c.released_at IS NULL;

CREATE FUNCTION callouts_release() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.released_at := coalesce(NEW.released_at, now());
    RETURN NEW;
END $$;

CREATE TRIGGER callouts_release BEFORE UPDATE OF state ON callouts FOR EACH ROW
    WHEN (OLD.state = 'arrived' AND NEW.state <> 'arrived') EXECUTE FUNCTION callouts_release();

CREATE FUNCTION incidents_release_arrived() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE callouts SET released_at = coalesce(NEW.closed_at, now())
    WHERE incident_id = NEW.incident_id AND state = 'arrived' AND released_at IS NULL;
    RETURN NULL;
END $$;

CREATE TRIGGER incidents_release_arrived AFTER UPDATE OF status ON incidents FOR EACH ROW
    WHEN (OLD.status = 'open' AND NEW.status <> 'open') EXECUTE FUNCTION incidents_release_arrived();

CREATE INDEX callouts_volunteer_arrived ON callouts (volunteer_id, arrived_at) WHERE arrived_at IS NOT NULL;
"""


def upgrade() -> None:
    op.execute(DDL)


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
