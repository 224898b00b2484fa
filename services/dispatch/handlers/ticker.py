"""The deadline ticker: every ``tick_seconds`` it handles every due requirement (see :func:`usecases.process_due`).

Deadlines live in PostgreSQL (``requirements.deadline_at``), so a restarted service picks up
where it stopped: a deadline that passed while it was down is handled at the first tick. Several
replicas may tick at once; ``FOR UPDATE SKIP LOCKED`` hands each due requirement to one of them.
"""

from __future__ import annotations

import asyncio
from uuid import UUID

import asyncpg

from shared.logging import get_logger
from shared.metrics import DISPATCH_LAST_TICK, DISPATCH_TICKS
from shared.service import Runtime
from shared.settings import DispatchSettings

from .. import usecases

__all__ = ["deadline_ticker", "run_due"]

log = get_logger(__name__)


async def run_due(pool: asyncpg.Pool, *, limit: int = 10_000) -> int:
    """Handle every requirement due now; returns how many were handled.

    A requirement whose handling fails is logged and skipped until the next tick, so it cannot
    hold up the others.
    """
    n = 0
    failed: set[UUID] = set()
    while n < limit:
        try:
            handled = await usecases.process_due(pool, skip=failed)
        except usecases.DueRequirementFailed as exc:
            failed.add(exc.requirement_id)
            log.error("dispatch.due_requirement_failed", requirement_id=str(exc.requirement_id),
                      error=repr(exc.__cause__))
            continue
        if handled is None:
            break
        n += 1
    return n


async def deadline_ticker(runtime: Runtime) -> None:
    """Background task: tick until cancelled; an error is logged and retried at the next tick."""
    settings = runtime.settings
    assert isinstance(settings, DispatchSettings)
    while True:
        try:
            n = await run_due(runtime.require_pool())
            DISPATCH_TICKS.inc()
            DISPATCH_LAST_TICK.set_to_current_time()
            if n:
                log.info("dispatch.ticked", handled=n)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database restarting, a bug in one requirement: retry next tick
            log.warning("dispatch.tick_failed", error=repr(exc))
        await asyncio.sleep(settings.tick_seconds)
