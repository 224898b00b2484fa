"""An :class:`~shared.consumer.IdempotentConsumer` that applies a whole Kafka batch with a few statements.

Same delivery semantics as the shared consumer (group = name, ``NACK_ON_ERROR``, event ids recorded in
``processed_events`` in the batch's transaction, poison → ``<topic>.dlq``), but where the shared one
spends four round trips per event (dedup insert, savepoint, handler, release), this one records the
batch's event ids with one ``INSERT … SELECT unnest(…) … RETURNING`` and hands the new events to a
*batch* handler in one savepoint. A fan-out of 10,000 call-outs becomes a few dozen statements.

If the batch handler raises a non-transient error, the savepoint is rolled back and the batch's new
events are applied one by one with the per-event handler (each in its own savepoint, ``attempts``
tries, then dead-lettered), exactly as the shared consumer would: one bad event never blocks the rest.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
from pydantic import ValidationError

from shared.consumer import ConsumedRecord, IdempotentConsumer, Received, is_transient
from shared.logging import get_logger

__all__ = ["BatchHandler", "BatchIdempotentConsumer"]

log = get_logger(__name__)

BatchHandler = Callable[[asyncpg.Connection, Sequence[Received]], Awaitable[None]]


class BatchIdempotentConsumer(IdempotentConsumer):
    """Applies each new event of a batch at most once, with one batch handler call.

    Args:
        batch_handler: ``async (conn, events) -> None``; events in topic order, new ones only.
        **kwargs: as :class:`shared.consumer.IdempotentConsumer` (``handler`` is the per-event fallback).

    """

    def __init__(self, *, batch_handler: BatchHandler, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._batch_handler = batch_handler

    async def process(self, records: Sequence[ConsumedRecord]) -> None:
        """Apply a batch in one transaction (see the module docstring).

        Raises:
            Exception: a transient error (see :func:`shared.consumer.is_transient`); nothing was committed.

        """
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
                import asyncio

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
        todo: list[tuple[ConsumedRecord, Received]] = []
        for record, item in parsed:
            if item.event_id in fresh:
                fresh.discard(item.event_id)  # a second copy inside the same batch is a duplicate too
                todo.append((record, item))
            else:
                self.stats.duplicates += 1
        if not todo:
            return
        try:
            async with conn.transaction():
                await self._batch_handler(conn, [item for _, item in todo])
            self.stats.applied += len(todo)
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
                async with conn.transaction():
                    await self._handler(conn, item)
                self.stats.applied += 1
                return
            except Exception as exc:
                if is_transient(exc):
                    raise
                last = exc
                log.warning("consumer.handler_failed", consumer=self.name, event_id=str(item.event_id),
                            event_type=getattr(item, "event_type", None), attempt=attempt, error=repr(exc))
        assert last is not None
        self.stats.errors.append(repr(last))
        await self._dead_letter(conn, record, f"handler failed {self._attempts} times: {last!r}")
