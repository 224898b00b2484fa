"""Transactional outbox: events written with the state change that causes them, then relayed to Kafka.

Writers call :func:`add` (or :func:`add_many`, :func:`add_tombstone`) on the connection of the
transaction that changes their state, so the change and its events commit together or not at
all. A statement-level trigger calls ``pg_notify('outbox', '')``; PostgreSQL delivers the
notification at commit, which wakes the :class:`OutboxRelay` (no busy poll; a 2 s safety poll
covers a lost notification after a reconnect).

The relay publishes rows in ``id`` order with an idempotent producer (``enable_idempotence=True``
forces ``acks=all``; aiokafka keeps one in-flight batch per partition, so order per key holds),
waits for every acknowledgement, then stamps ``published_at`` (one statement; it reads and stamps on
the connection that holds its lock and listens, so a round costs two database round trips). A crash
between the send and the stamp re-publishes those rows on the next round: consumers deduplicate on
``event_id`` (:mod:`shared.consumer`). One relay per outbox (database and schema) holds an advisory lock, so two
replicas of a service never interleave the same keys.

An event the broker can never take (larger than the producer's ``max_request_size``, an invalid
topic) is set aside in ``dead_letters`` and stamped, so it cannot stall every event behind it;
transient errors (broker down, timeouts) leave the rows unpublished and the relay backs off.

Errors: :class:`RelayCrash` is raised only by the test hook ``after_send`` to simulate a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import InvalidTopicError, MessageSizeTooLargeError, RecordTooLargeError
from aiokafka.partitioner import murmur2

from shared import tracing
from shared.events import Event
from shared.logging import get_logger
from shared.metrics import DEAD_LETTERS, OUTBOX_PUBLISHED, OUTBOX_RELAY_ERRORS
from shared.topics import TopicSpec

__all__ = [
    "OUTBOX_DDL",
    "OutboxRelay",
    "OutboxRow",
    "RelayCrash",
    "add",
    "add_many",
    "add_serialized",
    "add_tombstone",
    "columns",
    "event_headers",
    "release_relay_lock",
    "try_relay_lock",
]

log = get_logger(__name__)

NOTIFY_CHANNEL = "outbox"
# Errors no retry can cure: the event is set aside (see OutboxRelay._set_aside), the rest go on.
_PERMANENT = (MessageSizeTooLargeError, RecordTooLargeError, InvalidTopicError)
# The one relay of an outbox holds the advisory lock (RELAY_LOCK_KEY, hashtext(schema)): one per outbox
# table, so a test or benchmark with its own schema in the same database never blocks the service's relay.
RELAY_LOCK_KEY = 0x6D75_7374  # "must"

OUTBOX_DDL = """
CREATE TABLE IF NOT EXISTS outbox (
    id            bigserial PRIMARY KEY,
    event_id      uuid        NOT NULL UNIQUE,
    topic         text        NOT NULL,
    key           text        NOT NULL,
    payload       bytea,                       -- NULL = tombstone
    headers       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz
);
CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox', '');
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS outbox_notify ON outbox;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

