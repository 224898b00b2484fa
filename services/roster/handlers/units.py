"""``/units``: the organisation units of the four levels (read-only; loaded from the divisions file)."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from services.roster.commands import NotFound
from services.roster.handlers.deps import connection
from shared.http_errors import error_responses

router = APIRouter(prefix="/units", tags=["units"])
Conn = Annotated[asyncpg.Connection, Depends(connection)]


class UnitOut(BaseModel):
    code: str
    name: str
    level: str
    parent_code: str | None
    lat: float | None = Field(description="Centre, WGS84 latitude (converted from the source datum).")
    lon: float | None = Field(description="Centre, WGS84 longitude.")
    centre_datum: str | None = Field(description="Datum of the source point, e.g. GCJ-02.")
    centre_lat: float | None = Field(description="Centre as in the source, in centre_datum.")
    centre_lon: float | None


_COLS = "code, name, level, parent_code, lat, lon, centre_datum, centre_lat, centre_lon"


@router.get("")
async def list_units(
    conn: Conn,
    parent: Annotated[str | None, Query(pattern=r"^\d{6,12}$", description="Children of this unit.")] = None,
    level: Annotated[str | None, Query(pattern="^(city|county|town|village)$")] = None,
) -> list[UnitOut]:
    """Units, filtered by parent and/or level, ordered by code."""
    rows = await conn.fetch(
        f"SELECT {_COLS} FROM units WHERE ($1::text IS NULL OR parent_code = $1) AND ($2::text IS NULL OR level = $2) "
        "ORDER BY code", parent, level)
    return [UnitOut(**dict(r)) for r in rows]


@router.get("/{code}", responses=error_responses(404))
async def get_unit(code: str, conn: Conn) -> UnitOut:
    r = await conn.fetchrow(f"SELECT {_COLS} FROM units WHERE code = $1", code)
    if r is None:
        raise NotFound(f"no unit {code}")
    return UnitOut(**dict(r))
