"""Two notify replicas in one consumer group, rebalanced twice in the middle of a 2,000-person fan-out.

Replica A is the session's notify; replica B is a second app on the same database, topics and group names
(its consumers and its sender run; it serves no HTTP, the simulator calls A back). B joins while the
call-outs are being consumed and leaves before the fan-out is done: both are consumer-group rebalances
(partitions move between A and B with batches in flight). Every volunteer must get exactly one message and
every call-out exactly one message row. Real Kafka, PostgreSQL and the simulator over HTTP.

The replies' half (two dispatch replicas applying replies across rebalances) is
tests/integration/dispatch/test_two_replicas.py.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from typing import Any

from services.notify.app import create_app
from services.notify.testing import NotifyStack
from shared.events import VolunteerContactUpdated
from tests.conftest import wait_for_assignment

from .test_pipeline import request

N = 2000


async def _count(ns: NotifyStack, sql: str, *args: Any) -> int:
    async with ns.pool.acquire() as conn:
        return int(await conn.fetchval(sql, *args))


async def _until(check: Any, *, timeout: float, every: float = 0.25) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not reached within {timeout} s")
        await asyncio.sleep(every)


async def test_fan_out_survives_two_rebalances_with_one_message_each(notify_stack: NotifyStack) -> None:
    ns = notify_stack
    vids = [uuid.uuid4() for _ in range(N)]
    mobiles = {v: "+86137" + "".join(random.choice("0123456789") for _ in range(8)) for v in vids}
    for v in vids:
        await ns.producer.send(ns.contact_topic.name, VolunteerContactUpdated(
            volunteer_id=v, revision=1, mobile=mobiles[v], sms_consent=True).to_bytes(), key=str(v).encode())
    await ns.producer.flush()
    await _until(lambda: _count_ready(ns, vids), timeout=120)

    prefix = ns.runtime.extras["consumers"][0].name.split(".")[0]
    second = create_app(ns.settings, callout_topic=ns.callout_topic, contact_topic=ns.contact_topic,
                        incident_topic=ns.incident_topic, consumer_prefix=prefix, migrate=False)
    incident = uuid.uuid4()
    callouts = [request(v, incident_id=incident) for v in vids]

    async def produce(part: list[Any]) -> None:
        for e in part:
            await ns.producer.send(ns.callout_topic.name, e.to_bytes(), key=str(e.volunteer_id).encode(),
                                   headers=[("event_id", str(e.event_id).encode()),
                                            ("event_type", e.event_type.encode())])
        await ns.producer.flush()

    ids = [e.callout_id for e in callouts]

    def applied(runtime: Any) -> int:  # call-outs a replica's consumer applied
        return sum(c.stats.applied for c in runtime.extras["consumers"] if c.name.endswith(".callouts"))

    a_before = applied(ns.runtime)
    rows = "SELECT count(*) FROM messages WHERE callout_id = ANY($1::uuid[]) AND kind = 'callout'"
    await produce(callouts[: N // 2])
    async with second.router.lifespan_context(second):  # B joins: the group rebalances mid-consumption
        await wait_for_assignment(second.state.runtime, ".callouts")  # the rebalance is done: B owns partitions
        await produce(callouts[N // 2:])
        await _until(lambda: _at_least(ns, rows, ids, N * 3 // 4), timeout=180)
        by_b = applied(second.state.runtime)
    # B left (a second rebalance); A finishes alone
    await _until(lambda: _at_least(ns, "SELECT count(*) FROM messages WHERE callout_id = ANY($1::uuid[]) "
                                   "AND kind = 'callout' AND status IN ('sent', 'delivered')", ids, N), timeout=240)

    assert await _count(ns, rows, ids) == N  # one message row per call-out, none twice
    assert by_b > 0 and applied(ns.runtime) - a_before > 0, "both replicas must have consumed call-outs"
    received: Counter[str] = Counter()
    wanted = set(mobiles.values())
    after = 0
    while True:
        page = (await ns.http.get(f"{ns.sim.url}/sim/messages", params={"after": after, "limit": 10000})).json()
        received.update(m["recipient"] for m in page["messages"] if m["recipient"] in wanted)
        if not page["messages"]:
            break
        after = page["last_seq"]
    assert set(received) == wanted, f"{len(wanted - set(received))} volunteers got nothing"
    assert [r for r, n in received.items() if n != 1] == [], "a volunteer got the call-out twice"


async def _count_ready(ns: NotifyStack, vids: list[uuid.UUID]) -> bool:
    return await _count(ns, "SELECT count(*) FROM contacts WHERE volunteer_id = ANY($1::uuid[])", vids) == len(vids)


async def _at_least(ns: NotifyStack, sql: str, ids: list[uuid.UUID], n: int) -> bool:
    return await _count(ns, sql, ids) >= n

