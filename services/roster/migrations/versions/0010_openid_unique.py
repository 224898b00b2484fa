"""A WeChat openid belongs to at most one active volunteer (the mobile already to at most one volunteer).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03

Two active volunteers with one openid made notify credit one's replies to the other and send one's
call-outs to the other's phone. The partial unique index refuses that in the database; the API and the
import check first so that they can name the volunteer holding it (409 / a row error).

Existing duplicates stop the upgrade with the volunteers named rather than being resolved by guess:
clear the wrong one's openid (``PATCH /volunteers/{id}`` with ``"wechat_openid": null``) and start again.
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
DO $$
DECLARE dup text;
BEGIN
    SELECT string_agg(ids, '; ') INTO dup FROM (
        SELECT string_agg(id::text, ', ' ORDER BY id) AS ids FROM volunteers
        WHERE active AND wechat_openid IS NOT NULL GROUP BY wechat_openid HAVING count(*) > 1
    ) d;
    IF dup IS NOT NULL THEN
        RAISE EXCEPTION 'active volunteers share a WeChat openid: %; clear the wrong ones'' openid first', dup;
    END IF;
END $$;
CREATE UNIQUE INDEX IF NOT EXISTS volunteers_active_openid ON volunteers (wechat_openid)
    WHERE active AND wechat_openid IS NOT NULL;
"""
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS volunteers_active_openid")
