"""Engagements: a volunteer is assigned (assigned or arrived) in at most one open incident, enforced here.

One row per engaged volunteer: ``volunteer_id`` is the primary key, so a second engagement of the same
person, in any incident and from any transaction, is refused by PostgreSQL itself (issue #14: one person
accepted two incidents at once, because the "already engaged" rule was only applied when a wave was
chosen). The reply path claims a row with ``INSERT … ON CONFLICT DO NOTHING`` before it assigns, and a
concurrent claim of the same person waits on the key and then finds it taken
(``services.dispatch.usecases._apply_replies``).

Triggers keep the table equal to "the call-outs in state assigned/arrived of open incidents":

* ``callouts`` (statement level, INSERT and UPDATE): a row that leaves assigned/arrived (declined, stood
  down, removed …) frees its volunteer; a row that enters them is claimed, and if the volunteer is
  already engaged through another call-out the statement fails with a unique violation — the backstop
  for any writer that did not claim first;
* ``incidents`` (UPDATE of status): closing an incident frees everyone engaged in it (arrived call-outs
  stay ``arrived`` after a close).

Existing rows: the earliest acceptance of each volunteer in an open incident is kept as their
engagement (a double booking made before this migration stays visible on the boards, not here).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

DDL = """
CREATE TABLE engagements (
    volunteer_id  uuid PRIMARY KEY,
    incident_id   uuid NOT NULL REFERENCES incidents (incident_id),
    callout_id    uuid NOT NULL UNIQUE REFERENCES callouts (callout_id),
    since         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX engagements_incident_idx ON engagements (incident_id);

INSERT INTO engagements (volunteer_id, incident_id, callout_id, since)
SELECT DISTINCT ON (c.volunteer_id) c.volunteer_id, c.incident_id, c.callout_id, coalesce(c.accepted_at, now())
FROM callouts c JOIN incidents i ON i.incident_id = c.incident_id AND i.status = 'open'
WHERE c.state IN ('assigned', 'arrived')
ORDER BY c.volunteer_id, c.accepted_at NULLS LAST, c.callout_id;

CREATE FUNCTION engagements_claim_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO engagements (volunteer_id, incident_id, callout_id)
    SELECT n.volunteer_id, n.incident_id, n.callout_id
    FROM new_rows n JOIN incidents i ON i.incident_id = n.incident_id AND i.status = 'open'
    WHERE n.state IN ('assigned', 'arrived')
    ON CONFLICT (callout_id) DO NOTHING;
    RETURN NULL;
END $$;

CREATE FUNCTION engagements_follow_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM engagements e USING new_rows n
    WHERE e.callout_id = n.callout_id AND n.state NOT IN ('assigned', 'arrived');
    INSERT INTO engagements (volunteer_id, incident_id, callout_id)
    SELECT n.volunteer_id, n.incident_id, n.callout_id
    FROM new_rows n JOIN old_rows o ON o.callout_id = n.callout_id
         JOIN incidents i ON i.incident_id = n.incident_id AND i.status = 'open'
    WHERE n.state IN ('assigned', 'arrived') AND o.state NOT IN ('assigned', 'arrived')
    ON CONFLICT (callout_id) DO NOTHING;
    RETURN NULL;
END $$;

CREATE FUNCTION engagements_release_closed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM engagements e USING new_rows n
    WHERE e.incident_id = n.incident_id AND n.status <> 'open';
    RETURN NULL;
END $$;

CREATE TRIGGER callouts_engagements_insert AFTER INSERT ON callouts
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION engagements_claim_inserted();
CREATE TRIGGER callouts_engagements_update AFTER UPDATE ON callouts
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION engagements_follow_updated();
CREATE TRIGGER incidents_engagements_close AFTER UPDATE ON incidents
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION engagements_release_closed();
"""


def upgrade() -> None:
    op.execute(DDL)


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
