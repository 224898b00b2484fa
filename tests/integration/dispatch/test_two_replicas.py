"""Two dispatch replicas in the replies consumer group, rebalanced twice while 2,000 replies (each sent twice) arrive.

Replica A runs the replies consumer from the start; replica B (the same settings, so the same group) joins
after the first half of the replies and leaves before the last are applied: two consumer-group rebalances
with batches in flight. Each of the 2,000 volunteers of one wave declines, and every reply event is
published twice (a redelivery). Every reply must be recorded and applied exactly once. Real Kafka and
PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from typing import Any
from uuid import UUID, uuid4

import pytest
from aiokafka import AIOKafkaProducer

from services.dispatch import usecases
from services.dispatch.adapters.projection import upsert_profile
from services.dispatch.app import create_app
from services.dispatch.units import units
from shared.events import CertificateInfo, IncidentMode, ReplyIntent, ReplyReceived, VolunteerProfileUpdated
from shared.topics import REPLY
from shared.vocabulary import Channel
from tests.conftest import StackAddresses, wait_for_assignment

from .conftest import (
    DispatchDb,
    a_town_with_villages,
    dispatch_schema,
    now,
    running_app,
    settings_for,
    wait_for,
)

N = 2000


@pytest.fixture(scope="module")
async def dispatch_db(stack: StackAddresses) -> AsyncIterator[DispatchDb]:
    async with dispatch_schema(stack) as db:
        yield db


async def test_replies_applied_once_across_two_rebalances(dispatch_db: DispatchDb) -> None:
    db = dispatch_db
    _, villages = a_town_with_villages(1, index=29)
    lat, lon = units().centres[villages[0][:9]]
    async with db.pool.acquire() as conn:
        for i in range(N):
            await upsert_profile(conn, VolunteerProfileUpdated(
                volunteer_id=uuid4(), revision=1, display_name=f"测试{i}", unit_code=villages[0],
                lat=lat + 0.00001 * i, lon=lon, skills=("first_aid",),
                certificates=(CertificateInfo(skill="first_aid", expires_on=date(2099, 1, 1)),), consent=True,
            ))
        incident_id = await usecases.open_incident(conn, usecases.IncidentInput(
            kind="t", title="测试", lat=lat, lon=lon, unit_code=villages[0], mode=IncidentMode.DRILL,
            requirements=[usecases.RequirementInput("first_aid", None, N // 2)], wave_deadline_seconds=3600,
        ), usecases.Actor("t", "city", "330600"), place="x")
        callouts = await conn.fetch("SELECT callout_id, volunteer_id FROM callouts WHERE incident_id = $1",
                                    incident_id)
    assert len(callouts) == N
    ids = [r["callout_id"] for r in callouts]
    replies = [ReplyReceived(reply_id=uuid4(), volunteer_id=r["volunteer_id"], callout_id=r["callout_id"],
                             intent=ReplyIntent.DECLINE, text="2", channel=Channel.SMS, received_at=now(),
                             producer="test") for r in callouts]

    async def recorded() -> int:
        async with db.pool.acquire() as conn:
            return int(await conn.fetchval("SELECT count(*) FROM replies WHERE callout_id = ANY($1::uuid[])", ids))

    def applied(runtime: Any) -> int:
        return sum(c.stats.applied for c in runtime.extras["consumers"])

    settings = settings_for(db)
    async with running_app(db, consumers=("replies",), settings=settings) as client:
        a = client._transport.app.state.runtime  # type: ignore[attr-defined]
        producer = AIOKafkaProducer(bootstrap_servers=db.bootstrap, linger_ms=5)
        await producer.start()

        async def send(part: list[ReplyReceived]) -> None:
            for ev in part + part:  # every reply twice: a redelivery
                await producer.send(REPLY.name, ev.to_bytes(), key=str(ev.volunteer_id).encode(),
                                    headers=[("event_id", str(ev.event_id).encode()),
                                             ("event_type", ev.event_type.encode())])
            await producer.flush()

        try:
            await send(replies[: N // 2])
            second = create_app(settings, consumers=["replies"])
            async with second.router.lifespan_context(second):  # B joins: a rebalance
                await wait_for_assignment(second.state.runtime, ".replies")  # the rebalance is done: B owns partitions
                await send(replies[N // 2:])
                await wait_for(lambda: _at_least(recorded, N * 3 // 4), timeout=180, every=0.25)
                by_b = applied(second.state.runtime)
            # B left: a second rebalance; A applies the rest
            await wait_for(lambda: _at_least(recorded, N), timeout=240, every=0.25)
        finally:
            await producer.stop()
        assert by_b > 0 and applied(a) > 0, "both replicas must have applied replies"

    async with db.pool.acquire() as conn:
        per_callout = await conn.fetch(
            "SELECT callout_id, count(*) AS n, bool_and(applied) AS ok FROM replies "
            "WHERE callout_id = ANY($1::uuid[]) GROUP BY callout_id", ids)
        states = await conn.fetch("SELECT state, count(*) FROM callouts WHERE callout_id = ANY($1::uuid[]) "
                                  "GROUP BY state", ids)
    assert len(per_callout) == N and all(r["n"] == 1 and r["ok"] for r in per_callout)
    assert {r["state"]: r["count"] for r in states} == {"declined": N}
    assert {UUID(str(r["callout_id"])) for r in per_callout} == set(ids)


async def _at_least(count: Any, n: int) -> bool:
    return bool(await count() >= n)

