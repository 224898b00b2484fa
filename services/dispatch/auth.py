"""Operator access: bearer tokens, each with a role and a unit scope.

Roles: ``city`` (unit 330600), ``county`` (a 6-digit district/county), ``town`` (a 9-digit
town/street) and ``village`` (a 12-digit village/community, 村/社区) operators open and act on incidents
whose village lies inside their unit (a village operator: only their own village's); a
``viewer`` reads incidents inside their unit (any level) and changes nothing. Tokens are random
(``secrets.token_urlsafe``, 256 bits) and stored only as their SHA-256. A token's *id* is the first
:data:`TOKEN_ID_LENGTH` hex digits of that hash: safe to show, enough to name one token. A revoked token
(``revoked_at`` set, :func:`revoke_tokens`) is refused like an unknown one (401) from the next request on.

Errors: :class:`~services.dispatch.errors.AccessDenied` (401 no/unknown/revoked token, 403 role or scope),
:class:`~services.dispatch.errors.InvalidInput` for a role that does not fit its unit,
:class:`~services.dispatch.errors.NotFound` when a revocation matches no active token.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

import asyncpg

from shared.divisions import is_valid_code, level_of
from shared.vocabulary import Level

from .domain.selection import within_unit
from .domain.validation import MAX_NAME_LENGTH, check_text
from .errors import AccessDenied, InvalidInput, NotFound

__all__ = [
    "ROLES",
    "TOKEN_ID_LENGTH",
    "Operator",
    "authenticate",
    "create_token",
    "hash_token",
    "list_tokens",
    "revoke_tokens",
]

#: Hex digits of a token's SHA-256 that make its id (48 bits).
TOKEN_ID_LENGTH = 12
#: Role → the level its unit must be at (None: any level, read only).
ROLES: dict[str, Level | None] = {
    "city": Level.CITY, "county": Level.COUNTY, "town": Level.TOWN, "village": Level.VILLAGE, "viewer": None,
}


@dataclass(frozen=True)
class Operator:
    name: str
    role: str
    unit_code: str

    @property
    def writes(self) -> bool:
        return self.role != "viewer"

    def covers(self, unit_code: str) -> bool:
        """True when ``unit_code`` (an incident's village) is inside this operator's unit."""
        return within_unit(unit_code, self.unit_code)

    def require_scope(self, unit_code: str) -> None:
        """Raises AccessDenied (403) when ``unit_code`` is outside the operator's unit."""
        if not self.covers(unit_code):
            raise AccessDenied(f"{unit_code} is outside {self.name}'s unit {self.unit_code}", who=self.name,
                               role=self.role)

    def require_write(self, unit_code: str) -> None:
        """Raises AccessDenied (403) for a viewer, or when ``unit_code`` is outside the operator's unit."""
        if not self.writes:
            raise AccessDenied(f"{self.name} is a viewer and can only read", who=self.name, role=self.role)
        self.require_scope(unit_code)


def hash_token(token: str) -> str:
    """SHA-256 of a token, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def check_role(role: str, unit_code: str) -> None:
    """Raises InvalidInput when ``role`` is unknown or ``unit_code`` is not at the role's level."""
    if role not in ROLES:
        raise InvalidInput(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    if not is_valid_code(unit_code):
        raise InvalidInput(f"{unit_code!r} is not a division code")
    want = ROLES[role]
    if want is not None and level_of(unit_code) is not want:
        raise InvalidInput(f"a {role} operator's unit must be a {want.value} code, got {unit_code}")


async def create_token(conn: asyncpg.Connection, *, name: str, role: str, unit_code: str) -> str:
    """Create an operator token and return it (shown once; only its hash is stored; the creation is audited).

    Raises:
        InvalidInput: empty name or longer than 64 characters, unknown role, or a unit not at the role's level.

    """
    if not name.strip():
        raise InvalidInput("an operator needs a name")
    check_text("name", name, MAX_NAME_LENGTH)
    check_role(role, unit_code)
    token = secrets.token_urlsafe(32)
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO operators (token_sha256, name, role, unit_code) VALUES ($1, $2, $3, $4)",
            hash_token(token), name, role, unit_code,
        )
        await conn.execute(
            "INSERT INTO audit_log (operator, role, action, incident_id, before, after) "
            "VALUES ('cli', 'admin', 'operator.token_create', NULL, NULL, $1)",
            {"name": name, "role": role, "unit_code": unit_code},
        )
    return token


async def list_tokens(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """Every operator token, oldest first, without the token itself.

    Returns:
        ``[{"id", "name", "role", "unit_code", "created_at", "revoked_at"}]``; ``id`` is the token's id
        (:data:`TOKEN_ID_LENGTH` hex digits of its SHA-256); times are aware datetimes (UTC), ``revoked_at``
        None while the token is valid.

    """
    rows = await conn.fetch(
        "SELECT left(token_sha256, $1) AS id, name, role, unit_code, created_at, revoked_at FROM operators "
        "ORDER BY created_at, token_sha256", TOKEN_ID_LENGTH,
    )
    return [dict(r) for r in rows]


async def revoke_tokens(
    conn: asyncpg.Connection, *, name: str | None = None, token_id: str | None = None, by: str = "cli"
) -> list[dict[str, Any]]:
    """Revoke the valid tokens of operator ``name`` (all of them), or the one token with id ``token_id``.

    Sets ``revoked_at`` (now) and writes one audit entry (``operator.token_revoke``) per token, in one
    transaction. A revoked token is refused (401) from the next request on.

    Args:
        conn: a connection to dispatch's database.
        name: the operator's name as given at creation (exact match).
        token_id: a token's id as shown by :func:`list_tokens` (:data:`TOKEN_ID_LENGTH` hex digits).
        by: who revokes, for the audit log.

    Returns:
        The revoked tokens as :func:`list_tokens` shows them.

    Raises:
        InvalidInput: neither or both of ``name`` and ``token_id``, or a malformed id.
        NotFound: no valid (unrevoked) token matches.

    """
    if (name is None) == (token_id is None):
        raise InvalidInput("give exactly one of an operator name or a token id")
    if token_id is not None and not (
        len(token_id) == TOKEN_ID_LENGTH and all(c in "0123456789abcdef" for c in token_id.lower())
    ):
        raise InvalidInput(f"a token id is {TOKEN_ID_LENGTH} hex digits (see `muster incident token list`)")
    async with conn.transaction():
        rows = await conn.fetch(
            """UPDATE operators SET revoked_at = now()
               WHERE revoked_at IS NULL AND ($1::text IS NULL OR name = $1)
                 AND ($2::text IS NULL OR left(token_sha256, $3) = $2)
               RETURNING left(token_sha256, $3) AS id, name, role, unit_code, created_at, revoked_at""",
            name, token_id.lower() if token_id else None, TOKEN_ID_LENGTH,
        )
        if not rows:
            what = f"operator {name!r}" if name is not None else f"id {token_id}"
            raise NotFound(f"no valid token for {what} (unknown or already revoked)")
        for r in rows:
            await conn.execute(
                "INSERT INTO audit_log (operator, role, action, incident_id, before, after) "
                "VALUES ($1, 'admin', 'operator.token_revoke', NULL, $2, $3)",
                by, {"id": r["id"], "name": r["name"], "role": r["role"], "unit_code": r["unit_code"],
                     "revoked_at": None},
                {"revoked_at": r["revoked_at"].isoformat()},
            )
    return [dict(r) for r in rows]


async def authenticate(conn: asyncpg.Connection, authorization: str | None) -> Operator:
    """The operator behind an ``Authorization: Bearer <token>`` header.

    Raises:
        AccessDenied: (401) missing header or unknown/revoked token.

    """
    if not authorization or not authorization.lower().startswith("bearer "):
        raise AccessDenied("missing bearer token", status=401)
    digest = hash_token(authorization[7:].strip())
    row = await conn.fetchrow(
        "SELECT name, role, unit_code, revoked_at FROM operators WHERE token_sha256 = $1", digest,
    )
    if row is None:
        raise AccessDenied("unknown or revoked token", status=401, token=digest[:TOKEN_ID_LENGTH])
    if row["revoked_at"] is not None:
        raise AccessDenied("unknown or revoked token", status=401, who=row["name"], role=row["role"],
                           token=digest[:TOKEN_ID_LENGTH])
    return Operator(row["name"], row["role"], row["unit_code"])
