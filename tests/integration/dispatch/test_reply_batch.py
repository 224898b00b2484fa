"""Replies applied as a batch (``usecases.apply_reply_batch``) have the effect of one-by-one application.

The batch handler was added for the reply path's throughput (bench/reply_path.py); these tests pin
that it keeps the rules of :func:`usecases.apply_reply_event`: each reply recorded once, applied in
order, a reply id re-published under a new event id applied once, and a failing batch falls back
to one-by-one application through the consumer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from services.dispatch import usecases
from shared.consumer import IdempotentConsumer
from shared.events import ReplyIntent, ReplyReceived
from shared.topics import REPLY
from shared.vocabulary import Channel

from .conftest import DispatchDb, a_town_with_villages, add_volunteers, now, running_app, token


@pytest.fixture
async def client(dispatch_db: DispatchDb) -> AsyncIterator[httpx.AsyncClient]:
    # The deadline ticker stays idle (an hour's tick; it runs once at start, before any incident).
    # A reopened requirement is due at once, so a ticking app could call the next wave between two
    # one-by-one transactions but not inside one batch, and the comparison would measure the race.
    async with running_app(dispatch_db, consumers=(), tick=3600) as c:
        yield c


def _reply(vid: UUID, cid: UUID, intent: ReplyIntent, *, reply_id: UUID | None = None,
           eta: int | None = None) -> ReplyReceived:
    return ReplyReceived(reply_id=reply_id or uuid4(), volunteer_id=vid, callout_id=cid, intent=intent, text=intent.value,
                         eta_minutes=eta, channel=Channel.SMS, received_at=now(), producer="test")


async def _incident(db: DispatchDb, client: httpx.AsyncClient, index: int, n: int, count: int | None = None,
                    factor: float = 1) -> tuple[str, dict[str, str], dict[str, Any]]:
    _town, villages = a_town_with_villages(1, index=index)
    await add_volunteers(db, villages[0], n)
    op = await token(db)
    r = await client.post("/incidents", headers=op, json={
        "kind": "drowning", "title": "批量回复", **_point(villages[0]), "unit_code": villages[0], "mode": "drill",
        "requirements": [{"skill": "first_aid", "count": count or n}],
        "policy": {"over_call_factor": factor, "max_level": "village", "wave_deadline_seconds": 600},
    })
    assert r.status_code == 201, r.text
    iid = r.json()["incident"]["incident_id"]
    calls = {c["volunteer_id"]: c for c in (await client.get(f"/incidents/{iid}/callouts", headers=op)).json()}
    return iid, op, calls


def _point(village: str) -> dict[str, float]:
    from services.dispatch.units import units

    lat, lon = units().centres[village[:9]]
    return {"lat": lat, "lon": lon}


async def test_a_batch_applies_each_reply_once_in_order(dispatch_db: DispatchDb, client: httpx.AsyncClient) -> None:
    iid, op, calls = await _incident(dispatch_db, client, 71, 3)
    (v1, c1), (v2, c2), (v3, c3) = [(UUID(v), UUID(c["callout_id"])) for v, c in calls.items()]
    again = uuid4()
    batch = [
        _reply(v1, c1, ReplyIntent.ACCEPT),
        _reply(v1, c1, ReplyIntent.ETA, eta=20),
        _reply(v1, c1, ReplyIntent.ARRIVED),
        _reply(v2, c2, ReplyIntent.DECLINE, reply_id=again),
        _reply(v2, c2, ReplyIntent.DECLINE, reply_id=again),  # the same reply re-published: applied once
        _reply(v3, c3, ReplyIntent.ACCEPT),
    ]
    async with dispatch_db.pool.acquire() as conn, conn.transaction():
        await usecases.apply_reply_batch(conn, batch)
    final = {c["volunteer_id"]: c for c in (await client.get(f"/incidents/{iid}/callouts", headers=op)).json()}
    assert [(x["note"], x["applied"]) for x in final[str(v1)]["replies"]] == [
        ("assigned", True), ("eta_updated", True), ("arrived", True)]
    assert final[str(v1)]["state"] == "arrived" and final[str(v1)]["eta_minutes"] == 20
    assert [x["note"] for x in final[str(v2)]["replies"]] == ["declined"] and final[str(v2)]["state"] == "declined"
    assert final[str(v3)]["state"] == "assigned"
    board = (await client.get(f"/incidents/{iid}", headers=op)).json()
    assert board["requirements"][0]["filled"] == 2

    async with dispatch_db.pool.acquire() as conn, conn.transaction():  # the whole batch again: nothing new
        await usecases.apply_reply_batch(conn, batch)
    again_final = (await client.get(f"/incidents/{iid}/callouts", headers=op)).json()
    assert sum(len(c["replies"]) for c in again_final) == 5


async def test_the_consumer_uses_the_batch_handler_and_falls_back_on_a_failing_reply(
    dispatch_db: DispatchDb, client: httpx.AsyncClient,
) -> None:
    iid, op, calls = await _incident(dispatch_db, client, 72, 2)
    (v1, c1), (v2, c2) = [(UUID(v), UUID(c["callout_id"])) for v, c in calls.items()]
    applied_in_batches: list[int] = []

    async def batch_handler(conn: Any, items: Any) -> None:
        applied_in_batches.append(len(items))
        await usecases.apply_reply_batch(conn, items)

    consumer = IdempotentConsumer(name=f"dispatch-test.replies.{uuid4().hex[:6]}", topic=REPLY,
                                  handler=usecases.apply_reply_event, batch_handler=batch_handler,
                                  pool=lambda: dispatch_db.pool, dead_letters=_no_dlq)

    class Rec:
        def __init__(self, ev: ReplyReceived, offset: int) -> None:
            self.topic, self.partition, self.offset, self.key = REPLY.name, 0, offset, str(ev.volunteer_id).encode()
            self.value, self.headers = ev.to_bytes(), [("event_id", str(ev.event_id).encode())]

    good = _reply(v1, c1, ReplyIntent.ACCEPT)
    await consumer.process([Rec(good, 1)])
    assert applied_in_batches == [1] and consumer.stats.applied == 1

    # a batch handler that fails after applying: its writes are rolled back and the reply applied once
    bad = _reply(v2, c2, ReplyIntent.ACCEPT)
    broken = _BrokenOnce(usecases.apply_reply_batch)
    consumer._batch_handler = broken  # noqa: SLF001 - the fallback path is what is tested
    await consumer.process([Rec(bad, 2)])
    assert broken.calls == 1 and consumer.stats.applied == 2  # the fallback applied it one by one
    final = {c["volunteer_id"]: c for c in (await client.get(f"/incidents/{iid}/callouts", headers=op)).json()}
    assert final[str(v1)]["state"] == "assigned" and final[str(v2)]["state"] == "assigned"
    assert [len(c["replies"]) for c in final.values()] == [1, 1]


async def test_a_batch_that_fills_and_reopens_a_requirement_ends_as_one_by_one_does(
    dispatch_db: DispatchDb, client: httpx.AsyncClient,
) -> None:
    """Mid-batch fill (stand-downs of call-outs later in the batch) and reopen: the same board, events, timeline.

    The batch handler decides replies in memory and writes once; a fill stands down call-outs that
    later replies of the same batch answer, so it must write and re-read there. Two incidents get the
    same script, one as a batch, one reply per transaction through :func:`usecases.apply_reply_event`.
    """
    script = [  # (volunteer by position, intent, eta)
        (0, ReplyIntent.ACCEPT, None), (1, ReplyIntent.ETA, 15),  # fills 2 of 2: 2 and 3 are stood down
        (2, ReplyIntent.ACCEPT, None),  # after the stand-down
        (0, ReplyIntent.DECLINE, None),  # withdrawn: reopens, filled 1
        (3, ReplyIntent.ARRIVED, None),  # still stood down
        (1, ReplyIntent.ARRIVED, None), (0, ReplyIntent.ACCEPT, None),  # declined → assigned again: fills again
    ]
    outcomes = []
    for index, batched in ((62, True), (63, False)):  # towns no other test of the session uses
        iid, op, calls = await _incident(dispatch_db, client, index, 4, count=2, factor=2)
        people = [(UUID(v), UUID(c["callout_id"])) for v, c in calls.items()]
        events = [_reply(*people[who], intent, eta=eta) for who, intent, eta in script]
        if batched:
            async with dispatch_db.pool.acquire() as conn, conn.transaction():
                await usecases.apply_reply_batch(conn, events)
        else:
            for ev in events:
                async with dispatch_db.pool.acquire() as conn, conn.transaction():
                    await usecases.apply_reply_event(conn, ev)
        final = {c["volunteer_id"]: c for c in (await client.get(f"/incidents/{iid}/callouts", headers=op)).json()}
        board = (await client.get(f"/incidents/{iid}", headers=op)).json()
        who = {str(v): i for i, (v, _) in enumerate(people)}
        async with dispatch_db.pool.acquire() as conn:
            sent = [(r["t"], who[r["key"]]) for r in await conn.fetch(
                "SELECT headers->>'event_type' AS t, key FROM outbox WHERE headers->>'correlation_id' = $1 "
                "AND topic = 'dispatch.callout.v1' AND headers->>'event_type' <> 'CallOutRequested' ORDER BY id",
                iid)]
            kinds = [(r["kind"], who.get(r["v"])) for r in await conn.fetch(
                "SELECT kind, detail->>'volunteer_id' AS v FROM timeline WHERE incident_id = $1 "
                "AND kind NOT IN ('opened', 'wave') ORDER BY id", UUID(iid))]
        outcomes.append({
            "callouts": [(final[str(v)]["state"], final[str(v)]["eta_minutes"],
                          [(x["note"], x["applied"]) for x in final[str(v)]["replies"]]) for v, _ in people],
            "requirement": (board["requirements"][0]["filled"], board["requirements"][0]["status"]),
            "events": sent, "timeline": kinds,
        })
    batch, one_by_one = outcomes
    assert batch == one_by_one
    assert batch["requirement"] == (2, "filled")
    assert batch["callouts"][2][0] == "cancelled" and batch["callouts"][2][2] == [("after_stand_down", False)]
    assert ("CallOutCancelled", 3) in batch["events"]


class _BrokenOnce:
    """A batch handler that applies the batch and then fails: the consumer must roll it back and fall back."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.calls = inner, 0

    async def __call__(self, conn: Any, items: Any) -> None:
        self.calls += 1
        await self.inner(conn, items)
        raise ValueError("broken after applying")


async def _no_dlq(topic: str, value: bytes | None, key: bytes | None, headers: dict[str, str]) -> None:
    raise AssertionError(f"nothing should be dead-lettered here ({topic})")
