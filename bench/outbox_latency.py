"""One event through outbox → relay → real Kafka → idempotent consumer: latency, on the real stack.

For each of N events (one at a time): commit an outbox row, let the relay (woken by LISTEN/NOTIFY)
publish it, and measure until the consumer's transaction that applied it has committed. Prints
p50/p99/max in milliseconds and writes bench/results/outbox_latency-*.json.

Run: ``uv run python -m bench.outbox_latency [N]`` (stack up: ``muster stack up``).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Sequence

import asyncpg
from faststream.kafka import KafkaBroker

from bench.machine import save
from shared import outbox
from shared.consumer import ConsumedRecord, IdempotentConsumer, Received
from shared.db import create_pool
from shared.events import IncidentClosed
from shared.topics import TopicSpec, ensure_topics


async def main(n: int) -> dict[str, float]:
    import logging

    from deploy.stack import stack_env
    from shared.logging import configure_logging

    configure_logging(level="WARNING")
    env = stack_env()
    bootstrap, dsn = env["KAFKA_BOOTSTRAP_SERVERS"], env["MUSTER_TEST_DATABASE_URL"]
    pool = await create_pool(dsn, max_size=6)
    async with pool.acquire() as conn:
        await conn.execute(outbox.OUTBOX_DDL)
        await conn.execute("DELETE FROM outbox WHERE published_at IS NULL")
    suffix = uuid.uuid4().hex[:8]
    topic = TopicSpec(f"bench.latency.{suffix}", 1, False, "incident_id")
    await ensure_topics(bootstrap, (topic,))
    applied: dict[uuid.UUID, float] = {}
    arrived = asyncio.Event()

    async def handler(conn: asyncpg.Connection, event: Received) -> None:
        applied[event.event_id] = 0.0

    broker = KafkaBroker(bootstrap, log_level=logging.DEBUG)

    async def dead(topic: str, value: bytes | None, key: bytes | None, headers: dict[str, str]) -> None:
        raise AssertionError("no dead letters expected")

    consumer = IdempotentConsumer(name=f"bench.{suffix}", topic=topic, handler=handler, pool=lambda: pool,
                                  dead_letters=dead)
    original = consumer.process

    async def process(records: Sequence[ConsumedRecord]) -> None:
        await original(records)
        now = time.perf_counter()
        for k, v in applied.items():
            if v == 0.0:
                applied[k] = now
        arrived.set()

    consumer.process = process  # type: ignore[method-assign]
    consumer.attach(broker, max_records=100, batch_timeout_ms=1)
    await broker.start()
    relay = outbox.OutboxRelay(pool, bootstrap, name="bench")
    relay_task = asyncio.create_task(relay.run())
    await asyncio.sleep(2.0)  # group join
    latencies = []
    for i in range(n):
        event = IncidentClosed(incident_id=uuid.uuid4(), outcome=f"bench {i}")
        arrived.clear()
        t0 = time.perf_counter()
        async with pool.acquire() as conn, conn.transaction():
            await outbox.add(conn, topic, str(event.incident_id), event)
        while applied.get(event.event_id, 0.0) == 0.0:
            await asyncio.wait_for(arrived.wait(), timeout=30)
            arrived.clear()
        latencies.append((applied[event.event_id] - t0) * 1000)
    relay_task.cancel()
    await broker.stop()
    await relay.stop()
    await pool.close()
    latencies.sort()
    figures = {
        "events": n,
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(latencies[max(0, int(len(latencies) * 0.99) - 1)], 2),
        "max_ms": round(latencies[-1], 2),
        "mean_ms": round(statistics.fmean(latencies), 2),
    }
    return figures


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    figures = asyncio.run(main(n))
    print("outbox → relay → Kafka → consumer, one event at a time")
    for k, v in figures.items():
        print(f"  {k:>8}: {v}")
    print(f"saved {save('outbox_latency', figures)}")
