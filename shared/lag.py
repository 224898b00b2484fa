"""Consumer lag: how far a consumer group is behind the end of a topic (messages, summed over partitions).

Used to wait until a projection has caught up (the drill waits for dispatch's roster projection
and notify's contact projection) and to prove that lag returns to 0 after faults.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

__all__ = ["consumer_lag", "wait_for_lag_zero"]


async def consumer_lag(bootstrap: str, group_id: str, topic: str) -> int | None:
    """Messages ``group_id`` has not yet committed on ``topic``; None when the group has committed nothing yet.

    Raises:
        aiokafka.errors.KafkaError: the broker cannot be reached.

    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group_id)
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            await consumer._client.force_metadata_update()  # noqa: SLF001 - fresh metadata for a new topic
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        ends = await consumer.end_offsets(tps)
        mine = {tp: meta.offset for tp, meta in committed.items() if tp.topic == topic}
        if not mine and any(ends.values()):
            return None
        return sum(max(0, ends[tp] - mine.get(tp, 0)) for tp in tps)
    finally:
        await consumer.stop()
        await admin.close()


async def wait_for_lag_zero(bootstrap: str, group_id: str, topic: str, *, timeout: float = 120.0) -> float:
    """Wait until the group's lag on ``topic`` is 0; return the seconds waited.

    Raises:
        TimeoutError: still behind after ``timeout`` seconds (the message says by how much).

    """
    t0 = time.monotonic()
    lag: int | None = None
    while time.monotonic() - t0 < timeout:
        lag = await consumer_lag(bootstrap, group_id, topic)
        if lag == 0:
            return time.monotonic() - t0
        await asyncio.sleep(0.5)
    raise TimeoutError(f"consumer group {group_id} still {lag} behind on {topic} after {timeout}s")
