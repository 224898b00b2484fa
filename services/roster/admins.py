"""Roster administrators: named bearer tokens with a role and a unit scope, and the audit log of changes.

Roles:

- ``city_admin``: every unit (``unit_code`` is the city's code, e.g. ``330600``).
- ``registrar``: changes volunteers and teams whose home unit lies in its ``unit_code`` subtree (a county,
  town or village registrar), and imports registers whose every row lies there; reads the whole roster
  (dispatch and the operators need the city-wide view; the token is an administrator's, not the public's).

The shared ``ROSTER_ADMIN_TOKEN`` stays valid as :data:`SHARED_ADMIN`, a city administrator, for the local
stack, the CLI and the drill runner; named tokens are what people use, so that each change says who made it.
Tokens are ``rat_`` + 256 random bits (URL-safe base64), shown once; only their SHA-256 is stored (that many
random bits need no slow hash). The prefix tells a named token from anything else before the database is
asked, and lets secret scanners find leaked ones.
Token changes and every roster change (volunteer created, edited, retired, restored; team created, edited,
retired; register imported) write an ``audit_log`` row in the change's own transaction: actor, role, action,
subject, before and after (mobiles masked).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from shared.privacy import mask_text
from shared.refusals import Refusal

__all__ = ["ROLES", "SHARED_ADMIN", "SYSTEM", "TOKEN_PREFIX", "Admin", "audit", "audit_refusal", "authenticate",
           "create_token", "hash_token", "list_tokens", "revoke_token", "revoked_owner"]

ROLES = ("city_admin", "registrar")
TOKEN_PREFIX = "rat_"
MAX_NAME = 64


@dataclass(frozen=True)
class Admin:
    """Who is changing the roster: ``name``, ``role`` and the unit subtree ``unit_code`` (None: every unit)."""

    name: str
    role: str
    unit_code: str | None

    def covers(self, unit_code: str) -> bool:
        """``unit_code`` lies in this administrator's subtree (a city code ``3306 00`` covers ``3306…``)."""
        if self.unit_code is None:
            return True
        prefix = self.unit_code[:4] if len(self.unit_code) == 6 and self.unit_code.endswith("00") else self.unit_code
        return unit_code.startswith(prefix)


SHARED_ADMIN = Admin("ROSTER_ADMIN_TOKEN", "city_admin", None)
SYSTEM = Admin("system", "system", None)  # the CLI, the seed and the consumers (no bearer token)


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _check(name: str, role: str, unit_code: str) -> None:
    if not name.strip() or len(name) > MAX_NAME:
        raise ValueError(f"an administrator's name is 1..{MAX_NAME} characters")
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if not unit_code.isdigit() or len(unit_code) not in (6, 9, 12):
        raise ValueError("unit_code is a 6-, 9- or 12-digit division code")
    if role == "city_admin" and not (len(unit_code) == 6 and unit_code.endswith("00")):
        raise ValueError("a city_admin's unit is a city (6 digits ending in 00)")


async def create_token(conn: asyncpg.Connection, *, name: str, role: str, unit_code: str,
                       actor: Admin = SYSTEM) -> str:
    """Create a named token and return it (shown once; the creation is audited).

    Raises:
        ValueError: empty or long name, unknown role, bad unit code, or a city_admin scoped below the city.
        asyncpg.UniqueViolationError: the name is taken.

    """
    _check(name, role, unit_code)
    if await conn.fetchval("SELECT 1 FROM units WHERE code = $1", unit_code) is None:
        raise ValueError(f"no unit with code {unit_code}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    async with conn.transaction():
        await conn.execute("INSERT INTO admin_tokens (token_sha256, name, role, unit_code) VALUES ($1, $2, $3, $4)",
                           hash_token(token), name, role, unit_code)
        await audit(conn, actor, "admin.token_create", name, None, {"role": role, "unit_code": unit_code})
    return token


async def revoke_token(conn: asyncpg.Connection, name: str, *, actor: Admin = SYSTEM) -> bool:
    """Revoke the token called ``name``; False when there is no such live token."""
    async with conn.transaction():
        done = await conn.fetchval(
            "UPDATE admin_tokens SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL RETURNING 1", name)
        if done:
            await audit(conn, actor, "admin.token_revoke", name, None, None)
    return bool(done)


async def list_tokens(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """Every token (never the secret): name, role, unit_code, created_at, revoked_at."""
    rows = await conn.fetch("SELECT name, role, unit_code, created_at, revoked_at FROM admin_tokens ORDER BY name")
    return [dict(r) for r in rows]


async def authenticate(conn: asyncpg.Connection, token: str) -> Admin | None:
    """The administrator behind a named token; None when unknown or revoked (or not a named token at all)."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    r = await conn.fetchrow("SELECT name, role, unit_code FROM admin_tokens WHERE token_sha256 = $1 "
                            "AND revoked_at IS NULL", hash_token(token))
    return Admin(r["name"], r["role"], r["unit_code"]) if r else None


async def revoked_owner(conn: asyncpg.Connection, token: str) -> Admin | None:
    """The administrator whose *revoked* named token this is (to name them in the refusal's audit), else None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    r = await conn.fetchrow("SELECT name, role, unit_code FROM admin_tokens WHERE token_sha256 = $1 "
                            "AND revoked_at IS NOT NULL", hash_token(token))
    return Admin(r["name"], r["role"], r["unit_code"]) if r else None


def _masked(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(v) for v in value]
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, UUID):  # asyncpg's own UUID type is one, and orjson does not know it
        return str(value)
    return value


async def audit(conn: asyncpg.Connection, actor: Admin, action: str, subject: str | None,
                before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
    """Append one ``audit_log`` row (in the caller's transaction); phone numbers in the values masked."""
    await conn.execute(
        "INSERT INTO audit_log (actor, role, action, subject, before, after) VALUES ($1, $2, $3, $4, $5, $6)",
        actor.name, actor.role, action, subject, _masked(before), _masked(after),
    )


async def audit_refusal(pool: asyncpg.Pool, refusal: Refusal | None, suppressed: dict[str, int]) -> None:
    """Append the ``access.refused`` row of a refused call (and a ``access.refused_suppressed`` summary)."""
    async with pool.acquire() as conn:
        if suppressed:
            await conn.execute("INSERT INTO audit_log (actor, role, action, subject, before, after) "
                               "VALUES ('anonymous', '-', 'access.refused_suppressed', NULL, NULL, $1)", suppressed)
        if refusal is not None:
            await conn.execute("INSERT INTO audit_log (actor, role, action, subject, before, after) "
                               "VALUES ($1, $2, 'access.refused', $3, NULL, $4)",
                               refusal.who or "anonymous", refusal.role or "-", refusal.route, refusal.row())
