"""Bulk retirements need a confirmation step: one leaked token must not retire the roster unnoticed.

An administrator who retired :data:`THRESHOLD` volunteers and teams within :data:`WINDOW_SECONDS` gets
``428 Precondition Required`` (RFC 6585 §3) on the next retirement, with a ``confirm`` code in the body;
sending that code back in the ``X-Confirm-Bulk`` header confirms the bulk for the rest of the window
(then the count starts again). The answer is audited like other refusals (``access.refused``, 428).
Codes are per administrator and per process (a roster runs one replica); a restart asks again.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field

import asyncpg
from fastapi import Request

from services.roster import commands
from services.roster.admins import Admin

__all__ = ["CONFIRM_HEADER", "THRESHOLD", "WINDOW_SECONDS", "BulkConfirmationRequired", "require_confirmation"]

THRESHOLD = 20
WINDOW_SECONDS = 600.0
CONFIRM_HEADER = "X-Confirm-Bulk"


class BulkConfirmationRequired(Exception):
    """``count`` retirements in the window; ``code`` is what the client must send back."""

    def __init__(self, actor: Admin, count: int, code: str) -> None:
        super().__init__(
            f"{actor.name} retired {count} volunteers and teams in the last {int(WINDOW_SECONDS // 60)} minutes; "
            f"to go on, send the header {CONFIRM_HEADER}: {code}")
        self.actor = actor
        self.count = count
        self.code = code


@dataclass
class _Codes:
    by_actor: dict[str, tuple[str, float, bool]] = field(default_factory=dict)  # name → (code, expires, confirmed)


async def require_confirmation(request: Request, conn: asyncpg.Connection, actor: Admin) -> None:
    """Raise :class:`BulkConfirmationRequired` when ``actor`` is over the threshold and has not confirmed."""
    count = await commands.recent_retirements(conn, actor, seconds=WINDOW_SECONDS)
    if count < THRESHOLD:
        return
    codes: _Codes | None = getattr(request.app.state, "bulk_codes", None)
    if codes is None:
        codes = request.app.state.bulk_codes = _Codes()
    now = time.monotonic()
    held = codes.by_actor.get(actor.name)
    if held is not None and held[1] > now:
        code, expires, confirmed = held
        given = request.headers.get(CONFIRM_HEADER, "")
        if confirmed or (given and hmac.compare_digest(given.encode(), code.encode())):
            codes.by_actor[actor.name] = (code, expires, True)
            return
    else:
        code = secrets.token_hex(4)
        codes.by_actor[actor.name] = (code, now + WINDOW_SECONDS, False)
    raise BulkConfirmationRequired(actor, count, code)
