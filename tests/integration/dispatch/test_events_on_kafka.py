"""Dispatch's events reach the real Kafka through the outbox relay, keyed as the contract says.

Call-out events are keyed by volunteer id, so one volunteer's request and stand-down land in one
partition, in order; incident events are keyed by incident id.
"""

from __future__ import annotations

import asyncio
from uuid import UUID, uuid4

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.dispatch import usecases
from services.dispatch.units import units
from shared.events import CallOutCancelled, Event, IncidentMode, ReplyIntent, ReplyReceived, parse_event
from shared.outbox import OutboxRelay
from shared.topics import CALLOUT, INCIDENT, TopicSpec
from shared.vocabulary import Channel

from .conftest import DispatchDb, a_town_with_villages, add_volunteers, now


async def _end_offsets(consumer: AIOKafkaConsumer, topic: TopicSpec) -> dict[TopicPartition, int]:
    parts = [TopicPartition(topic.name, p) for p in range(topic.partitions)]  # the layout in shared.topics
    return dict(await consumer.end_offsets(parts))


async def test_callout_events_keyed_by_volunteer_in_order(dispatch_db: DispatchDb) -> None:
    db = dispatch_db
    town, villages = a_town_with_villages(1, index=30)
    vols = await add_volunteers(db, villages[0], 2)
    lat, lon = units().centres[town]

    consumer = AIOKafkaConsumer(bootstrap_servers=db.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        start = {**await _end_offsets(consumer, CALLOUT), **await _end_offsets(consumer, INCIDENT)}

        async with db.pool.acquire() as conn:
            incident_id = await usecases.open_incident(conn, usecases.IncidentInput(
                kind="t", title="测试", lat=lat, lon=lon, unit_code=villages[0], mode=IncidentMode.DRILL,
                requirements=[usecases.RequirementInput("first_aid", None, 1)], wave_deadline_seconds=600,
            ), usecases.Actor("t", "city", "330600"), place="x")
            first = await conn.fetchrow("SELECT callout_id, volunteer_id FROM callouts WHERE incident_id = $1 "
                                        "ORDER BY distance_m LIMIT 1", incident_id)
            async with conn.transaction():
                await usecases.apply_reply_event(conn, ReplyReceived(
                    reply_id=uuid4(), volunteer_id=first["volunteer_id"], callout_id=first["callout_id"],
                    intent=ReplyIntent.ACCEPT, text="1", channel=Channel.SMS, received_at=now(), producer="test"))

        relay = OutboxRelay(db.pool, db.bootstrap, name="dispatch-test")
        try:
            assert await relay.publish_pending() >= 6
        finally:
            await relay.stop()

        consumer.assign(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        mine: list[tuple[TopicPartition, int, bytes, Event]] = []
        deadline = asyncio.get_running_loop().time() + 20
        while len(mine) < 6 and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                for r in records:
                    if r.value is None:
                        continue
                    ev = parse_event(r.value)
                    if ev.correlation_id == incident_id:
                        mine.append((tp, r.offset, r.key, ev))
    finally:
        await consumer.stop()

    types = sorted(e.event_type for *_, e in mine)
    assert types == sorted(["IncidentOpened", "CallOutRequested", "CallOutRequested", "CallOutAssigned",
                            "RequirementFilled", "CallOutCancelled"])
    for tp, _, key, ev in mine:
        if tp.topic == CALLOUT.name:
            assert UUID(key.decode()) == ev.volunteer_id  # type: ignore[attr-defined]
        else:
            assert tp.topic == INCIDENT.name and UUID(key.decode()) == incident_id
        assert ev.drill and ev.correlation_id == incident_id
    other = next(v for v in vols if v != first["volunteer_id"])
    theirs = sorted((off, ev) for tp, off, _, ev in mine if tp.topic == CALLOUT.name
                    and ev.volunteer_id == other)  # type: ignore[attr-defined]
    assert [e.event_type for _, e in theirs] == ["CallOutRequested", "CallOutCancelled"]  # same partition, in order
    cancelled = theirs[1][1]
    assert isinstance(cancelled, CallOutCancelled) and cancelled.reason == "filled"
    filled = next(e for *_, e in mine if e.event_type == "RequirementFilled")
    assert cancelled.causation_id == filled.event_id
