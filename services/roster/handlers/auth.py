"""Access to the roster's HTTP API: named administrator tokens, and the shared ``ROSTER_ADMIN_TOKEN``.

Every route except ``/health/*`` needs ``Authorization: Bearer <token>`` (the roster holds every
volunteer's mobile and WeChat openid, and imports and retirements change who is called out).
A named token (``muster roster token create``; :mod:`services.roster.admins`) acts as its administrator,
with its role and unit scope, and each change it makes is audited under its name. The shared token comes
from :attr:`shared.settings.RosterSettings.admin_token` (no default; the local stack generates one into
``stack.env``), is compared in constant time (:func:`hmac.compare_digest`) and acts as a city administrator
(:data:`services.roster.admins.SHARED_ADMIN`), for the stack, the CLI and the drill runner.

Every refusal (401 here, 403 out of scope) is logged at warning level and audited as ``access.refused``
(capped per minute: :mod:`shared.refusals`).

Errors: 401 with ``WWW-Authenticate: Bearer`` and a ``detail`` saying what is wrong (no token, not
a bearer token, wrong token); 401 too when the service has no token configured (it refuses
everything rather than serve unauthenticated).
"""

from __future__ import annotations

import hmac
import time
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.roster.admins import (
    SHARED_ADMIN,
    TOKEN_PREFIX,
    Admin,
    audit_refusal,
    authenticate,
    revoked_owner,
)
from shared.refusals import Refusal, record_refusal, route_of, token_fingerprint

__all__ = ["MIN_TOKEN_LENGTH", "WRITES_PER_MINUTE", "AdminDep", "audit_refused", "check_token", "require_token"]

MIN_TOKEN_LENGTH = 16
_bearer = HTTPBearer(auto_error=False, description="`ROSTER_ADMIN_TOKEN` (see the stack's `stack.env`).")


def check_token(configured: str | None, given: str | None) -> str | None:
    """Why ``given`` does not open the API, or None when it does.

    Args:
        configured: the service's token (None when not configured: nothing opens the API).
        given: the token sent by the client (None when no bearer token was sent).

    Returns:
        A message for the 401 answer, or None when ``given`` equals ``configured``.

    """
    if not configured:
        return "the roster API has no token configured (set ROSTER_ADMIN_TOKEN)"
    if not given:
        return "missing bearer token: send 'Authorization: Bearer <ROSTER_ADMIN_TOKEN>'"
    if not hmac.compare_digest(given.encode(), configured.encode()):
        return "invalid bearer token"
    return None


#: Changes (POST, PATCH, PUT, DELETE) one administrator may make a minute, per process; 429 beyond.
WRITES_PER_MINUTE = 300
_WRITES = frozenset({"POST", "PATCH", "PUT", "DELETE"})
_clock = time.monotonic  # seconds; the minute of a write is _clock() // 60


async def require_token(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Admin:
    """FastAPI dependency: the administrator behind the bearer token; 401 when there is none, 429 over the rate."""
    admin = await _authenticated(request, credentials)
    if request.method in _WRITES:
        await _limit_writes(request, admin)
    return admin


async def _limit_writes(request: Request, admin: Admin) -> None:
    """Refuse (429, ``Retry-After``) a change past :data:`WRITES_PER_MINUTE` of this administrator this minute."""
    now = _clock()
    minute = int(now // 60)
    counts: dict[tuple[str, int], int] | None = getattr(request.app.state, "roster_writes", None)
    if counts is None or all(m != minute for _, m in counts):
        counts = request.app.state.roster_writes = {}
    key = (admin.name, minute)
    counts[key] = counts.get(key, 0) + 1
    if counts[key] > WRITES_PER_MINUTE:
        retry = 60 - int(now % 60)
        reason = f"more than {WRITES_PER_MINUTE} changes a minute by {admin.name}; retry in {retry} s"
        await _refused(request, Refusal(admin.name, admin.role, route_of(request), 429, reason))
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, detail=reason, headers={"Retry-After": str(retry)})


async def _authenticated(
    request: Request, credentials: HTTPAuthorizationCredentials | None
) -> Admin:
    secret = getattr(request.app.state.runtime.settings, "admin_token", None)
    configured = secret.get_secret_value() if secret is not None else None
    given = credentials.credentials if credentials is not None else None
    if credentials is None and request.headers.get("authorization"):
        problem: str | None = "the Authorization header must be 'Bearer <token>'"
    else:
        problem = check_token(configured, given)
        if problem is None:
            return SHARED_ADMIN
        if configured and given and given.startswith(TOKEN_PREFIX):
            async with request.app.state.runtime.require_pool().acquire() as conn:
                admin = await authenticate(conn, given)
                owner = await revoked_owner(conn, given) if admin is None else None
            if admin is not None:
                return admin
            if owner is not None:
                problem = f"the token of {owner.name} is revoked"
                await _refused(request, Refusal(owner.name, owner.role, route_of(request), 401, problem,
                                                token_fingerprint(given)))
                raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail=problem,
                                    headers={"WWW-Authenticate": "Bearer"})
    assert problem is not None
    await _refused(request, Refusal(None, None, route_of(request), 401, problem, token_fingerprint(given)))
    raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail=problem, headers={"WWW-Authenticate": "Bearer"})


async def _refused(request: Request, refusal: Refusal) -> None:
    """Log and audit a refused call (capped per minute; :mod:`shared.refusals`)."""
    pool = request.app.state.runtime.pool

    async def write(r: Refusal | None, suppressed: dict[str, int]) -> None:
        if pool is not None:
            await audit_refusal(pool, r, suppressed)

    await record_refusal(request, refusal, write)


AdminDep = Annotated[Admin, Depends(require_token)]


async def audit_refused(request: Request, who: Admin | None, status_code: int, reason: str) -> None:
    """Log and audit a refusal after authentication (403 outside the administrator's units, 428 unconfirmed)."""
    await _refused(request, Refusal(who.name if who else None, who.role if who else None, route_of(request),
                                    status_code, reason))
