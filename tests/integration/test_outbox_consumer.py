"""Outbox → relay → real Kafka → idempotent consumer, on the real broker and database."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from faststream.kafka import KafkaBroker

from shared import outbox
from shared.consumer import IdempotentConsumer, Received
from shared.events import IncidentClosed
from shared.topics import TopicSpec, dead_letter, ensure_topics


async def _make_table(pool, name: str) -> None:
    async with pool.acquire() as conn:
        await conn.execute(f"CREATE TABLE {name} (event_id uuid, outcome text, applied_at timestamptz DEFAULT now())")


async def _wait_for(predicate, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")


def _event(outcome: str) -> IncidentClosed:
    return IncidentClosed(incident_id=uuid.uuid4(), outcome=outcome)


async def _start_consumer(stack, pool, topic: TopicSpec, table: str, *, fail_on: str | None = None):
    broker = KafkaBroker(stack.bootstrap)

    async def handler(conn, event: Received) -> None:
        assert isinstance(event, IncidentClosed)
        if fail_on is not None and event.outcome == fail_on:
            raise RuntimeError("handler bug for this one event")
        await conn.execute(f"INSERT INTO {table} (event_id, outcome) VALUES ($1, $2)", event.event_id, event.outcome)

    async def dead_letters(t: str, value, key, headers) -> None:
        await broker.publish(value or b"", t, key=key, headers=headers)

    consumer = IdempotentConsumer(
        name=f"test.{table}", topic=topic, handler=handler, pool=lambda: pool, dead_letters=dead_letters
    )
    consumer.attach(broker, max_records=100)
    await broker.start()
    return broker, consumer


async def _count(pool, table: str) -> int:
    async with pool.acquire() as conn:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))


async def test_round_trip_through_outbox_relay_broker_consumer(stack, test_pool, unique):
    topic = TopicSpec(f"test.roundtrip.{unique}", 3, False, "incident_id")
    await ensure_topics(stack.bootstrap, (topic,))
    table = f"applied_{unique}"
    await _make_table(test_pool, table)
    events = [_event(f"outcome-{i}") for i in range(20)]
    async with test_pool.acquire() as conn, conn.transaction():
        for e in events:
            await outbox.add(conn, topic, str(e.incident_id), e)

    relay = outbox.OutboxRelay(test_pool, stack.bootstrap, name="test")
    broker, consumer = await _start_consumer(stack, test_pool, topic, table)
    try:
        published = await relay.publish_pending()
        assert published >= 20
        await _wait_for(lambda: _count_is(test_pool, table, 20))
        async with test_pool.acquire() as conn:
            rows = await conn.fetch(f"SELECT outcome FROM {table}")
            unpublished = await conn.fetchval(
                "SELECT count(*) FROM outbox WHERE topic = $1 AND published_at IS NULL", topic.name
            )
        assert sorted(r["outcome"] for r in rows) == sorted(e.outcome for e in events)
        assert unpublished == 0
    finally:
        await relay.stop()
        await broker.stop()


async def _count_is(pool, table: str, n: int) -> bool:
    return await _count(pool, table) == n


async def test_relay_killed_after_publish_before_mark_is_applied_once(stack, test_pool, unique):
    topic = TopicSpec(f"test.crash.{unique}", 1, False, "incident_id")
    await ensure_topics(stack.bootstrap, (topic,))
    table = f"applied_{unique}"
    await _make_table(test_pool, table)
    event = _event("crash-once")
    async with test_pool.acquire() as conn, conn.transaction():
        await outbox.add(conn, topic, str(event.incident_id), event)

    async def crash(rows: Sequence[outbox.OutboxRow]) -> None:
        raise outbox.RelayCrash("killed after the broker acknowledged, before marking")

    crashing = outbox.OutboxRelay(test_pool, stack.bootstrap, name="test", after_send=crash)
    with pytest.raises(outbox.RelayCrash):
        await crashing.publish_pending()
    await crashing.stop()
    # The row is still unpublished: a new relay publishes it again.
    restarted = outbox.OutboxRelay(test_pool, stack.bootstrap, name="test")
    await restarted.publish_pending()
    await restarted.stop()

    # The event is on the topic twice ...
    raw = AIOKafkaConsumer(topic.name, bootstrap_servers=stack.bootstrap, auto_offset_reset="earliest",
                           enable_auto_commit=False, group_id=None)
    await raw.start()
    try:
        batches = await raw.getmany(timeout_ms=5000)
        copies = [r for recs in batches.values() for r in recs if r.value and str(event.event_id).encode() in r.value]
    finally:
        await raw.stop()
    assert len(copies) == 2

    # ... and applied once.
    broker, consumer = await _start_consumer(stack, test_pool, topic, table)
    try:
        await _wait_for(lambda: _seen(consumer, 2))
        assert await _count(test_pool, table) == 1
        assert consumer.stats.duplicates == 1
    finally:
        await broker.stop()


async def _seen(consumer: IdempotentConsumer, n: int) -> bool:
    return consumer.stats.applied + consumer.stats.duplicates >= n


async def test_poison_message_goes_to_dead_letter_and_next_is_processed(stack, test_pool, unique):
    topic = TopicSpec(f"test.poison.{unique}", 1, False, "incident_id")
    await ensure_topics(stack.bootstrap, (topic,))
    table = f"applied_{unique}"
    await _make_table(test_pool, table)
    good = _event("after-poison")
    bad_handler = _event("explodes")
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic.name, b"{not json", key=b"k")
        await producer.send_and_wait(topic.name, b'{"event_type": "NoSuchEvent"}', key=b"k")
        await producer.send_and_wait(topic.name, bad_handler.to_bytes(), key=b"k")
        await producer.send_and_wait(topic.name, good.to_bytes(), key=b"k")
    finally:
        await producer.stop()

    broker, consumer = await _start_consumer(stack, test_pool, topic, table, fail_on="explodes")
    try:
        await _wait_for(lambda: _count_is(test_pool, table, 1))
        await _wait_for(lambda: _dead(consumer, 3))
    finally:
        await broker.stop()
    async with test_pool.acquire() as conn:
        assert await conn.fetchval(f"SELECT outcome FROM {table}") == "after-poison"

    dlq = AIOKafkaConsumer(dead_letter(topic), bootstrap_servers=stack.bootstrap, auto_offset_reset="earliest",
                           enable_auto_commit=False, group_id=None)
    await dlq.start()
    try:
        records = []
        for _ in range(20):
            batches = await dlq.getmany(timeout_ms=1000)
            records += [r for recs in batches.values() for r in recs]
            if len(records) >= 3:
                break
    finally:
        await dlq.stop()
    errors = [dict(r.headers)["dlq_error"].decode() for r in records]
    assert len(records) == 3
    assert any("JSON" in e or "json" in e for e in errors)
    assert any("handler failed" in e and "handler bug" in e for e in errors)
    assert records[0].value == b"{not json"


async def _dead(consumer: IdempotentConsumer, n: int) -> bool:
    return consumer.stats.dead_lettered >= n


async def test_an_event_the_broker_cannot_take_is_set_aside_and_the_rest_go_on(stack, test_pool, unique):
    """Regression (review): an event over the producer's size limit made the relay retry forever in id order,
    so every later event (all call-outs) stalled behind it."""
    topic = TopicSpec(f"test.oversize.{unique}", 1, False, "incident_id")
    await ensure_topics(stack.bootstrap, (topic,))
    huge = _event("x" * 2_000_000)  # over aiokafka's default max_request_size (1 MiB)
    after = _event("after-the-huge-one")
    async with test_pool.acquire() as conn, conn.transaction():
        await outbox.add(conn, topic, "k", huge)
        await outbox.add(conn, topic, "k", after)
    relay = outbox.OutboxRelay(test_pool, stack.bootstrap, name="test")
    try:
        await asyncio.wait_for(relay.publish_pending(), timeout=60)
    finally:
        await relay.stop()
    async with test_pool.acquire() as conn:
        pending = await conn.fetchval("SELECT count(*) FROM outbox WHERE topic = $1 AND published_at IS NULL",
                                      topic.name)
        aside = await conn.fetchrow("SELECT error FROM dead_letters WHERE topic = $1", topic.name)
    assert pending == 0
    assert aside is not None and "MessageSizeTooLarge" in aside["error"]
    raw = AIOKafkaConsumer(topic.name, bootstrap_servers=stack.bootstrap, auto_offset_reset="earliest",
                           enable_auto_commit=False, group_id=None)
    await raw.start()
    try:
        batches = await raw.getmany(timeout_ms=5000)
        values = [r.value for recs in batches.values() for r in recs]
    finally:
        await raw.stop()
    assert len(values) == 1 and b"after-the-huge-one" in values[0]


async def test_a_relay_in_another_schema_is_not_blocked_by_the_services_relay(stack, test_pool, unique):
    """Regression (drill): a benchmark ran its own outbox in a schema of notify's database; its relay took the
    database-wide lock and notify's own relay published nothing for two minutes."""
    from shared.db import create_pool

    topic = TopicSpec(f"test.schemas.{unique}", 1, False, "incident_id")
    await ensure_topics(stack.bootstrap, (topic,))
    schema = f"relay_{unique}"
    async with test_pool.acquire() as conn:
        await conn.execute(f"CREATE SCHEMA {schema}")
    other = await create_pool(stack.test_dsn, min_size=1, max_size=4, server_settings={"search_path": schema})
    async with other.acquire() as conn:
        await conn.execute(outbox.OUTBOX_DDL)
    holder = outbox.OutboxRelay(test_pool, stack.bootstrap, name="service")
    mine = outbox.OutboxRelay(other, stack.bootstrap, name="bench")
    tasks = [asyncio.create_task(holder.run())]
    try:
        await asyncio.sleep(1.0)  # the service's relay holds its lock
        event = _event("from-the-other-schema")
        async with other.acquire() as conn, conn.transaction():
            await outbox.add(conn, topic, "k", event)
        tasks.append(asyncio.create_task(mine.run()))

        async def published() -> bool:
            async with other.acquire() as conn:
                return bool(await conn.fetchval("SELECT published_at IS NOT NULL FROM outbox WHERE event_id = $1",
                                                event.event_id))

        await _wait_for(published, timeout=15)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await holder.stop()
        await mine.stop()
        await other.close()


