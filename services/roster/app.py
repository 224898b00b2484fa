"""Composition root of the roster service: settings, routers, consumers, background tasks.

At start (after migrations) the organisation units are loaded from the bundled divisions file
(``services/roster/data/shaoxing_divisions.csv``, or ``ROSTER_DIVISIONS_FILE``) when the units
table is empty.

Every route but ``/health/*`` needs the bearer token ``ROSTER_ADMIN_TOKEN``
(:mod:`services.roster.handlers.auth`); :func:`create_app` refuses to build an app without one.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI

from services.roster.handlers import aeds, exports, imports, teams, units, volunteers
from services.roster.handlers.auth import MIN_TOKEN_LENGTH, require_token
from services.roster.handlers.deps import install_error_handlers
from shared.http_errors import error_responses
from shared.service import Runtime, ServiceSpec, build_app
from shared.settings import RosterSettings


async def _load_units_if_empty(runtime: Runtime) -> None:
    from services.roster import divisions

    settings = runtime.settings
    assert isinstance(settings, RosterSettings)
    async with runtime.require_pool().acquire() as conn:
        await divisions.load_if_empty(conn, settings.divisions_file)


def create_app(settings: RosterSettings | None = None) -> FastAPI:
    """Build the roster service's app (connects nothing until started).

    Raises:
        ValueError: ``admin_token`` (``ROSTER_ADMIN_TOKEN``) is not set or shorter than 16 characters.

    """
    settings = settings or RosterSettings()
    token = settings.admin_token.get_secret_value() if settings.admin_token is not None else ""
    if len(token) < MIN_TOKEN_LENGTH:
        raise ValueError(f"ROSTER_ADMIN_TOKEN must be set (at least {MIN_TOKEN_LENGTH} characters) to serve the roster API")
    from services.roster.consumers import unsubscribe_consumer

    # One router carries the token check, so no roster route can be mounted without it.
    api = APIRouter(dependencies=[Depends(require_token)], responses=error_responses(401, 403, 422, 429))
    for router in (volunteers.router, teams.router, imports.router, exports.router, units.router, aeds.router):
        api.include_router(router)

    spec = ServiceSpec(
        name="roster",
        title="muster roster",
        routers=(api,),
        consumers=(unsubscribe_consumer,),
        on_start=_load_units_if_empty,
        # Registers up to imports.MAX_BYTES, with room for the multipart envelope; JSON bodies the default 1 MiB.
        body_limits={"/imports": imports.MAX_BYTES + 1024 * 1024},
    )
    app = build_app(spec, settings)
    install_error_handlers(app)
    return app
