"""PostgreSQL adapter of the AED registry (asyncpg): rows ↔ :class:`~services.roster.domain.aeds.Aed`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from services.roster.domain.aeds import Aed
from shared.events import AedStatus

__all__ = ["aeds_by_serial", "all_aeds", "insert_aeds", "list_aeds", "update_aeds"]

_COLUMNS = ["id", "revision", "serial", "lat", "lon", "address", "location", "unit_code", "owner", "access_hours",
            "status", "pads_expire_on", "battery_expire_on", "last_checked_on", "last_checked_by", "active"]


def _aed(r: asyncpg.Record) -> Aed:
    return Aed(id=r["id"], revision=r["revision"], serial=r["serial"], lat=r["lat"], lon=r["lon"],
               address=r["address"], location=r["location"], unit_code=r["unit_code"], owner=r["owner"],
               access_hours=r["access_hours"], status=AedStatus(r["status"]), pads_expire_on=r["pads_expire_on"],
               battery_expire_on=r["battery_expire_on"], last_checked_on=r["last_checked_on"],
               last_checked_by=r["last_checked_by"], active=r["active"])


def _record(a: Aed) -> tuple[Any, ...]:
    return (a.id, a.revision, a.serial, a.lat, a.lon, a.address, a.location, a.unit_code, a.owner, a.access_hours,
            a.status.value, a.pads_expire_on, a.battery_expire_on, a.last_checked_on, a.last_checked_by, a.active)


async def insert_aeds(conn: asyncpg.Connection, aeds: Sequence[Aed]) -> None:
    """Insert new devices (COPY)."""
    if aeds:
        await conn.copy_records_to_table("aeds", records=[_record(a) for a in aeds], columns=_COLUMNS)


async def update_aeds(conn: asyncpg.Connection, aeds: Sequence[Aed]) -> None:
    """Overwrite stored devices (matched by id)."""
    if not aeds:
        return
    sets = ", ".join(f"{c} = u.{c}" for c in _COLUMNS if c != "id")
    await conn.execute("CREATE TEMP TABLE _aeds (LIKE aeds INCLUDING DEFAULTS) ON COMMIT DROP")
    await conn.copy_records_to_table("_aeds", records=[_record(a) for a in aeds], columns=_COLUMNS)
    await conn.execute(f"UPDATE aeds a SET {sets}, updated_at = now() FROM _aeds u WHERE a.id = u.id")
    await conn.execute("DROP TABLE _aeds")


async def aeds_by_serial(conn: asyncpg.Connection, serials: Sequence[str], *, for_update: bool = True) -> dict[str, Aed]:
    """Stored devices with these serial numbers, by serial (locked for the import's transaction)."""
    rows = await conn.fetch(
        "SELECT * FROM aeds WHERE serial = ANY($1::text[]) ORDER BY id" + (" FOR UPDATE" if for_update else ""),
        list(serials),
    )
    return {r["serial"]: _aed(r) for r in rows}


async def list_aeds(conn: asyncpg.Connection, *, unit: str | None, page: int, page_size: int) -> tuple[list[Aed], int]:
    """Active devices whose owner unit lies in the subtree ``unit`` (code prefix), by unit code then serial."""
    prefix = (unit[:4] if unit and len(unit) == 6 and unit.endswith("00") else unit) or ""
    total = await conn.fetchval("SELECT count(*) FROM aeds WHERE active AND unit_code LIKE $1 || '%'", prefix)
    rows = await conn.fetch(
        "SELECT * FROM aeds WHERE active AND unit_code LIKE $1 || '%' ORDER BY unit_code, serial LIMIT $2 OFFSET $3",
        prefix, page_size, (page - 1) * page_size,
    )
    return [_aed(r) for r in rows], int(total)


async def all_aeds(conn: asyncpg.Connection) -> list[Aed]:
    """Every active device (for a republish)."""
    return [_aed(r) for r in await conn.fetch("SELECT * FROM aeds WHERE active ORDER BY id")]