async def test_prune_deletes_old_published_rows_from_the_head_only(stack, test_pool, unique):
    """Rows published more than the retention ago go, oldest first, in bounded batches; unpublished ones stay."""
    from shared.db import create_pool

    schema = f"prune_{unique}"
    async with test_pool.acquire() as conn:
        await conn.execute(f"CREATE SCHEMA {schema}")
    pool = await create_pool(stack.test_dsn, min_size=1, max_size=2, server_settings={"search_path": schema})
    try:
        async with pool.acquire() as conn:
            await conn.execute(outbox.OUTBOX_DDL)
            ages = [48.0, 48.0, 48.0, None, 1.0, 1.0]  # hours since published; None: not published yet
            for i, age in enumerate(ages):
                await conn.execute(
                    "INSERT INTO outbox (event_id, topic, key, payload, headers, published_at) "
                    "VALUES ($1, 't', $2, $3, '{}', now() - make_interval(secs => $4::float8 * 3600))",
                    uuid.uuid4(), str(i), b"{}", age,
                )
        relay = outbox.OutboxRelay(pool, stack.bootstrap, name="prune")
        assert await relay.prune(batch=2) == 3  # two full batches of the oldest, then one with one old row
        async with pool.acquire() as conn:
            left = [r["key"] for r in await conn.fetch("SELECT key FROM outbox ORDER BY id")]
        assert left == ["3", "4", "5"]
        assert await relay.prune(batch=2) == 0
    finally:
        await pool.close()
        async with test_pool.acquire() as conn:
            await conn.execute(f"DROP SCHEMA {schema} CASCADE")
