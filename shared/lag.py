"""Consumer lag: how far a consumer group is behind the end of a topic (messages, summed over partitions).

Used to wait until a projection has caught up (the drill waits for dispatch's roster projection
and notify's contact projection) and to prove that lag returns to 0 after faults.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

__all__ = ["consumer_lag", "consumer_lags", "consumer_offsets", "wait_for_lag_zero"]


async def consumer_lag(bootstrap: str, group_id: str, topic: str) -> int | None:
    """Messages ``group_id`` has not yet committed on ``topic``; None when the group has committed nothing yet.

    Raises:
        aiokafka.errors.KafkaError: the broker cannot be reached.

    """
    return (await consumer_lags(bootstrap, [(group_id, topic)]))[(group_id, topic)]


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


async def consumer_offsets(
    bootstrap: str, groups: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], dict[int, tuple[int | None, int]]]:
    """Committed and end offsets per partition of several ``(group_id, topic)`` pairs, over one connection pair.

    Returns:
        ``{(group, topic): {partition: (committed or None, end)}}``.

    Raises:
        aiokafka.errors.KafkaError: the broker cannot be reached.

    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        topics = {t for _, t in groups}
        await consumer._client.force_metadata_update()  # noqa: SLF001 - fresh partition lists
        tps = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or set()]
        ends = await consumer.end_offsets(tps)
        out: dict[tuple[str, str], dict[int, tuple[int | None, int]]] = {}
        for group, topic in groups:
            committed = await admin.list_consumer_group_offsets(group)
            out[(group, topic)] = {
                tp.partition: (committed[tp].offset if tp in committed else None, ends[tp])
                for tp in tps if tp.topic == topic
            }
        return out
    finally:
        await consumer.stop()
        await admin.close()


async def consumer_lags(bootstrap: str, groups: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int | None]:
    """Lag of several ``(group_id, topic)`` pairs at once (see :func:`consumer_offsets`).

    Same figures as :func:`consumer_lag`: messages not yet committed, summed over partitions; None when
    the group has committed nothing on a non-empty topic.

    Raises:
        aiokafka.errors.KafkaError: the broker cannot be reached.

    """
    out: dict[tuple[str, str], int | None] = {}
    for pair, parts in (await consumer_offsets(bootstrap, groups)).items():
        if all(c is None for c, _ in parts.values()) and any(end for _, end in parts.values()):
            out[pair] = None
        else:
            out[pair] = sum(max(0, end - (c or 0)) for c, end in parts.values())
    return out
