"""Refused calls (401, 403) of the operator and administrator APIs: audited and logged, with a flood cap.

Every refusal logs ``access.refused`` at warning level (who if known, the route template, the status and
why) and appends an ``access.refused`` row to the service's ``audit_log``, so an administrator sees
attempts on other units, writes by viewers and revoked or unknown tokens.

Flood cap (what an unauthenticated client can make the table grow by): per process and per minute, at
most :data:`ANONYMOUS_PER_MINUTE` rows for refusals without a known identity (no token, unknown token)
and :data:`IDENTIFIED_PER_MINUTE` for those of a known (or revoked) token. Refusals beyond the cap in a
minute are counted, not written one by one; the first refusal of a later minute writes one
``access.refused_suppressed`` row (and a warning) with how many were left out, by kind. So a flood adds
at most ``ANONYMOUS_PER_MINUTE + IDENTIFIED_PER_MINUTE + 1`` rows a minute per replica, whatever its rate.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from shared.logging import get_logger

__all__ = ["ANONYMOUS_PER_MINUTE", "IDENTIFIED_PER_MINUTE", "Refusal", "RefusalCap", "record_refusal", "route_of",
           "token_fingerprint"]

log = get_logger(__name__)

ANONYMOUS_PER_MINUTE = 30
IDENTIFIED_PER_MINUTE = 120


@dataclass(frozen=True)
class Refusal:
    """One refused call.

    ``who`` (a name, or None when unknown), ``role``, ``route`` (``POST /teams``), ``status`` (401 or 403),
    ``reason`` (the answer's detail) and ``token`` (a fingerprint of an unknown token,
    :func:`token_fingerprint`, so that repeated attempts can be told apart without storing it).
    """

    who: str | None
    role: str | None
    route: str
    status: int
    reason: str
    token: str | None = None

    def row(self) -> dict[str, Any]:
        return {"route": self.route, "status": self.status, "reason": self.reason, "token": self.token}


@dataclass
class RefusalCap:
    """The per-minute cap (module docstring). ``clock`` returns seconds (monotonic)."""

    anonymous_per_minute: int = ANONYMOUS_PER_MINUTE
    identified_per_minute: int = IDENTIFIED_PER_MINUTE
    clock: Callable[[], float] = time.monotonic
    _minute: int = -1
    _written: dict[str, int] = field(default_factory=dict)
    _suppressed: dict[str, int] = field(default_factory=dict)

    def admit(self, refusal: Refusal) -> tuple[bool, dict[str, int]]:
        """Whether to write this refusal's row, and the counts suppressed in earlier minutes to summarise now."""
        minute = int(self.clock() // 60)
        carried: dict[str, int] = {}
        if minute != self._minute:
            carried = {k: v for k, v in self._suppressed.items() if v}
            self._minute, self._written, self._suppressed = minute, {}, {}
        kind = "identified" if refusal.who else "anonymous"
        cap = self.identified_per_minute if refusal.who else self.anonymous_per_minute
        if self._written.get(kind, 0) >= cap:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return False, carried
        self._written[kind] = self._written.get(kind, 0) + 1
        return True, carried


def token_fingerprint(token: str | None) -> str | None:
    """The first 12 hex digits of the token's SHA-256 (dispatch's token id), or None without a token."""
    return hashlib.sha256(token.encode()).hexdigest()[:12] if token else None


def route_of(request: Request) -> str:
    """``METHOD /path/template`` of the request (the template, so ids do not make every route unique)."""
    route = request.scope.get("route")
    path = getattr(route, "path", None) or request.url.path
    return f"{request.method} {path}"


Writer = Callable[[Refusal | None, dict[str, int]], Awaitable[None]]


async def record_refusal(request: Request, refusal: Refusal, write: Writer) -> None:
    """Log ``refusal`` at warning level and, within the cap, write it with ``write(refusal, suppressed)``.

    ``write`` gets the refusal (None when the cap leaves it out) and the counts suppressed in earlier
    minutes (empty when none); it inserts the rows. A failure to write is logged, never raised: the caller
    answers the refusal whatever happens to its audit.
    """
    cap: RefusalCap | None = getattr(request.app.state, "refusal_cap", None)
    if cap is None:
        cap = request.app.state.refusal_cap = RefusalCap()
    admitted, suppressed = cap.admit(refusal)
    if suppressed:
        log.warning("access.refused_suppressed", **suppressed)
    if admitted:
        log.warning("access.refused", who=refusal.who or "anonymous", role=refusal.role, route=refusal.route,
                    status=refusal.status, reason=refusal.reason, token=refusal.token)
    if not admitted and not suppressed:
        return
    try:
        await write(refusal if admitted else None, suppressed)
    except Exception as exc:  # the audit must not turn a 401/403 into a 500
        log.error("access.refusal_not_audited", error=type(exc).__name__, route=refusal.route)

