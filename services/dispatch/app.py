"""Composition root of the dispatch service: settings, routers, consumers, background tasks.

Wires the operator API (:mod:`.handlers.http`), the four idempotent consumers
(:mod:`.handlers.consumers`) and the deadline ticker (:mod:`.handlers.ticker`) into
:func:`shared.service.build_app`.
"""

from __future__ import annotations

from collections.abc import Collection

from fastapi import FastAPI

from shared.metrics import DISPATCH_CALLOUTS
from shared.service import Runtime, ServiceSpec, build_app
from shared.settings import DispatchSettings

from .console import router as console_router
from .console import stop_hub
from .domain.model import CallOutState
from .handlers.consumers import consumer_factories
from .handlers.http import install_error_handlers, router
from .handlers.service_record import router as record_router
from .handlers.service_record import star_levels
from .handlers.ticker import deadline_ticker


async def callouts_by_state(runtime: Runtime) -> None:
    """Set ``muster_dispatch_callouts{state}`` from the call-outs of open incidents (one grouped count)."""
    async with runtime.require_pool().acquire() as conn:
        rows = await conn.fetch(
            "SELECT c.state, count(*) FROM incidents i JOIN callouts c ON c.incident_id = i.incident_id "
            "WHERE i.status = 'open' GROUP BY c.state"
        )
    counts = {r[0]: r[1] for r in rows}
    for state in CallOutState:
        DISPATCH_CALLOUTS.labels(state.value).set(counts.get(state.value, 0))


def create_app(
    settings: DispatchSettings | None = None, *, migrate: bool = True, consumers: Collection[str] | None = None
) -> FastAPI:
    """Build the dispatch service's app (connects nothing until started).

    Raises:
        pydantic.ValidationError: ``DISPATCH_STAR_LEVELS`` is not a JSON list of star levels.

    Args:
        settings: defaults to :class:`DispatchSettings` from the environment.
        migrate: run the migrations at start.
        consumers: names of the consumers to run (``roster-profiles``, ``roster-teams``, ``replies``,
            ``deliveries``); all by default. Tests that feed the projection themselves leave some out.

    """
    settings = settings or DispatchSettings()
    star_levels(settings)  # a malformed DISPATCH_STAR_LEVELS fails the start, not the annual review
    spec = ServiceSpec(
        name="dispatch",
        title="muster dispatch",
        routers=[router, record_router, console_router],
        consumers=consumer_factories(settings.consumer_prefix, only=consumers),
        background=[deadline_ticker],
        scrape=[callouts_by_state],
        on_stop=stop_hub,
    )
    app = build_app(spec, settings, migrate=migrate)
    install_error_handlers(app)
    return app
