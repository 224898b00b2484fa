"""Call-outs by volunteer, open or closed: a reply is matched against the sender's recent call-outs of all states.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29

Reply matching (``inbound.record_replies`` and ``_recent_callouts``) reads a volunteer's call-outs of the
reply window whatever their state (a reply may answer a call-out just stood down). The only index by
volunteer was partial (``WHERE state <> 'closed'``), so those reads scanned the whole table: 27 ms at
120,000 call-outs for each batch of replies, growing with history, and 84 ms a batch at 100 replies/s
(the costliest statement of the reply path). The full index replaces the partial one, which it also serves.
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # CONCURRENTLY, outside a transaction: on a long history a plain CREATE INDEX would block the
    # consumers' writes to callouts (and DROP INDEX take the table's lock) for the whole build.
    with op.get_context().autocommit_block():
        op.execute("CREATE INDEX CONCURRENTLY IF NOT EXISTS callouts_volunteer ON callouts (volunteer_id, requested_at DESC)")
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS callouts_open")


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
