"""The floor: what the raw clients do on the same broker and database, to set muster's figures against.

Three measurements, each on the real stack and each cleaning up what it creates:

* :func:`kafka_floor` — raw aiokafka: one producer sends ``n`` messages (about the size of a
  ``CallOutRequested`` event, keyed by a fresh volunteer id each) to a fresh topic with as many
  partitions as ``dispatch.callout.v1``; one consumer reads them back. Wall time from the first send
  to the last message consumed, and per-message latency (send call → consumed). Two ways, one
  ``send`` per message and hand-filled batches per partition (as the outbox relay); the faster counts.
* :func:`pg_floor` — raw asyncpg: ``n`` rows shaped like dispatch's ``callouts`` rows (same columns,
  primary key, unique key and indexes; no foreign keys) written in one transaction into a fresh schema,
  once with ``copy_records_to_table`` and once with ``executemany``. The floor is the faster one.
* :func:`roundtrip_floor` — single messages produce→consume at a steady rate (open loop: message
  ``k`` is sent at ``k / rate`` seconds whatever happened before), for the reply path's latency.

Producer settings are the outbox relay's (idempotent, ``acks=all``, ``linger_ms=2``), so the floor
is the same durability, not a cheaper one. Consumers are assigned every partition by hand (no group
join) and read from the beginning of the fresh topic.

Results are plain dicts; seconds are wall-clock seconds (``time.perf_counter``), latencies in
milliseconds. Errors: :class:`FloorIncomplete` when not every message came back within the timeout;
aiokafka's and asyncpg's own errors pass through (broker or database down).

Run alone: ``uv run --frozen python -m bench.floor [N]`` (stack up: ``muster stack up``).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["FloorIncomplete", "callout_payload_bytes", "kafka_floor", "pg_floor", "percentiles", "roundtrip_floor"]


class FloorIncomplete(RuntimeError):
    """Not every message produced was consumed before the timeout (the figures would be wrong)."""


def percentiles(values_ms: list[float]) -> dict[str, float]:
    """``{"p50_ms", "p99_ms", "max_ms"}`` of a list of milliseconds (inclusive method; empty → zeros)."""
    if not values_ms:
        return {"p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
    if len(values_ms) == 1:
        v = round(values_ms[0], 2)
        return {"p50_ms": v, "p99_ms": v, "max_ms": v}
    q = statistics.quantiles(values_ms, n=100, method="inclusive")
    return {"p50_ms": round(statistics.median(values_ms), 2), "p99_ms": round(q[98], 2),
            "max_ms": round(max(values_ms), 2)}


def callout_payload_bytes() -> int:
    """Size in bytes of a typical ``CallOutRequested`` event as the outbox publishes it (JSON, UTF-8)."""
    from shared.events import CallOutRequested
    from shared.vocabulary import Level

    event = CallOutRequested(
        callout_id=uuid.uuid4(), incident_id=uuid.uuid4(), requirement_id=uuid.uuid4(), volunteer_id=uuid.uuid4(),
        wave=1, level=Level.COUNTY, incident_kind="drowning", incident_title="柯桥区鉴湖溺水",
        place="柯桥区 鉴水社区 鉴湖边", role="救护员", reply_code="A1",
        respond_by=datetime.now(UTC) + timedelta(minutes=3), correlation_id=uuid.uuid4(), drill=True,
    )
    return len(event.to_bytes())


def _producer(bootstrap: str) -> Any:
    from aiokafka import AIOKafkaProducer

    return AIOKafkaProducer(bootstrap_servers=bootstrap, client_id="bench-floor", enable_idempotence=True,
                            acks="all", linger_ms=2, max_batch_size=256 * 1024, request_timeout_ms=15000)


async def _fresh_topic(bootstrap: str, partitions: int) -> str:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    name = f"bench.floor.{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
        for _ in range(100):  # until every partition has a leader (else the first fetches log NotLeader)
            (desc,) = await admin.describe_topics([name])
            parts = desc.get("partitions") or []
            if len(parts) == partitions and all(p.get("leader", -1) >= 0 for p in parts):
                break
            await asyncio.sleep(0.05)
    finally:
        await admin.close()
    return name


async def _drop_topic(bootstrap: str, name: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([name])
    finally:
        await admin.close()


async def _assigned_consumer(bootstrap: str, topic: str, partitions: int) -> Any:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                                client_id="bench-floor")
    await consumer.start()
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, 0)  # a fresh topic starts at offset 0 (no ListOffsets round trip)
    return consumer


async def _consume(consumer: Any, received: dict[int, float], total: list[int], expected: int,
                   done: asyncio.Event) -> None:
    """Record ``seq header → perf_counter`` of each message until ``expected`` distinct ones arrived.

    Warm-up messages (``seq`` -1) are skipped; ``total[0]`` counts every other message read, repeats included.
    """
    while len(received) < expected:
        batches = await consumer.getmany(timeout_ms=200, max_records=5000)
        now = time.perf_counter()
        for records in batches.values():
            for rec in records:
                seq = int(dict(rec.headers)["seq"])
                if seq >= 0:
                    total[0] += 1
                    received.setdefault(seq, now)
    done.set()


async def _warm_up(producer: Any, topic: str, partitions: int, value: bytes) -> None:
    """One message to every partition of the fresh topic, until each is accepted (leaders settle after creation).

    aiokafka logs a warning for each retry while a new partition's leader settles; those are quieted here only.
    """
    import logging

    log = logging.getLogger("aiokafka")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        await asyncio.gather(*[
            producer.send_and_wait(topic, value, key=b"warm-up", partition=p, headers=[("seq", b"-1")])
            for p in range(partitions)
        ])
    finally:
        log.setLevel(level)


async def _send_each(producer: Any, topic: str, value: bytes, keys: list[bytes], sent_at: list[float],
                     partitions: int) -> int:
    """One ``send`` per message (aiokafka batches them by partition with ``linger_ms``); returns messages sent."""
    futures = []
    for i, key in enumerate(keys):
        sent_at[i] = time.perf_counter()
        futures.append(await producer.send(topic, value, key=key, headers=[("seq", str(i).encode())]))
    await asyncio.gather(*futures)
    return len(futures)


async def _send_batched(producer: Any, topic: str, value: bytes, keys: list[bytes], sent_at: list[float],
                        partitions: int) -> int:
    """One record batch per partition (murmur2 of the key, as the outbox relay does), ``send_batch`` each."""
    from aiokafka.partitioner import murmur2

    futures = []
    batches: dict[int, Any] = {}
    appended = 0
    for i, key in enumerate(keys):
        sent_at[i] = time.perf_counter()
        part = (murmur2(key) & 0x7FFFFFFF) % partitions
        headers = [("seq", str(i).encode())]
        builder = batches.setdefault(part, producer.create_batch())
        if builder.append(key=key, value=value, timestamp=None, headers=headers) is None:  # full: submit it
            futures.append(await producer.send_batch(batches.pop(part), topic, partition=part))
            builder = batches.setdefault(part, producer.create_batch())
            if builder.append(key=key, value=value, timestamp=None, headers=headers) is None:
                raise FloorIncomplete(f"a {len(value)}-byte message does not fit an empty record batch")
        appended += 1
    for part, builder in batches.items():
        futures.append(await producer.send_batch(builder, topic, partition=part))
    await asyncio.gather(*futures)
    return appended


async def _kafka_once(n: int, *, bootstrap: str, value: bytes, partitions: int, method: str,
                      timeout: float) -> dict[str, Any]:
    send = _send_each if method == "send" else _send_batched
    topic = await _fresh_topic(bootstrap, partitions)
    producer = _producer(bootstrap)
    consumer = None
    try:
        consumer = await _assigned_consumer(bootstrap, topic, partitions)
        await producer.start()
        await _warm_up(producer, topic, partitions, value)
        received: dict[int, float] = {}
        total = [0]
        done = asyncio.Event()
        reader = asyncio.create_task(_consume(consumer, received, total, n, done))
        keys = [str(uuid.uuid4()).encode() for _ in range(n)]
        sent_at: list[float] = [0.0] * n
        t0 = time.perf_counter()
        produced = await send(producer, topic, value, keys, sent_at, partitions)
        produced_at = time.perf_counter()
        try:
            await asyncio.wait_for(done.wait(), timeout)
        except TimeoutError as exc:
            raise FloorIncomplete(f"kafka floor ({method}): {len(received)} of {n} consumed in {timeout} s") from exc
        finally:
            reader.cancel()
        last = max(received[i] for i in range(n))
        lat = [(received[i] - sent_at[i]) * 1000 for i in range(n)]
        return {"produced": produced, "consumed": total[0], "distinct": len(received), "topic": topic,
                "wall_seconds": round(last - t0, 4), "produce_seconds": round(produced_at - t0, 4),
                **percentiles(lat)}
    finally:
        await producer.stop()
        if consumer is not None:
            await consumer.stop()
        await _drop_topic(bootstrap, topic)


async def kafka_floor(n: int, *, bootstrap: str, payload_bytes: int | None = None,
                      partitions: int | None = None, timeout: float = 120.0) -> dict[str, Any]:
    """Raw aiokafka produce → consume of ``n`` messages through the broker at ``bootstrap``, two ways.

    ``send``: one ``producer.send`` per message (aiokafka groups them per partition within ``linger_ms``);
    ``batch``: one record batch per partition filled by hand and submitted with ``send_batch`` (how the
    outbox relay publishes a wave). Each way gets its own fresh topic; the floor is the faster one.

    Args:
        n: messages to send (each keyed by a fresh volunteer-like UUID, so they spread over partitions);
            one warm-up message per partition goes first (metadata, connections) and is not counted.
        bootstrap: ``host:port`` of the broker muster uses.
        payload_bytes: message value size in bytes; default :func:`callout_payload_bytes`.
        partitions: partitions of the fresh topic; default that of ``dispatch.callout.v1`` (12).
        timeout: seconds to wait for the last message before giving up.

    Returns:
        ``{"n", "payload_bytes", "partitions", "method", "send": {...}, "batch": {...}}`` plus the faster
        way's ``"produced", "consumed", "distinct", "topic", "wall_seconds", "produce_seconds", "p50_ms",
        "p99_ms", "max_ms"`` at the top level (each way's in its own dict; topics are deleted on return).
        ``wall_seconds`` is first send → last message consumed, ``produce_seconds`` first send → every
        send acknowledged; latencies per message (handed to the client → consumed) in ms.

    Raises:
        FloorIncomplete: fewer than ``n`` distinct messages came back within ``timeout``.

    """
    from shared.topics import CALLOUT

    partitions = partitions or CALLOUT.partitions
    size = payload_bytes or callout_payload_bytes()
    value = b'{"pad":"' + b"x" * max(0, size - 10) + b'"}'
    ways = {m: await _kafka_once(n, bootstrap=bootstrap, value=value, partitions=partitions, method=m,
                                 timeout=timeout) for m in ("send", "batch")}
    best = min(ways, key=lambda m: ways[m]["wall_seconds"])
    return {"n": n, "payload_bytes": len(value), "partitions": partitions, "method": best, **ways[best], **ways}


async def roundtrip_floor(count: int = 500, *, bootstrap: str, rate: float = 100.0,
                          payload_bytes: int | None = None, timeout: float = 30.0) -> dict[str, Any]:
    """Produce → consume latency of single messages sent at a steady ``rate`` (open loop).

    Message ``k`` is sent at ``k / rate`` seconds after the start (one ``send`` each, not waiting for
    earlier ones), to a fresh topic with as many partitions as ``notify.reply.v1`` (6). One warm-up
    message per partition first (metadata, connections), not counted.

    Args:
        count: messages to send.
        bootstrap: ``host:port`` of the broker.
        rate: messages per second.
        payload_bytes: value size in bytes; default :func:`callout_payload_bytes`.
        timeout: seconds to wait for the last message after the last send.

    Returns:
        ``{"count", "rate", "consumed", "distinct", "achieved_rate", "p50_ms", "p99_ms", "max_ms"}``
        (latency per message, send call → consumed, in ms; ``achieved_rate`` messages/s actually sent).

    Raises:
        FloorIncomplete: not every message came back within ``timeout``.

    """
    from shared.topics import REPLY

    size = payload_bytes or callout_payload_bytes()
    value = b'{"pad":"' + b"x" * max(0, size - 10) + b'"}'
    topic = await _fresh_topic(bootstrap, REPLY.partitions)
    producer = _producer(bootstrap)
    consumer = None
    try:
        consumer = await _assigned_consumer(bootstrap, topic, REPLY.partitions)
        await producer.start()
        await _warm_up(producer, topic, REPLY.partitions, value)
        received: dict[int, float] = {}
        total = [0]
        done = asyncio.Event()
        reader = asyncio.create_task(_consume(consumer, received, total, count, done))
        sent_at: list[float] = [0.0] * count
        futures = []
        start = time.perf_counter()
        for k in range(count):
            delay = start + k / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent_at[k] = time.perf_counter()
            futures.append(await producer.send(topic, value, key=str(uuid.uuid4()).encode(),
                                               headers=[("seq", str(k).encode())]))
        sent_seconds = time.perf_counter() - start
        await asyncio.gather(*futures)
        try:
            await asyncio.wait_for(done.wait(), timeout)
        except TimeoutError as exc:
            raise FloorIncomplete(f"roundtrip floor: {len(received)} of {count} consumed in {timeout} s") from exc
        finally:
            reader.cancel()
        lat = [(received[k] - sent_at[k]) * 1000 for k in range(count)]
        return {"count": count, "rate": rate, "consumed": total[0], "distinct": len(received),
                "achieved_rate": round(count / sent_seconds, 1) if sent_seconds > 0 else rate, **percentiles(lat)}
    finally:
        await producer.stop()
        if consumer is not None:
            await consumer.stop()
        await _drop_topic(bootstrap, topic)


# Same columns, keys and indexes as dispatch's ``callouts`` (services/dispatch/migrations/versions/0002_dispatch.py),
# without the foreign keys to incidents and requirements (nothing to point at in a scratch schema).
_CALLOUTS_DDL = """
CREATE TABLE {schema}.{table} (
    callout_id      uuid PRIMARY KEY,
    incident_id     uuid NOT NULL,
    requirement_id  uuid NOT NULL,
    volunteer_id    uuid NOT NULL,
    team_id         uuid,
    wave            int  NOT NULL,
    level           text NOT NULL,
    reply_code      text NOT NULL,
    state           text NOT NULL DEFAULT 'requested',
    distance_m      double precision,
    manual          boolean NOT NULL DEFAULT false,
    requested_at    timestamptz NOT NULL,
    respond_by      timestamptz NOT NULL,
    accepted_at     timestamptz,
    arrived_at      timestamptz,
    eta_minutes     int,
    cancel_reason   text,
    last_reply_at   timestamptz,
    UNIQUE (incident_id, volunteer_id)
);
CREATE INDEX ON {schema}.{table} (requirement_id, state);
CREATE INDEX ON {schema}.{table} (volunteer_id, requested_at DESC);
CREATE UNIQUE INDEX ON {schema}.{table} (volunteer_id, reply_code) WHERE state IN ('requested', 'timed_out', 'assigned');
"""
_COLUMNS = ["callout_id", "incident_id", "requirement_id", "volunteer_id", "team_id", "wave", "level", "reply_code",
            "state", "distance_m", "manual", "requested_at", "respond_by"]


def _callout_rows(n: int) -> list[tuple[Any, ...]]:
    incident, requirement = uuid.uuid4(), uuid.uuid4()
    now = datetime.now(UTC)
    by = now + timedelta(minutes=3)
    return [(uuid.uuid4(), incident, requirement, uuid.uuid4(), None, 1, "county", f"A{i % 10}", "requested",
             float(i), False, now, by) for i in range(n)]


async def pg_floor(n: int, *, dsn: str) -> dict[str, Any]:
    """Raw asyncpg writes of ``n`` call-out rows in one transaction, by COPY and by ``executemany``.

    Each method writes into its own fresh table in a fresh schema ``bench_floor_<hex>`` (dropped
    afterwards), so neither sees the other's rows or index pages.

    Args:
        n: rows to write.
        dsn: a PostgreSQL URL whose role may create a schema (the stack's ``MUSTER_TEST_DATABASE_URL``).

    Returns:
        ``{"n", "schema", "copy_seconds", "copy_rows", "executemany_seconds", "executemany_rows",
        "wall_seconds", "method"}`` (``schema`` is dropped on return); ``wall_seconds`` is the faster
        method's time (begin → commit, seconds) and ``method`` says which; ``*_rows`` are the rows
        counted back after commit.

    """
    import asyncpg

    schema = f"bench_floor_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
        result: dict[str, Any] = {"n": n, "schema": schema}
        for method in ("copy", "executemany"):
            table = f"callouts_{method}"
            await conn.execute(_CALLOUTS_DDL.format(schema=schema, table=table))
            rows = _callout_rows(n)
            t0 = time.perf_counter()
            async with conn.transaction():
                if method == "copy":
                    await conn.copy_records_to_table(table, schema_name=schema, records=rows, columns=_COLUMNS)
                else:
                    placeholders = ", ".join(f"${i + 1}" for i in range(len(_COLUMNS)))
                    await conn.executemany(
                        f"INSERT INTO {schema}.{table} ({', '.join(_COLUMNS)}) VALUES ({placeholders})", rows
                    )
            result[f"{method}_seconds"] = round(time.perf_counter() - t0, 4)
            result[f"{method}_rows"] = await conn.fetchval(f"SELECT count(*) FROM {schema}.{table}")
        best = min(("copy", "executemany"), key=lambda m: result[f"{m}_seconds"])
        result["wall_seconds"] = result[f"{best}_seconds"]
        result["method"] = best
        return result
    finally:
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await conn.close()


async def _main(n: int) -> None:
    from deploy.stack import stack_env

    env = stack_env()
    k = await kafka_floor(n, bootstrap=env["KAFKA_BOOTSTRAP_SERVERS"])
    p = await pg_floor(n, dsn=env["MUSTER_TEST_DATABASE_URL"])
    r = await roundtrip_floor(200, bootstrap=env["KAFKA_BOOTSTRAP_SERVERS"], rate=100)
    print(f"kafka floor, {n} messages: {k}")
    print(f"postgres floor, {n} call-out rows: {p}")
    print(f"roundtrip floor, 200 at 100/s: {r}")


if __name__ == "__main__":
    asyncio.run(_main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000))
