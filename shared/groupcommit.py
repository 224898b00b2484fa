"""Group commit: many concurrent callers' work applied in one transaction, each caller answered after it.

When hundreds of small units of work arrive a second (a provider pushing one delivery receipt per HTTP
request), a transaction each costs more than the work: a pool connection, a commit's WAL flush, event-loop
turns. :class:`GroupCommit` runs one group at a time; whatever is submitted while a group runs forms the
next group, so the group size follows the load (one item when quiet) and nothing waits on a timer.

Each :meth:`GroupCommit.submit` returns that item's own result once its group's ``apply`` returned (for a
database, once the transaction committed), or raises the group's error, or the item's own when ``apply``
gives an exception in the item's place.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from shared.logging import get_logger

__all__ = ["GroupCommit"]

log = get_logger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """Applies submitted items in groups, one group at a time.

    Args:
        apply: ``async (items) -> results``, one result per item in order; a result that is an
            exception is raised to that item's caller only. An exception raised by ``apply`` goes to
            every caller of the group, unless ``transient`` is given (below).
        transient: tells a passing failure (a database restarting) from one an item causes. When given,
            a group of several items whose ``apply`` fails with a non-transient error is applied again
            one item at a time, so that a bad item fails alone and the others are applied; a transient
            error still goes to every caller of the group.
        name: the group's name in logs.

    """

    def __init__(self, apply: Callable[[Sequence[T]], Awaitable[Sequence[R | BaseException]]], *,
                 transient: Callable[[Exception], bool] | None = None, name: str = "group") -> None:
        self._apply = apply
        self._transient = transient
        self._name = name
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None
        self.groups = 0  # how many groups ran (for tests and logs)

    async def submit(self, item: T) -> R:
        """Add ``item`` to the next group and wait for its result (see the module docstring)."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        return await future

    async def apply_group(self, items: Sequence[T]) -> Sequence[R | BaseException]:
        """Apply ``items`` as one group, or one by one after a non-transient failure (see ``transient``).

        Raises:
            Exception: ``apply``'s error, when it cannot be confined to single items.

        """
        try:
            return await self._apply(items)
        except Exception as exc:
            if self._transient is None or len(items) == 1 or self._transient(exc):
                raise
            log.warning("groupcommit.split", group=self._name, items=len(items), error=repr(exc))
        results: list[R | BaseException] = []
        for item in items:
            try:
                one = await self._apply([item])
            except Exception as exc:  # noqa: BLE001 - this item's caller raises it
                results.append(exc)
            else:
                results.extend(one)
        return results

    def cancel(self) -> None:
        """Stop the running group, if any; its callers' and the queued callers' waits are cancelled (a service stopping)."""
        if self._task is not None:
            self._task.cancel()

    async def _drain(self) -> None:
        while self._queue:
            group, self._queue = self._queue, []
            self.groups += 1
            try:
                results = await self.apply_group([item for item, _ in group])
            except asyncio.CancelledError:
                queued, self._queue = self._queue, []
                for _, future in group + queued:  # the running group and the one waiting behind it
                    future.cancel()
                raise
            except Exception as exc:  # noqa: BLE001 - handed to every caller of the group
                for _, future in group:
                    if not future.done():
                        future.set_exception(exc)
                continue
            if len(results) != len(group):
                error = RuntimeError(f"group commit: {len(results)} results for {len(group)} items")
                for _, future in group:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), result in zip(group, results, strict=True):
                if future.done():  # the caller went away (cancelled); its item was applied all the same
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
