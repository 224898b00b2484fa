"""Volunteers: ``cert_until``, each certified skill's latest expiry, kept by a trigger, for the candidate pre-filter.

``cert_until`` is ``{skill: "YYYY-MM-DD" | null}`` (null: a certificate of that skill that does not
expire), derived from ``certificates`` by a trigger on every insert or update of them, so every
writer (the projection consumer, COPY in the benchmark) keeps it right. Reading one key of a small
jsonb map is far cheaper than a jsonpath over the certificate list; the pure selection still
checks the certificates themselves.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

DDL = """
ALTER TABLE volunteers ADD COLUMN cert_until jsonb NOT NULL DEFAULT '{}'::jsonb;

CREATE FUNCTION volunteers_cert_until() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.cert_until := coalesce((
        SELECT jsonb_object_agg(skill, expires)
        FROM (SELECT e->>'skill' AS skill,
                     CASE WHEN bool_or(coalesce(e->>'expires_on', '') = '') THEN NULL
                          ELSE max(e->>'expires_on') END AS expires
              FROM jsonb_array_elements(NEW.certificates) AS e
              WHERE e->>'skill' IS NOT NULL
              GROUP BY 1) s), '{}'::jsonb);
    RETURN NEW;
END $$;

CREATE TRIGGER volunteers_cert_until BEFORE INSERT OR UPDATE OF certificates ON volunteers
    FOR EACH ROW EXECUTE FUNCTION volunteers_cert_until();

UPDATE volunteers SET certificates = certificates;
"""


def upgrade() -> None:
    op.execute(DDL)


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
