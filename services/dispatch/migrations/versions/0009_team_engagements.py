"""Engagements of a team's members: a team assigned in one incident books its members there too.

Before, only the call-out's volunteer (the team's leader) was engaged, so a member of a team on its way
to one incident could accept a call-out of another and be booked twice (break-it review). Now an
engagement row per member is written with the leader's when a team call-out enters assigned/arrived
(``ON CONFLICT DO NOTHING``: a member already engaged elsewhere stays there, and the team goes without
them), and all are freed together when it leaves (the rows share the call-out id, which is therefore no
longer unique: ``(callout_id, volunteer_id)`` is). Selection reads ``engagements`` for "engaged
elsewhere", so members are left out of other incidents' waves too. Team call-outs assigned now get
their members' rows here.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

DDL = """
ALTER TABLE engagements DROP CONSTRAINT engagements_callout_id_key;
CREATE UNIQUE INDEX engagements_callout_volunteer ON engagements (callout_id, volunteer_id);

CREATE OR REPLACE FUNCTION engagements_follow_callout() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.state IN ('assigned', 'arrived') AND NEW.state NOT IN ('assigned', 'arrived') THEN
        DELETE FROM engagements WHERE callout_id = NEW.callout_id;
    ELSIF NEW.state IN ('assigned', 'arrived')
          AND EXISTS (SELECT 1 FROM incidents WHERE incident_id = NEW.incident_id AND status = 'open') THEN
        -- already claimed by the writer: nothing; engaged through another call-out: unique violation
        INSERT INTO engagements (volunteer_id, incident_id, callout_id)
        VALUES (NEW.volunteer_id, NEW.incident_id, NEW.callout_id)
        ON CONFLICT (callout_id, volunteer_id) DO NOTHING;
        IF NEW.team_id IS NOT NULL THEN  -- the team's members, but not one engaged elsewhere
            INSERT INTO engagements (volunteer_id, incident_id, callout_id)
            SELECT m, NEW.incident_id, NEW.callout_id
            FROM teams t, unnest(t.member_ids) AS m
            WHERE t.team_id = NEW.team_id AND m <> NEW.volunteer_id
            ORDER BY m
            ON CONFLICT DO NOTHING;
        END IF;
    END IF;
    RETURN NULL;
END $$;

INSERT INTO engagements (volunteer_id, incident_id, callout_id)
SELECT m, c.incident_id, c.callout_id
FROM callouts c JOIN incidents i ON i.incident_id = c.incident_id AND i.status = 'open'
     JOIN teams t ON t.team_id = c.team_id, unnest(t.member_ids) AS m
WHERE c.state IN ('assigned', 'arrived') AND m <> c.volunteer_id
ORDER BY m
ON CONFLICT DO NOTHING;
"""


def upgrade() -> None:
    op.execute(DDL)


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
