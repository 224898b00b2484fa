"""The cardiac-arrest circle (issue #17): AED projection, roles of accepted volunteers, scene safety, opt-outs.

* ``aeds``: dispatch's projection of roster's AED registry (``roster.aed.v1``), newest revision wins.
* ``cardiac_roles``: one row per accepted call-out of a cardiac-arrest incident: ``cpr`` or ``fetch_aed``
  with the device. An AED being fetched (``released_at`` NULL) is held by one run only: the partial unique
  index refuses a second, from any transaction or incident. Triggers release a run when its call-out leaves
  assigned/arrived, and every run of an incident when it closes.
* ``incidents.scene_unsafe``: the operator marked the scene unsafe: the circle alerts nobody.
  ``incidents.circle_policy``: the circle's settings as opened (rings, first, cap, reply window, wanted).
* ``volunteers.cardiac_alerts``: False when the volunteer opted out of cardiac alerts.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE volunteers ADD COLUMN cardiac_alerts boolean NOT NULL DEFAULT true;
        ALTER TABLE incidents
            ADD COLUMN scene_unsafe  boolean NOT NULL DEFAULT false,
            ADD COLUMN circle_policy jsonb;
        CREATE TABLE aeds (
            aed_id            uuid PRIMARY KEY,
            revision          int              NOT NULL,
            lat               double precision NOT NULL,
            lon               double precision NOT NULL,
            address           text             NOT NULL,
            location          text             NOT NULL DEFAULT '',
            unit_code         text             NOT NULL,
            owner             text             NOT NULL DEFAULT '',
            access_hours      text             NOT NULL DEFAULT '24/7',
            status            text             NOT NULL,
            pads_expire_on    date,
            battery_expire_on date,
            retired           boolean          NOT NULL DEFAULT false,
            updated_at        timestamptz      NOT NULL DEFAULT now()
        );
        CREATE TABLE cardiac_roles (
            callout_id   uuid PRIMARY KEY REFERENCES callouts (callout_id),
            incident_id  uuid        NOT NULL REFERENCES incidents (incident_id),
            volunteer_id uuid        NOT NULL,
            role         text        NOT NULL CHECK (role IN ('cpr', 'fetch_aed')),
            aed_id       uuid        REFERENCES aeds (aed_id),
            path_m       double precision,
            assigned_at  timestamptz NOT NULL,
            released_at  timestamptz,
            CHECK ((role = 'fetch_aed') = (aed_id IS NOT NULL))
        );
        CREATE INDEX cardiac_roles_incident ON cardiac_roles (incident_id);
        CREATE UNIQUE INDEX cardiac_roles_one_run_per_aed ON cardiac_roles (aed_id)
            WHERE aed_id IS NOT NULL AND released_at IS NULL;

        CREATE FUNCTION cardiac_roles_release_callout() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE cardiac_roles SET released_at = now() WHERE callout_id = NEW.callout_id AND released_at IS NULL;
            RETURN NULL;
        END $$;
        CREATE FUNCTION cardiac_roles_release_incident() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE cardiac_roles SET released_at = now() WHERE incident_id = NEW.incident_id AND released_at IS NULL;
            RETURN NULL;
        END $$;
        CREATE TRIGGER callouts_cardiac_release AFTER UPDATE OF state ON callouts FOR EACH ROW
            WHEN (OLD.state IN ('assigned', 'arrived') AND NEW.state NOT IN ('assigned', 'arrived'))
            EXECUTE FUNCTION cardiac_roles_release_callout();
        CREATE TRIGGER incidents_cardiac_release AFTER UPDATE OF status ON incidents FOR EACH ROW
            WHEN (NEW.status = 'closed' AND OLD.status IS DISTINCT FROM NEW.status)
            EXECUTE FUNCTION cardiac_roles_release_incident();
        """
    )


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
