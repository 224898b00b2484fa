"""Operator access: bearer tokens, each with a role and a unit scope.

Roles: ``city`` (unit 330600), ``county`` (a 6-digit district/county), ``town`` (a 9-digit
town/street) operators open and act on incidents whose village lies inside their unit; a
``viewer`` reads incidents inside their unit (any level) and changes nothing. Tokens are random
(``secrets.token_urlsafe``, 256 bits) and stored only as their SHA-256.

Errors: :class:`~services.dispatch.errors.AccessDenied` (401 no/unknown token, 403 role or scope),
:class:`~services.dispatch.errors.InvalidInput` for a role that does not fit its unit.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import asyncpg

from shared.divisions import is_valid_code, level_of
from shared.vocabulary import Level

from .domain.selection import within_unit
from .domain.validation import MAX_NAME_LENGTH, check_text
from .errors import AccessDenied, InvalidInput

__all__ = ["ROLES", "Operator", "authenticate", "create_token", "hash_token"]

#: Role → the level its unit must be at (None: any level, read only).
ROLES: dict[str, Level | None] = {"city": Level.CITY, "county": Level.COUNTY, "town": Level.TOWN, "viewer": None}


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
            raise AccessDenied(f"{unit_code} is outside {self.name}'s unit {self.unit_code}")

    def require_write(self, unit_code: str) -> None:
        """Raises AccessDenied (403) for a viewer, or when ``unit_code`` is outside the operator's unit."""
        if not self.writes:
            raise AccessDenied(f"{self.name} is a viewer and can only read")
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


async def authenticate(conn: asyncpg.Connection, authorization: str | None) -> Operator:
    """The operator behind an ``Authorization: Bearer <token>`` header.

    Raises:
        AccessDenied: (401) missing header or unknown/revoked token.

    """
    if not authorization or not authorization.lower().startswith("bearer "):
        raise AccessDenied("missing bearer token", status=401)
    row = await conn.fetchrow(
        "SELECT name, role, unit_code FROM operators WHERE token_sha256 = $1 AND revoked_at IS NULL",
        hash_token(authorization[7:].strip()),
    )
    if row is None:
        raise AccessDenied("unknown or revoked token", status=401)
    return Operator(row["name"], row["role"], row["unit_code"])
