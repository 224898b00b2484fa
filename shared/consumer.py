"""Idempotent consumers: at-least-once delivery from Kafka, exactly-once effect in PostgreSQL.

Delivery semantics (every subscriber states them): a FastStream batch subscriber with its own
``group_id``, ``auto_offset_reset="earliest"`` and ``AckPolicy.NACK_ON_ERROR`` (offsets commit
after the batch's database transaction commits; on a transient error the batch is redelivered).

For each batch, in **one** database transaction:

1. every record is parsed; one that cannot be parsed (not JSON, unknown type, wrong fields) goes
   to the dead-letter topic ``<topic>.dlq`` with the error in its headers, and the batch goes on;
2. one ``INSERT INTO processed_events (consumer, event_id) SELECT unnest(…) ON CONFLICT DO NOTHING
   RETURNING`` decides which events were seen before (redeliveries, or a second copy in the same
   batch): those are skipped;
3. with a ``batch_handler``, the new events are applied by one call inside a savepoint (a fan-out of
   10,000 call-outs becomes a few statements); if it raises a non-transient error, or without a batch
   handler, each event runs through ``handler`` inside its own savepoint. If that raises (a bug, a bad
   value), it is retried ``attempts`` times, then the event goes to the dead-letter topic with the
   error and is recorded as processed, so one bad event never blocks its partition;
4. a transient error (database or network gone) is not caught: the transaction rolls back, the
   batch is redelivered after ``transient_backoff`` seconds, and nothing was applied twice.

Tombstones (null values on compacted topics) reach handlers as :class:`Tombstone`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import UUID

import asyncpg
from pydantic import ValidationError

from shared import tracing
from shared.events import Event, parse_event
from shared.logging import get_logger
from shared.metrics import CONSUMER_EVENTS, DEAD_LETTERS
from shared.topics import TopicSpec, dead_letter

__all__ = ["TRANSIENT_ERRORS", "BatchHandler", "ConsumedRecord", "IdempotentConsumer", "Received", "Tombstone", "is_transient"]

log = get_logger(__name__)


@dataclass(frozen=True)
class Tombstone:
    """A null value on a compacted topic: the entity with ``key`` was retired."""

    topic: str
    key: str
    event_id: UUID
    event_type: str


Received = Event | Tombstone
Handler = Callable[[asyncpg.Connection, Received], Awaitable[None]]
BatchHandler = Callable[[asyncpg.Connection, Sequence[Received]], Awaitable[None]]


class ConsumedRecord(Protocol):
    """What the consumer needs of a Kafka record (aiokafka's ``ConsumerRecord`` fits)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


class DeadLetterSink(Protocol):
    async def __call__(self, topic: str, value: bytes | None, key: bytes | None, headers: dict[str, str]) -> None: ...


TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    # A pooled connection whose session the server terminated mid-operation (a restart) raises this on its
    # next use: "cannot switch to state N; another operation (2) is in progress" (asyncpg#784,
    # sqlalchemy#13241). The pool discards it on release; the next try gets a fresh connection.
    asyncpg.InternalClientError,
    ConnectionError,
    OSError,
    TimeoutError,
)


def is_transient(exc: BaseException) -> bool:
    """True for errors that go away by themselves (database restarting, network, timeouts).

    Of asyncpg's ``InternalClientError`` family only the broken pooled connection ("cannot switch to state
    N; another operation (M) is in progress") is: a ``ProtocolError`` or a missing codec is a bug that would
    recur on every retry, and goes to the dead-letter topic like any other. Of its ``InterfaceError`` family
    only the class itself is ("connection is closed"); its subclasses are about the query or the client,
    not the connection: ``DataError`` (an argument that cannot be encoded), ``ClientConfigurationError``,
    ``Unsupported{Client,Server}FeatureError``.
    """
    if isinstance(exc, asyncpg.InternalClientError):
        return not isinstance(exc, asyncpg.exceptions.ProtocolError) and "another operation" in str(exc)
    if isinstance(exc, asyncpg.InterfaceError):
        return type(exc) is asyncpg.InterfaceError
    return isinstance(exc, TRANSIENT_ERRORS)


@dataclass
class _Stats:
    applied: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    errors: list[str] = field(default_factory=list)


