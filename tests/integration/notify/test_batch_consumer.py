"""The batch consumer on the real PostgreSQL: one bad event falls back to per-event handling, nothing twice."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from services.notify.testing import NotifyStack
from shared.consumer import IdempotentConsumer, Received
from shared.events import VolunteerContactUpdated
from shared.topics import TopicSpec


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = field(default_factory=list)


async def test_bad_event_is_dead_lettered_alone_and_redelivery_changes_nothing(notify_stack: NotifyStack) -> None:
    ns = notify_stack
    table = f"probe_{uuid.uuid4().hex[:8]}"
    async with ns.pool.acquire() as conn:
        await conn.execute(f"CREATE TABLE {table} (volunteer_id uuid PRIMARY KEY)")
    dead: list[tuple[str, bytes | None]] = []

    async def sink(topic: str, value: bytes | None, key: bytes | None, headers: dict[str, str]) -> None:
        dead.append((topic, value))

    async def one(conn: asyncpg.Connection, item: Received) -> None:
        assert isinstance(item, VolunteerContactUpdated)
        if item.revision == 13:
            raise ValueError("unlucky")
        await conn.execute(f"INSERT INTO {table} VALUES ($1)", item.volunteer_id)

    async def many(conn: asyncpg.Connection, items: Sequence[Received]) -> None:
        for item in items:
            await one(conn, item)

    topic = TopicSpec("test.batch", 1, False, "volunteer_id")
    consumer = IdempotentConsumer(name=f"probe-{table}", topic=topic, handler=one, batch_handler=many,
                                       pool=lambda: ns.pool, dead_letters=sink)
    good1, bad, good2 = (VolunteerContactUpdated(volunteer_id=uuid.uuid4(), revision=r) for r in (1, 13, 2))
    records = [Record(topic.name, 0, i, str(e.volunteer_id).encode(), e.to_bytes())
               for i, e in enumerate([good1, bad, good2, good1])]
    records.append(Record(topic.name, 0, 9, b"k", b"not json"))
    await consumer.process(records)
    async with ns.pool.acquire() as conn:
        stored = {r[0] for r in await conn.fetch(f"SELECT volunteer_id FROM {table}")}
    assert stored == {good1.volunteer_id, good2.volunteer_id}
    assert consumer.stats.applied == 2 and consumer.stats.duplicates == 1
    assert [t for t, _ in dead] == ["test.batch.dlq", "test.batch.dlq"]  # the poison record and the bad event
    await consumer.process(records[:4])  # redelivery of the whole batch
    async with ns.pool.acquire() as conn:
        assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 2
        await conn.execute(f"DROP TABLE {table}")
    assert consumer.stats.applied == 2 and consumer.stats.duplicates == 5
    assert len(dead) == 2
