"""An incident whose village has too few volunteers escalates to its town and fills there.

Real PostgreSQL (a private schema), real Kafka: replies are published as ``ReplyReceived`` events
on the real ``notify.reply.v1`` topic and reach dispatch through its idempotent consumer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import pytest
from aiokafka import AIOKafkaProducer

from services.dispatch.units import units
from shared.events import Event, ReplyIntent, ReplyReceived, parse_event
from shared.outbox import event_headers
from shared.topics import REPLY
from shared.vocabulary import Channel

from .conftest import DispatchDb, a_town_with_villages, add_volunteers, now, running_app, token, wait_for


@pytest.fixture
async def producer(dispatch_db: DispatchDb) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(bootstrap_servers=dispatch_db.bootstrap, enable_idempotence=True)
    await p.start()
    yield p
    await p.stop()


async def send_reply(
    producer: AIOKafkaProducer, volunteer_id: UUID, callout_id: UUID | None, intent: ReplyIntent,
    *, text: str = "1", event: ReplyReceived | None = None, eta: int | None = None,
) -> ReplyReceived:
    ev = event or ReplyReceived(
        reply_id=uuid4(), volunteer_id=volunteer_id, callout_id=callout_id, intent=intent, text=text,
        channel=Channel.SMS, received_at=now(), producer="test", eta_minutes=eta, drill=True,
    )
    headers = [(k, v.encode()) for k, v in event_headers(ev).items()]
    await producer.send_and_wait(REPLY.name, ev.to_bytes(), key=str(volunteer_id).encode(), headers=headers)
    return ev


async def outbox_events(db: DispatchDb, incident_id: UUID) -> list[Event]:
    async with db.pool.acquire() as conn:
        rows = await conn.fetch("SELECT payload FROM outbox WHERE payload IS NOT NULL ORDER BY id")
    events = [parse_event(r["payload"]) for r in rows]
    return [e for e in events if e.correlation_id == incident_id]


async def test_village_short_escalates_to_town_and_fills(dispatch_db: DispatchDb, producer: AIOKafkaProducer) -> None:
    db = dispatch_db
    town, villages = a_town_with_villages(3, index=1)
    village, neighbours = villages[0], villages[1:3]
    [local] = await add_volunteers(db, village, 1)
    town_people = await add_volunteers(db, neighbours[0], 2) + await add_volunteers(db, neighbours[1], 1)
    lat, lon = units().centres[town]
    headers = await token(db, "county", town[:6])

    # The first app ticks hourly (once, at start, when nothing here is due): the village's 2 s deadline
    # cannot be handled before the villager's replies are, however slow the machine. (With a ticking app, a
    # reply consumed after the deadline left 2 outstanding and the town was called for 2.) The deadline is
    # in PostgreSQL; the second app's ticker handles it.
    async with running_app(db, tick=3600) as client:
        r = await client.post("/incidents", headers=headers, json={
            "kind": "drowning", "title": "测试溺水", "lat": lat, "lon": lon, "unit_code": village, "mode": "drill",
            "requirements": [{"skill": "first_aid", "count": 2}],
            "policy": {"wave_deadline_seconds": 2, "over_call_factor": 1},
        })
        assert r.status_code == 201, r.text
        board = r.json()
        incident_id = UUID(board["incident"]["incident_id"])
        [req] = board["requirements"]
        assert (req["level"], req["wave"], req["outstanding"]) == ("village", 1, 2)

        calls = (await client.get(f"/incidents/{incident_id}/callouts", headers=headers)).json()
        assert [c["volunteer_id"] for c in calls] == [str(local)]  # the only one in the village
        first = calls[0]

        # the villager accepts, twice (a duplicate from the phone) — counted once
        accept = await send_reply(producer, local, UUID(first["callout_id"]), ReplyIntent.ACCEPT)
        await send_reply(producer, local, UUID(first["callout_id"]), ReplyIntent.ACCEPT, event=accept)
        await send_reply(producer, local, UUID(first["callout_id"]), ReplyIntent.ETA, text="10分钟", eta=10)

        async def answered() -> bool:
            cs = (await client.get(f"/incidents/{incident_id}/callouts", headers=headers)).json()
            b = (await client.get(f"/incidents/{incident_id}", headers=headers)).json()
            return cs[0]["eta_minutes"] == 10 and b["requirements"][0]["filled"] == 1

        await wait_for(answered)

    async with running_app(db) as client:
        # the deadline passes: no one left in the village → escalated to the town, second wave there
        async def escalated() -> list[dict[str, object]] | None:
            cs = (await client.get(f"/incidents/{incident_id}/callouts", headers=headers)).json()
            return [c for c in cs if c["level"] == "town"] or None

        town_calls = await wait_for(escalated, timeout=15)
        assert len(town_calls) == 1  # outstanding 1 × factor 1
        assert {c["volunteer_id"] for c in town_calls} <= {str(v) for v in town_people}
        assert town_calls[0]["wave"] == 2

        taker = town_calls[0]
        await send_reply(producer, UUID(taker["volunteer_id"]), UUID(taker["callout_id"]), ReplyIntent.ACCEPT)

        async def filled() -> dict[str, object] | None:
            b = (await client.get(f"/incidents/{incident_id}", headers=headers)).json()
            return b if b["requirements"][0]["status"] == "filled" else None

        board = await wait_for(filled)
        assert board["requirements"][0]["filled"] == 2
        assert board["current_level"] == "town"
        kinds = [t["kind"] for t in board["timeline"]]
        assert kinds.index("escalated") < kinds.index("filled")

        # a late accept from someone else after filling never over-fills; they are told to stand down
        calls = (await client.get(f"/incidents/{incident_id}/callouts", headers=headers)).json()
        by_vol = {c["volunteer_id"]: c for c in calls}
        assert by_vol[str(local)]["state"] == "assigned" and by_vol[str(local)]["eta_minutes"] == 10
        assert len(by_vol[str(local)]["replies"]) == 2  # accept + ETA (the redelivered event is one reply)
        assert [r["note"] for r in by_vol[str(local)]["replies"]] == ["assigned", "eta_updated"]

        report = (await client.get(f"/incidents/{incident_id}/report", headers=headers)).json()
        f = report["figures"]
        assert f["level_reached"] == "town" and f["waves"] == 2
        assert f["acceptance_rate_by_level"]["village"]["rate"] == 1.0
        assert f["requirements"][0]["time_to_fill_s"] >= 2  # filled after the first deadline

    events = await outbox_events(db, incident_id)
    types = [e.event_type for e in events]
    assert types[0] == "IncidentOpened"
    assert types.count("CallOutRequested") == 2 and types.count("CallOutAssigned") == 2
    assert "IncidentEscalated" in types and "RequirementFilled" in types
    assert all(e.drill and e.correlation_id == incident_id for e in events)
    esc = next(e for e in events if e.event_type == "IncidentEscalated")
    assert (esc.from_level, esc.to_level, esc.unit_code) == ("village", "town", town)  # type: ignore[attr-defined]
    assigned = [e for e in events if e.event_type == "CallOutAssigned"]
    assert assigned[0].causation_id == accept.event_id