class IdempotentConsumer:
    """Applies events from one topic to one service's database, each at most once.

    Args:
        name: the consumer's name in ``processed_events`` (e.g. ``dispatch.replies``); also its group id.
        topic: the topic consumed.
        handler: ``async (conn, event_or_tombstone) -> None``; runs inside the batch's transaction.
        batch_handler: optional ``async (conn, new_events) -> None`` applying a batch's new events (in topic
            order) at once; ``handler`` remains the per-event fallback when it fails.
        pool: returns the service's asyncpg pool (called per batch, so the pool can be built later).
        dead_letters: publishes a record to a dead-letter topic.
        attempts: tries of a failing handler before the event is dead-lettered.
        transient_backoff: seconds to wait before a batch with a transient error is redelivered.

    """

    def __init__(
        self,
        *,
        name: str,
        topic: TopicSpec,
        handler: Handler,
        batch_handler: BatchHandler | None = None,
        pool: Callable[[], asyncpg.Pool],
        dead_letters: DeadLetterSink,
        attempts: int = 3,
        transient_backoff: float = 1.0,
    ) -> None:
        self.name = name
        self.topic = topic
        self._handler = handler
        self._batch_handler = batch_handler
        self._pool = pool
        self._dead_letters = dead_letters
        self._attempts = attempts
        self._backoff = transient_backoff
        self.stats = _Stats()
        self.service = name.split(".", 1)[0]  # the metrics' service label (build_app sets the service's name)
        self._subscriber: Any = None
        self._lags: list[tuple[int, int]] = []

    # ---------------------------------------------------------------- parsing

    @staticmethod
    def parse(record: ConsumedRecord) -> Received:
        """Turn a record into an event or a tombstone.

        Raises:
            ValueError | pydantic.ValidationError: the record is not a valid event.

        """
        if record.value is None:
            headers = {k: v.decode(errors="replace") for k, v in record.headers}
            if "event_id" not in headers or record.key is None:
                raise ValueError("tombstone without an event_id header or a key")
            return Tombstone(
                topic=record.topic,
                key=record.key.decode(),
                event_id=UUID(headers["event_id"]),
                event_type=headers.get("event_type", "Tombstone"),
            )
        return parse_event(record.value)

    async def _dead_letter(self, conn: asyncpg.Connection | None, record: ConsumedRecord, error: str) -> None:
        headers = {k: v.decode(errors="replace") for k, v in record.headers}
        headers.update(
            {
                "dlq_error": error[:2000],
                "dlq_consumer": self.name,
                "dlq_original_topic": record.topic,
                "dlq_original_partition": str(record.partition),
                "dlq_original_offset": str(record.offset),
            }
        )
        await self._dead_letters(dead_letter(record.topic), record.value, record.key, headers)
        if conn is not None:
            await conn.execute(
                'INSERT INTO dead_letters (consumer, topic, partition, "offset", error) VALUES ($1,$2,$3,$4,$5)',
                self.name, record.topic, record.partition, record.offset, error[:2000],
            )
        self.stats.dead_lettered += 1
        DEAD_LETTERS.labels(self.service, self.name, record.topic).inc()
        log.warning(
            "consumer.dead_lettered", consumer=self.name, topic=record.topic, partition=record.partition,
            offset=record.offset, error=error[:500],
        )

    # ---------------------------------------------------------------- the batch

    async def process(self, records: Sequence[ConsumedRecord]) -> None:
        """Apply a batch of records in one transaction (see the module docstring for the rules).

        With tracing on, the batch runs in a consumer span continuing its records' traces (:mod:`shared.tracing`).

        Raises:
            Exception: a transient error (see :func:`is_transient`), after ``transient_backoff`` seconds;
                nothing of the batch was committed and it must be redelivered.

        """
        with tracing.consumer_span(self.topic.name, self.name, (r.headers for r in records), len(records)):
            await self._process(records)

    async def _process(self, records: Sequence[ConsumedRecord]) -> None:
        parsed: list[tuple[ConsumedRecord, Received]] = []
        poison: list[tuple[ConsumedRecord, str]] = []
        for record in records:
            try:
                parsed.append((record, self.parse(record)))
            except (ValidationError, ValueError, UnicodeDecodeError) as exc:
                poison.append((record, f"{type(exc).__name__}: {exc}"))
        try:
            async with self._pool().acquire() as conn, conn.transaction():
                for record, error in poison:
                    await self._dead_letter(conn, record, error)
                if parsed:
                    await self._apply_batch(conn, parsed)
        except Exception as exc:
            if is_transient(exc):
                log.warning("consumer.transient_error", consumer=self.name, error=repr(exc), retry_in=self._backoff)
                await asyncio.sleep(self._backoff)
            raise

    async def _apply_batch(self, conn: asyncpg.Connection, parsed: list[tuple[ConsumedRecord, Received]]) -> None:
        rows = await conn.fetch(
            "INSERT INTO processed_events (consumer, event_id) SELECT $1, unnest($2::uuid[]) "
            "ON CONFLICT DO NOTHING RETURNING event_id",
            self.name, [item.event_id for _, item in parsed],
        )
        fresh = {r["event_id"] for r in rows}
        if len(rows) < len(parsed):
            CONSUMER_EVENTS.labels(self.service, self.name, self.topic.name, "duplicate").inc(len(parsed) - len(rows))
        todo: list[tuple[ConsumedRecord, Received]] = []
        for record, item in parsed:
            if item.event_id in fresh:
                fresh.discard(item.event_id)  # a second copy inside the same batch is a duplicate too
                todo.append((record, item))
            else:
                self.stats.duplicates += 1
        if not todo:
            return
        if self._batch_handler is not None:
            try:
                async with conn.transaction():  # a savepoint: a failed batch leaves nothing behind
                    await self._batch_handler(conn, [item for _, item in todo])
                self.stats.applied += len(todo)
                CONSUMER_EVENTS.labels(self.service, self.name, self.topic.name, "applied").inc(len(todo))
                return
            except Exception as exc:
                if is_transient(exc):
                    raise
                log.warning("consumer.batch_failed", consumer=self.name, size=len(todo), error=repr(exc))
        for record, item in todo:
            await self._apply_one(conn, record, item)

    async def _apply_one(self, conn: asyncpg.Connection, record: ConsumedRecord, item: Received) -> None:
        last: BaseException | None = None
        for attempt in range(1, self._attempts + 1):
            try:
                async with conn.transaction():  # a savepoint: a failed try leaves nothing behind
                    await self._handler(conn, item)
                self.stats.applied += 1
                CONSUMER_EVENTS.labels(self.service, self.name, self.topic.name, "applied").inc()
                return
            except Exception as exc:
                if is_transient(exc):
                    raise
                last = exc
                log.warning(
                    "consumer.handler_failed", consumer=self.name, event_id=str(item.event_id),
                    event_type=getattr(item, "event_type", None), attempt=attempt, error=repr(exc),
                )
        assert last is not None
        self.stats.errors.append(repr(last))
        await self._dead_letter(conn, record, f"handler failed {self._attempts} times: {last!r}")

    # ---------------------------------------------------------------- FastStream wiring

    def partition_lags(self) -> list[tuple[int, int]]:
        """``(partition, lag)`` of each partition this process is assigned, as :meth:`measure_lag` last found."""
        return self._lags

    async def measure_lag(self) -> None:
        """Measure each assigned partition's lag: its end offset now (one ListOffsets request) − the fetch position.

        The end offset is asked of the broker because the high watermark the fetcher keeps is only as fresh as
        the last fetch, and a consumer stuck in a batch fetches nothing: its lag would look constant. No
        assignment (not started, or mid-rebalance): no partitions.
        """
        consumer: Any = getattr(self._subscriber, "consumer", None)
        parts = list(consumer.assignment()) if consumer is not None else []
        if not parts:
            self._lags = []
            return
        ends = await consumer.end_offsets(parts)
        assignment = consumer._subscription.subscription.assignment  # noqa: SLF001 - position() would wait for a reset
        lags = []
        for tp in parts:
            state = assignment.state_value(tp)
            if state.has_valid_position and tp in ends:
                lags.append((tp.partition, max(0, ends[tp] - state.position)))
        self._lags = lags

    def attach(self, broker: Any, *, max_records: int = 500, batch_timeout_ms: int = 50) -> Any:
        """Register this consumer as a FastStream batch subscriber on ``broker`` (a KafkaBroker or KafkaRouter).

        The subscriber's group id is :attr:`name`; acknowledgement is ``NACK_ON_ERROR``.
        """
        from faststream import AckPolicy
        from faststream.kafka.annotations import KafkaMessage

        subscriber = broker.subscriber(
            self.topic.name,
            group_id=self.name,
            batch=True,
            max_records=max_records,
            batch_timeout_ms=batch_timeout_ms,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.NACK_ON_ERROR,
            title=f"{self.name}:{self.topic.name}",
        )

        async def consume(msg: KafkaMessage) -> None:
            raw = msg.raw_message
            records = raw if isinstance(raw, tuple | list) else (raw,)
            await self.process(records)

        consume.__annotations__ = {"msg": KafkaMessage, "return": None}  # resolved here, not as strings
        consume.__name__ = f"consume_{self.name.replace('.', '_').replace('-', '_')}"
        self._subscriber = subscriber
        # the series exists at 0 from the start, so the first dead letter is an increase an alert sees
        DEAD_LETTERS.labels(self.service, self.name, self.topic.name)
        return subscriber(consume)
