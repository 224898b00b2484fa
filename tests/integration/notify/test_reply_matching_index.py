"""Notify's call-outs are read through indexes: a volunteer's recent ones of every state (reply matching) and
an incident's (its close), not the whole table.

A reply may answer a call-out just stood down, so matching reads closed call-outs too. Until migration
0006 the only index by volunteer was partial (open call-outs), and every batch of replies scanned all of
notify's call-outs (27 ms at 120,000, growing with history). With sequential scans priced out, the
planner still scans when no index can answer: the plan is the test.
"""

from __future__ import annotations

import uuid

from services.notify.testing import NotifyStack


async def test_recent_callouts_of_a_volunteer_are_read_by_index(notify_stack: NotifyStack) -> None:
    async with notify_stack.pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(r[0] for r in await conn.fetch(
            "EXPLAIN SELECT callout_id, reply_code, requested_at, state <> 'closed' AS open FROM callouts "
            "WHERE volunteer_id = $1 AND requested_at > now() - make_interval(secs => $2) "
            "ORDER BY requested_at DESC",
            uuid.uuid4(), 86_400.0,
        ))
    assert "Seq Scan" not in plan, plan
    assert "callouts_volunteer" in plan, plan


async def test_an_incidents_call_outs_are_read_by_index(notify_stack: NotifyStack) -> None:
    async with notify_stack.pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(r[0] for r in await conn.fetch(
            "EXPLAIN SELECT callout_id FROM callouts WHERE incident_id = $1 AND state <> 'closed'", uuid.uuid4(),
        ))
    assert "callouts_incident" in plan, plan  # not a scan of the table or of another index
