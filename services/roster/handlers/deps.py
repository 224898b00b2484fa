"""What the roster's routes share: a pooled connection per request and the error → HTTP mapping.

``NotFound`` → 404, ``Forbidden`` → 403 (outside the administrator's units), ``Conflict`` → 409,
``BulkConfirmationRequired`` → 428 with the ``confirm`` code, ``InvalidReference`` → 422 with the field path in ``loc``
(the same shape FastAPI uses for body validation errors). A unique violation raised by a
concurrent writer (two imports of the same mobile at once) is a 409 too: nothing was written.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.roster.commands import Conflict, Forbidden, InvalidReference, NotFound
from services.roster.handlers.auth import audit_refused
from services.roster.handlers.bulk import BulkConfirmationRequired

__all__ = ["connection", "install_error_handlers"]


async def connection(request: Request) -> AsyncIterator[asyncpg.Connection]:
    """A connection from the service's pool for the length of the request."""
    pool = request.app.state.runtime.require_pool()
    async with pool.acquire() as conn:
        yield conn


def install_error_handlers(app: FastAPI) -> None:
    async def not_found(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    async def conflict(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    async def invalid(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, InvalidReference)
        loc = ["body", *[int(p) if p.isdigit() else p for p in exc.field.split(".")]]
        return JSONResponse({"detail": [{"loc": loc, "msg": str(exc), "type": "invalid_reference"}]},
                            status_code=422)

    app.add_exception_handler(asyncpg.UniqueViolationError, conflict)
    async def forbidden(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Forbidden)
        await audit_refused(request, exc.actor, 403, str(exc))
        return JSONResponse({"detail": str(exc)}, status_code=403)

    async def confirm(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, BulkConfirmationRequired)
        await audit_refused(request, exc.actor, 428, f"bulk retirement not confirmed ({exc.count} in the window)")
        return JSONResponse({"detail": str(exc), "confirm": exc.code}, status_code=428)

    app.add_exception_handler(BulkConfirmationRequired, confirm)
    app.add_exception_handler(NotFound, not_found)
    app.add_exception_handler(Forbidden, forbidden)
    app.add_exception_handler(Conflict, conflict)
    app.add_exception_handler(InvalidReference, invalid)
