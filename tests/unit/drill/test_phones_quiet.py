"""The drill waits for the stand-downs of a close until the phones have been quiet, not for a fixed pause."""

from __future__ import annotations

import asyncio
import time

from muster.drill.runner import DrillState, _phones_quiet


async def test_the_wait_lasts_while_messages_keep_arriving_after_the_close() -> None:
    state = DrillState()
    closed = time.monotonic()

    async def stand_downs() -> None:  # arriving every 0.2 s for a second after the close
        for _ in range(5):
            await asyncio.sleep(0.2)
            state.last_message = time.monotonic()

    arriving = asyncio.create_task(stand_downs())
    await _phones_quiet(state, since=closed, quiet=0.5, limit=30)
    await arriving
    assert time.monotonic() - state.last_message >= 0.5  # the last one came, then 0.5 s of quiet
    assert state.last_message - closed >= 1.0


async def test_quiet_phones_still_wait_the_quiet_time_after_the_close() -> None:
    state = DrillState()
    state.last_message = time.monotonic() - 60  # the last message long before the close
    closed = time.monotonic()
    await _phones_quiet(state, since=closed, quiet=0.3)
    assert time.monotonic() - closed >= 0.3
