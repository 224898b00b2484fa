"""GroupCommit: concurrent submissions share groups, each caller gets its own result or error."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from shared.groupcommit import GroupCommit


async def test_items_submitted_while_a_group_runs_form_the_next_group() -> None:
    seen: list[list[int]] = []
    gate = asyncio.Event()

    async def apply(items: Sequence[int]) -> list[int]:
        seen.append(list(items))
        if len(seen) == 1:
            await gate.wait()  # the first group is still running while the others are submitted
        return [i * 10 for i in items]

    gc: GroupCommit[int, int] = GroupCommit(apply)
    first = asyncio.create_task(gc.submit(1))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(gc.submit(i)) for i in (2, 3, 4)]
    await asyncio.sleep(0)
    gate.set()
    assert await first == 10
    assert [await t for t in rest] == [20, 30, 40]
    assert seen == [[1], [2, 3, 4]]
    assert gc.groups == 2


async def test_an_exception_in_an_items_place_goes_to_that_caller_only() -> None:
    async def apply(items: Sequence[int]) -> list[int | BaseException]:
        return [ValueError(i) if i == 2 else i for i in items]

    gc: GroupCommit[int, int] = GroupCommit(apply)
    results = await asyncio.gather(*(gc.submit(i) for i in (1, 2, 3)), return_exceptions=True)
    assert results[0] == 1 and results[2] == 3
    assert isinstance(results[1], ValueError)


async def test_a_failed_group_fails_every_caller_and_the_next_group_still_runs() -> None:
    calls = 0

    async def apply(items: Sequence[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database gone")
        return list(items)

    gc: GroupCommit[int, int] = GroupCommit(apply)
    results = await asyncio.gather(*(gc.submit(i) for i in (1, 2)), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    assert await gc.submit(5) == 5


async def test_a_wrong_number_of_results_is_an_error_not_a_misattribution() -> None:
    async def apply(items: Sequence[int]) -> list[int]:
        return [0]

    gc: GroupCommit[int, int] = GroupCommit(apply)
    with pytest.raises(RuntimeError, match="1 results for 2 items"):
        await asyncio.gather(gc.submit(1), gc.submit(2))


async def test_cancel_stops_the_running_group_and_the_callers_queued_behind_it() -> None:
    started = asyncio.Event()

    async def apply(items: Sequence[int]) -> list[int]:
        started.set()
        await asyncio.sleep(60)
        return list(items)

    gc: GroupCommit[int, int] = GroupCommit(apply)
    waiting = asyncio.create_task(gc.submit(1))
    await started.wait()
    queued = asyncio.create_task(gc.submit(2))  # behind the running group
    await asyncio.sleep(0)
    gc.cancel()
    for task in (waiting, queued):
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)


async def test_with_transient_a_failing_group_is_applied_again_item_by_item_unless_the_error_is_transient() -> None:
    calls: list[list[int]] = []

    async def apply(items: Sequence[int]) -> list[int]:
        calls.append(list(items))
        if 2 in items:
            raise ValueError("item 2 is bad")
        if 9 in items:
            raise ConnectionError("database restarting")
        return [i * 10 for i in items]

    gc: GroupCommit[int, int] = GroupCommit(apply, transient=lambda exc: isinstance(exc, ConnectionError))
    results = await gc.apply_group([1, 2, 3])
    assert results[0] == 10 and results[2] == 30 and isinstance(results[1], ValueError)
    assert calls == [[1, 2, 3], [1], [2], [3]]
    with pytest.raises(ConnectionError):  # transient: every caller of the group gets it, nothing is split
        await gc.apply_group([1, 9])
    assert calls[-1] == [1, 9]
