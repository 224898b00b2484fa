"""The pipelined relay (next round read while this one is acknowledged): every row once, in order per key."""

from __future__ import annotations

import uuid

from aiokafka import AIOKafkaConsumer

from shared import outbox
from shared.events import IncidentClosed
from shared.topics import TopicSpec, ensure_topics


async def test_many_rounds_publish_every_row_in_order_per_key(stack, test_pool, unique):
    topic = TopicSpec(f"test.pipeline.{unique}", 3, False, "incident_id")
    await ensure_topics(stack.bootstrap, (topic,))
    keys = [str(uuid.uuid4()) for _ in range(4)]
    events = [(keys[i % 4], IncidentClosed(incident_id=uuid.uuid4(), outcome=f"step-{i}")) for i in range(60)]
    async with test_pool.acquire() as conn, conn.transaction():
        await outbox.add_many(conn, [(topic, k, e) for k, e in events[:40]])
    async with test_pool.acquire() as conn, conn.transaction():  # a second transaction: later ids
        await outbox.add_many(conn, [(topic, k, e) for k, e in events[40:]])

    relay = outbox.OutboxRelay(test_pool, stack.bootstrap, name="test", batch_size=7)  # 9 rounds
    try:
        assert await relay.publish_pending() == 60
        assert await relay.publish_pending() == 0
    finally:
        await relay.stop()
    async with test_pool.acquire() as conn:
        left = await conn.fetchval("SELECT count(*) FROM outbox WHERE topic = $1 AND published_at IS NULL", topic.name)
    assert left == 0

    raw = AIOKafkaConsumer(topic.name, bootstrap_servers=stack.bootstrap, auto_offset_reset="earliest",
                           enable_auto_commit=False, group_id=None)
    await raw.start()
    try:
        seen: list[tuple[str, str]] = []
        while len(seen) < 60:
            batches = await raw.getmany(timeout_ms=5000)
            if not batches:
                break
            for records in batches.values():
                seen.extend((r.key.decode(), dict(r.headers)["event_id"].decode()) for r in records)
    finally:
        await raw.stop()
    assert sorted(e for _, e in seen) == sorted(str(e.event_id) for _, e in events)  # each once
    for key in keys:
        assert [e for k, e in seen if k == key] == [str(e.event_id) for k, e in events if k == key]
