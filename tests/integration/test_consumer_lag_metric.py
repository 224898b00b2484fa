"""``muster_consumer_lag_messages`` from a real consumer: behind while its handler is held, 0 once it catches up.

The lag is the partition's end offset (asked of the broker) − the consumer's fetch position
(:meth:`shared.consumer.IdempotentConsumer.measure_lag`); the fetcher's own high watermark would have
stayed at what the last fetch saw while the handler is held.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiokafka import AIOKafkaProducer
from faststream.kafka import KafkaBroker
from prometheus_client import REGISTRY

from shared.consumer import IdempotentConsumer, Received
from shared.events import VolunteerContactUpdated
from shared.metrics import register_lag_source
from shared.topics import TopicSpec, ensure_topics


def scraped_lag(group: str) -> float:
    total = 0.0
    for family in REGISTRY.collect():
        if family.name == "muster_consumer_lag_messages":
            total += sum(s.value for s in family.samples if s.labels["group"] == group)
    return total


async def until(check: Any, timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "not reached in time"
        await asyncio.sleep(0.1)


async def until_lag(consumer: IdempotentConsumer, group: str, ok: Any, timeout: float = 60.0) -> None:
    """Measure (as each /metrics scrape does) until the scraped lag satisfies ``ok``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        await consumer.measure_lag()
        if ok(scraped_lag(group)):
            return
        assert asyncio.get_running_loop().time() < deadline, f"lag {scraped_lag(group)} after {timeout} s"
        await asyncio.sleep(0.1)


async def test_lag_grows_while_held_and_returns_to_zero(stack: Any, test_pool: Any, unique: str) -> None:
    topic = TopicSpec(f"test.lag.{unique}", 1, False, "volunteer_id")
    await ensure_topics(stack.bootstrap, (topic,))
    release = asyncio.Event()
    seen: list[Received] = []

    async def handler(conn: Any, item: Received) -> None:
        await release.wait()
        seen.append(item)

    async def sink(*_: Any) -> None:
        raise AssertionError("nothing is dead-lettered here")

    group = f"lag-{unique}"
    consumer = IdempotentConsumer(name=group, topic=topic, handler=handler, pool=lambda: test_pool, dead_letters=sink)
    broker = KafkaBroker(stack.bootstrap)
    consumer.attach(broker, max_records=5)
    remove = register_lag_source(lambda: [("test", group, topic.name, p, lag) for p, lag in consumer.partition_lags()])
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap)
    await producer.start()
    await broker.start()
    try:
        for i in range(50):
            await producer.send(topic.name, VolunteerContactUpdated(volunteer_id=uuid.uuid4(),
                                                                    revision=i + 1).to_bytes(), key=b"k")
        await producer.flush()
        await until_lag(consumer, group, lambda lag: lag == 45)  # one batch of 5 taken and held, the rest behind
        release.set()
        await until(lambda: len(seen) == 50)
        await until_lag(consumer, group, lambda lag: lag == 0)
    finally:
        remove()
        await broker.stop()
        await producer.stop()