CREATE TABLE IF NOT EXISTS processed_events (
    consumer      text        NOT NULL,
    event_id      uuid        NOT NULL,
    processed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

CREATE TABLE IF NOT EXISTS dead_letters (
    id            bigserial PRIMARY KEY,
    consumer      text        NOT NULL,
    topic         text        NOT NULL,
    partition     int         NOT NULL,
    "offset"      bigint      NOT NULL,
    error         text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
"""


async def try_relay_lock(conn: asyncpg.Connection) -> bool:
    """Take the relay lock of the outbox in ``conn``'s current schema (session-level); False when held elsewhere."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1, hashtext(current_schema()))", RELAY_LOCK_KEY))


async def release_relay_lock(conn: asyncpg.Connection) -> None:
    """Release the lock taken by :func:`try_relay_lock` on the same connection."""
    await conn.execute("SELECT pg_advisory_unlock($1, hashtext(current_schema()))", RELAY_LOCK_KEY)


def event_headers(event: Event) -> dict[str, str]:
    """Kafka headers that repeat the envelope's routing fields."""
    headers = {
        "event_id": str(event.event_id),
        "event_type": event.event_type,
        "producer": event.producer,
        "content-type": "application/json",
        "drill": "1" if event.drill else "0",
    }
    if event.correlation_id:
        headers["correlation_id"] = str(event.correlation_id)
    tracing.inject(headers)  # the writer's trace context (W3C traceparent) when tracing is on
    return headers


async def add(conn: asyncpg.Connection, topic: TopicSpec, key: str, event: Event) -> None:
    """Write one event to the outbox in the caller's transaction.

    Args:
        conn: a connection inside the transaction that changes the state.
        topic: where the event goes.
        key: the partition key (see :mod:`shared.topics`), e.g. the volunteer id.
        event: the event.

    """
    await conn.execute(
        "INSERT INTO outbox (event_id, topic, key, payload, headers) VALUES ($1, $2, $3, $4, $5)",
        event.event_id, topic.name, key, event.to_bytes(), event_headers(event),
    )


async def add_many(conn: asyncpg.Connection, items: Iterable[tuple[TopicSpec, str, Event]]) -> int:
    """Write many events to the outbox with one COPY (a large wave's call-outs); order is kept.

    Returns:
        The number of rows written.

    """
    return await add_serialized(conn, [(e.event_id, t.name, k, e.to_bytes(), event_headers(e)) for t, k, e in items])


async def add_serialized(
    conn: asyncpg.Connection, records: Sequence[tuple[Any, str, str, bytes, dict[str, str]]]
) -> int:
    """Write events already serialized to the outbox with one COPY, in order (e.g. a wave rendered from a template).

    Args:
        conn: a connection inside the transaction that changes the state.
        records: ``(event_id, topic name, key, payload bytes, headers)`` each, as :func:`add_many` would
            write them (``payload`` the event's :meth:`~shared.events.Event.to_bytes`, ``headers``
            :func:`event_headers`).

    Returns:
        The number of rows written.

    """
    if not records:
        return 0
    await conn.copy_records_to_table(
        "outbox", records=records, columns=["event_id", "topic", "key", "payload", "headers"]
    )
    return len(records)


def columns(items: Iterable[tuple[TopicSpec, str, Event]]) -> tuple[list[Any], list[str], list[str], list[bytes],
                                                                  list[dict[str, str]]]:
    """The outbox columns of events, for a writer that inserts them in a statement of its own.

    ``INSERT INTO outbox (event_id, topic, key, payload, headers) SELECT … FROM unnest($…::uuid[],
    $…::text[], $…::text[], $…::bytea[], $…::jsonb[])`` (``WITH ORDINALITY … ORDER BY`` keeps the
    order): e.g. a data-modifying CTE that writes the state change and its events in one round trip.

    Returns:
        ``(event_ids, topics, keys, payloads, headers)``, each in the order of ``items``.

    """
    rows = [(e.event_id, t.name, k, e.to_bytes(), event_headers(e)) for t, k, e in items]
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows], [r[4] for r in rows]


async def add_tombstone(
    conn: asyncpg.Connection, topic: TopicSpec, key: str, *, event_id: Any, event_type: str, producer: str
) -> None:
    """Write a tombstone (null value) for ``key`` on a compacted topic, e.g. a retired volunteer."""
    headers = {"event_id": str(event_id), "event_type": event_type, "producer": producer}
    await conn.execute(
        "INSERT INTO outbox (event_id, topic, key, payload, headers) VALUES ($1, $2, $3, NULL, $4)",
        event_id, topic.name, key, headers,
    )


class RelayCrash(RuntimeError):
    """Raised by a test's ``after_send`` hook to simulate a relay killed after publishing."""


@dataclass(frozen=True)
class OutboxRow:
    id: int
    topic: str
    key: str
    payload: bytes | None
    headers: dict[str, str]


class OutboxRelay:
    """Publishes a service's outbox to Kafka, in order, woken by LISTEN/NOTIFY.

    Args:
        pool: the service's asyncpg pool.
        bootstrap: Kafka ``host:port``.
        name: the service's name, for logs and the producer's client id.
        batch_size: rows per round.
        after_send: test hook awaited after the broker acknowledged a round and before the rows are
            stamped; raising :class:`RelayCrash` there simulates a crash at the worst moment.

    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        bootstrap: str,
        *,
        name: str,
        batch_size: int = 500,
        after_send: Callable[[Sequence[OutboxRow]], Awaitable[None]] | None = None,
        poll_seconds: float = 2.0,
        retention_hours: float = 24.0,
    ) -> None:
        self._pool = pool
        self._bootstrap = bootstrap
        self._name = name
        self._batch_size = batch_size
        self._after_send = after_send
        self._poll = poll_seconds
        self._retention_hours = retention_hours
        self._wake = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self.published = 0

    async def depth(self) -> tuple[int, float]:
        """``(unpublished rows, age in seconds of the oldest)``; (0, 0.0) when drained (partial index scan)."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 "
                "FROM outbox WHERE published_at IS NULL"
            )
        assert row is not None
        return int(row[0]), float(row[1])

    async def _start_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self._bootstrap,
                client_id=f"{self._name}-outbox-relay",
                enable_idempotence=True,
                acks="all",
                linger_ms=2,
                max_batch_size=256 * 1024,
                request_timeout_ms=15000,
            )
            await producer.start()
            self._producer = producer
        return self._producer

    async def stop(self) -> None:
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()
            self._producer = None

    def _on_notify(self, *_: Any) -> None:
        self._wake.set()

    async def publish_pending(self, conn: asyncpg.Connection | None = None) -> int:
        """Publish every unpublished row, oldest first; return how many were published.

        Args:
            conn: the connection to read and stamp the rows on (:meth:`run` passes the one it holds the
                relay lock and listens on: no pool round trips per round); default one from the pool.

        Raises:
            aiokafka.errors.KafkaError | OSError: the broker did not acknowledge; rows stay unpublished.
            RelayCrash: from the ``after_send`` test hook.

        """
        if conn is None:
            async with self._pool.acquire() as pooled:
                return await self.publish_pending(pooled)
        producer = await self._start_producer()
        total = 0
        batch = await self._fetch(conn, None)
        inflight = await self._send_batched(producer, batch) if batch else None
        while batch and inflight is not None:
            # Pipelined: the next round is read while the broker acknowledges this one, and sent only once
            # this one is wholly acknowledged (so order per key holds); this round is stamped while the
            # next is in flight. A crash before a stamp re-publishes those rows (consumers deduplicate).
            following = await self._fetch(conn, batch[-1].id)
            acked, undeliverable, transient = await self._settle(*inflight)
            if self._after_send is not None:
                await self._after_send(acked)
            following_inflight = (await self._send_batched(producer, following)
                                  if following and transient is None else None)
            await self._stamp(conn, acked, undeliverable)
            total += len(acked)
            self.published += len(acked)
            OUTBOX_PUBLISHED.labels(self._name).inc(len(acked))
            if transient is not None:
                raise transient
            if not following:  # rows committed since, or out of id order: read from the oldest unpublished
                following = await self._fetch(conn, None)
                following_inflight = await self._send_batched(producer, following) if following else None
            batch, inflight = following, following_inflight
        return total

    async def _fetch(self, conn: asyncpg.Connection, after: int | None) -> list[OutboxRow]:
        """Up to ``batch_size`` unpublished rows in ``id`` order, after the row ``after`` when given."""
        rows = await conn.fetch(
            "SELECT id, topic, key, payload, headers FROM outbox WHERE published_at IS NULL AND id > $2 "
            "ORDER BY id LIMIT $1",
            self._batch_size, 0 if after is None else after,
        )
        return [OutboxRow(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    @staticmethod
    async def _settle(
        sent: list[tuple[list[OutboxRow], asyncio.Future[Any]]], undeliverable: list[tuple[OutboxRow, BaseException]]
    ) -> tuple[list[OutboxRow], list[tuple[OutboxRow, BaseException]], BaseException | None]:
        """Wait for a round's acknowledgements: (acknowledged rows, rows set aside, the first transient error)."""
        results = await asyncio.gather(*(f for _, f in sent), return_exceptions=True)
        acked: list[OutboxRow] = []
        transient: BaseException | None = None
        for (rows_sent, _), result in zip(sent, results, strict=True):
            if isinstance(result, _PERMANENT):
                undeliverable.extend((row, result) for row in rows_sent)
            elif isinstance(result, BaseException):
                transient = transient or result
            else:
                acked.extend(rows_sent)
        return acked, undeliverable, transient

    async def _stamp(
        self, conn: asyncpg.Connection, acked: list[OutboxRow], undeliverable: list[tuple[OutboxRow, BaseException]]
    ) -> None:
        stamp = "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])"
        if undeliverable:
            async with conn.transaction():
                await conn.execute(stamp, [r.id for r in acked] + [r.id for r, _ in undeliverable])
                for row, exc in undeliverable:
                    await self._set_aside(conn, row, exc)
        elif acked:  # one statement: no transaction needed
            await conn.execute(stamp, [r.id for r in acked])

    async def _send_batched(
        self, producer: AIOKafkaProducer, rows: Sequence[OutboxRow]
    ) -> tuple[list[tuple[list[OutboxRow], asyncio.Future[Any]]], list[tuple[OutboxRow, BaseException]]]:
        """Append rows to one record batch per (topic, partition), in order, and submit the batches.

        Partitions follow Kafka's default partitioner (murmur2 of the key, as the Java client), so a key
        lands where any other client would put it. One ``send_batch`` per partition instead of one
        ``send`` per row is what lets a 10,000-message wave out quickly; aiokafka keeps one batch in
        flight per partition, so order per key holds.

        Returns:
            The submitted batches with their rows, and the rows no batch can take (too large).

        """
        submitted: list[tuple[list[OutboxRow], asyncio.Future[Any]]] = []
        undeliverable: list[tuple[OutboxRow, BaseException]] = []
        open_batches: dict[tuple[str, int], tuple[Any, list[OutboxRow]]] = {}
        partitions: dict[str, list[int]] = {}
        traced = tracing.enabled()

        async def flush(tp: tuple[str, int]) -> None:
            builder, members = open_batches.pop(tp)
            submitted.append((members, await producer.send_batch(builder, tp[0], partition=tp[1])))

        for row in rows:
            if row.topic not in partitions:
                known = await producer.partitions_for(row.topic)
                if not known:
                    undeliverable.append((row, InvalidTopicError(f"no partitions for {row.topic}")))
                    continue
                partitions[row.topic] = sorted(known)
            key = row.key.encode()
            parts = partitions[row.topic]
            tp = (row.topic, parts[(murmur2(key) & 0x7FFFFFFF) % len(parts)])
            if traced and tracing.TRACEPARENT in row.headers:
                headers = tracing.producer_headers(tp[0], tp[1], row.headers)
            else:
                headers = [(k, str(v).encode()) for k, v in row.headers.items()]
            for _ in range(2):
                if tp not in open_batches:
                    open_batches[tp] = (producer.create_batch(), [])
                builder, members = open_batches[tp]
                if builder.append(key=key, value=row.payload, timestamp=None, headers=headers) is not None:
                    members.append(row)
                    break
                if not members:  # an empty batch cannot take it: larger than a whole request
                    open_batches.pop(tp)
                    undeliverable.append((row, MessageSizeTooLargeError(
                        f"{len(row.payload or b'')} bytes do not fit a record batch")))
                    break
                await flush(tp)
        for tp in list(open_batches):
            await flush(tp)
        return submitted, undeliverable

    async def _set_aside(self, conn: asyncpg.Connection, row: OutboxRow, exc: BaseException) -> None:
        """A row the broker will never take (too large, invalid topic): record it and move on.

        It goes to ``dead_letters`` (consumer ``<service>.outbox-relay``, partition -1, offset = the row's
        id) and is stamped, so one bad event cannot stop every event behind it. The row itself stays in
        the outbox until pruning, for an operator to inspect.
        """
        error = f"{type(exc).__name__}: {exc}"
        await conn.execute(
            'INSERT INTO dead_letters (consumer, topic, partition, "offset", error) VALUES ($1, $2, -1, $3, $4)',
            f"{self._name}.outbox-relay", row.topic, row.id, error[:2000],
        )
        DEAD_LETTERS.labels(self._name, f"{self._name}.outbox-relay", row.topic).inc()
        log.error("outbox.undeliverable", topic=row.topic, row_id=row.id, error=error[:500])

    async def prune(self, *, batch: int = 10_000, max_batches: int = 20) -> int:
        """Delete published rows older than the retention, oldest first; returns how many were deleted.

        Looks only at the ``batch`` oldest rows (by id, through the primary key) per statement, and stops
        at a batch with nothing old enough or after ``max_batches``: rows are written in id order, so the
        old ones are at the head. (It was one ``DELETE … WHERE published_at < …``: a sequential scan of the
        whole outbox every 300 relay rounds, 2.5 s of PostgreSQL's CPU at 1.3 million rows.) Unpublished
        rows are never deleted.
        """
        deleted = 0
        async with self._pool.acquire() as conn:
            for _ in range(max_batches):
                status = await conn.execute(
                    """
                    DELETE FROM outbox WHERE id IN (
                        SELECT id FROM (SELECT id, published_at FROM outbox ORDER BY id LIMIT $2) AS oldest
                        WHERE published_at < now() - make_interval(secs => $1))
                    """,
                    self._retention_hours * 3600, batch,
                )
                n = int(status.split()[-1])
                deleted += n
                if n < batch:
                    break
        return deleted

    async def run(self) -> None:
        """Run until cancelled: hold the relay lock, listen, publish, back off on broker errors."""
        backoff = 0.5
        while True:
            try:
                async with self._pool.acquire() as listen_conn:
                    locked = await try_relay_lock(listen_conn)
                    if not locked:
                        await asyncio.sleep(2.0)
                        continue
                    try:
                        await listen_conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
                        rounds = 0
                        while True:
                            self._wake.clear()
                            n = await self.publish_pending(listen_conn)
                            if n:
                                log.debug("outbox.published", count=n)
                            backoff = 0.5
                            rounds += 1
                            if rounds % 300 == 0:
                                await self.prune()
                            with contextlib.suppress(TimeoutError):
                                await asyncio.wait_for(self._wake.wait(), timeout=self._poll)
                            if listen_conn.is_closed():
                                break
                    finally:
                        if not listen_conn.is_closed():
                            with contextlib.suppress(Exception):
                                await listen_conn.remove_listener(NOTIFY_CHANNEL, self._on_notify)
                                await release_relay_lock(listen_conn)
            except asyncio.CancelledError:
                await self.stop()
                raise
            except RelayCrash:
                raise
            except Exception as exc:  # broker or database down: keep the rows, retry with backoff
                log.warning("outbox.relay_error", error=repr(exc), retry_in=backoff)
                OUTBOX_RELAY_ERRORS.labels(self._name).inc()
                await self.stop()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
