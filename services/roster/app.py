"""Composition root of the roster service: settings, routers, consumers, background tasks.

At start (after migrations) the organisation units are loaded from the bundled divisions file
(``services/roster/data/shaoxing_divisions.csv``, or ``ROSTER_DIVISIONS_FILE``) when the units
table is empty.
"""

from __future__ import annotations

from fastapi import FastAPI

from services.roster.handlers import imports, teams, units, volunteers
from services.roster.handlers.deps import install_error_handlers
from shared.service import Runtime, ServiceSpec, build_app
from shared.settings import RosterSettings


async def _load_units_if_empty(runtime: Runtime) -> None:
    from services.roster import divisions

    settings = runtime.settings
    assert isinstance(settings, RosterSettings)
    async with runtime.require_pool().acquire() as conn:
        await divisions.load_if_empty(conn, settings.divisions_file)


def create_app(settings: RosterSettings | None = None) -> FastAPI:
    """Build the roster service's app (connects nothing until started)."""
    settings = settings or RosterSettings()
    from services.roster.consumers import unsubscribe_consumer

    spec = ServiceSpec(
        name="roster",
        title="muster roster",
        routers=(volunteers.router, teams.router, imports.router, units.router),
        consumers=(unsubscribe_consumer,),
        on_start=_load_units_if_empty,
    )
    app = build_app(spec, settings)
    install_error_handlers(app)
    return app
