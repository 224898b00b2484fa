"""``/aeds``: the AED registry — list, add one, import a sheet (issue #17).

``GET /aeds`` lists active devices of a unit subtree with their condition today (Asia/Shanghai:
``in_service``, ``pads_expired``, ``battery_expired``, ``out_of_service``) and what expires within
``expiring_within_days`` (the reminder). ``POST /aeds`` adds one device (point with its datum: a GCJ-02
point is kept in WGS84). ``POST /aeds/imports`` imports a CSV/XLSX sheet all or nothing (200 with the
report, 422 with the same report when any row is bad and nothing is written, 400 for an unreadable file).
Each change publishes ``AedUpdated`` on ``roster.aed.v1`` in its transaction (outbox).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated
from uuid import UUID
from zoneinfo import ZoneInfo

import asyncpg
from fastapi import APIRouter, Depends, File, Query, UploadFile, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.roster import commands
from services.roster.adapters import aeds as aed_repo
from services.roster.domain.aeds import (
    MAX_AED_SHORT,
    MAX_AED_TEXT,
    Aed,
    AedRow,
    HoursError,
    condition,
    expiring,
    normalise_hours,
)
from services.roster.domain.positions import parse_datum, to_wgs84
from services.roster.handlers.auth import AdminDep
from services.roster.handlers.deps import connection
from services.roster.handlers.imports import answer_import
from services.roster.handlers.schemas import Page, PageNumber, PageSize
from shared.events import AedStatus
from shared.http_errors import error_responses

router = APIRouter(prefix="/aeds", tags=["aeds"])
Conn = Annotated[asyncpg.Connection, Depends(connection)]
MAX_BYTES = 10 * 1024 * 1024


class AedIn(BaseModel):
    """A new device. The point is given in ``datum`` (WGS-84 or GCJ-02) and kept in WGS-84."""

    model_config = ConfigDict(extra="forbid")

    serial: str = Field(min_length=1, max_length=MAX_AED_SHORT, description="Device serial number (unique).")
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    datum: str = Field(default="WGS-84", description="WGS-84 (GPS) or GCJ-02 (Amap/Tencent maps).")
    address: str = Field(min_length=1, max_length=MAX_AED_TEXT, examples=["鲁迅中路241号"])
    location: str = Field(default="", max_length=MAX_AED_TEXT, description="Building, floor, where it hangs.",
                          examples=["游客中心一楼服务台旁"])
    unit_code: str = Field(pattern=r"^\d{6}(\d{3}(\d{3})?)?$", description="Owner unit (6, 9 or 12 digits).")
    owner: str = Field(default="", max_length=MAX_AED_SHORT)
    access_hours: str = Field(default="24/7", max_length=200, description="opening_hours syntax or 每天8:00-18:00.")
    status: AedStatus = AedStatus.IN_SERVICE
    pads_expire_on: date | None = None
    battery_expire_on: date | None = None
    last_checked_on: date | None = None
    last_checked_by: str = Field(default="", max_length=MAX_AED_SHORT)

    @field_validator("access_hours")
    @classmethod
    def _hours(cls, v: str) -> str:
        try:
            return normalise_hours(v)
        except HoursError as exc:
            raise ValueError(str(exc)) from exc

    @field_validator("datum")
    @classmethod
    def _datum(cls, v: str) -> str:
        return parse_datum(v)


class AedOut(BaseModel):
    id: UUID
    revision: int
    serial: str
    lat: float = Field(description="WGS84 degrees.")
    lon: float
    address: str
    location: str
    unit_code: str
    owner: str
    access_hours: str
    status: AedStatus
    condition: str = Field(description="Today (Asia/Shanghai): in_service, pads_expired, battery_expired, "
                           "out_of_service.")
    expiring: list[dict[str, str]] = Field(description="Pads/battery running out within the window asked for.")
    pads_expire_on: date | None
    battery_expire_on: date | None
    last_checked_on: date | None
    last_checked_by: str

    @classmethod
    def of(cls, a: Aed, day: date, within_days: int) -> AedOut:
        return cls(id=a.id, revision=a.revision, serial=a.serial, lat=a.lat, lon=a.lon, address=a.address,
                   location=a.location, unit_code=a.unit_code, owner=a.owner, access_hours=a.access_hours,
                   status=a.status, condition=condition(a, day),
                   expiring=[{"part": p, "expires_on": d.isoformat()} for p, d in expiring(a, day, within_days)],
                   pads_expire_on=a.pads_expire_on, battery_expire_on=a.battery_expire_on,
                   last_checked_on=a.last_checked_on, last_checked_by=a.last_checked_by)


SHANGHAI = ZoneInfo("Asia/Shanghai")


def _today() -> date:
    return datetime.now(SHANGHAI).date()


@router.get("")
async def list_aeds(
    conn: Conn,
    unit: Annotated[str | None, Query(pattern=r"^\d{1,12}$", description="Owner unit code prefix (subtree).")] = None,
    expiring_within_days: Annotated[int, Query(ge=0, le=366, description="Reminder window, days.")] = 30,
    page: PageNumber = 1,
    page_size: PageSize = 50,
) -> Page[AedOut]:
    """Active devices of the subtree ``unit``, by unit code then serial, with their condition today."""
    items, total = await aed_repo.list_aeds(conn, unit=unit, page=page, page_size=page_size)
    day = _today()
    return Page[AedOut](items=[AedOut.of(a, day, expiring_within_days) for a in items], page=page,
                        page_size=page_size, total=total)


@router.post("", status_code=status.HTTP_201_CREATED, responses=error_responses(400, 409))
async def add_aed(body: AedIn, conn: Conn, actor: AdminDep) -> AedOut:
    """Add a device. 409 when the serial number is registered; 422 for an unknown unit or bad hours."""
    lat, lon = to_wgs84(body.lat, body.lon, body.datum)
    row = AedRow(0, body.serial.strip(), lat, lon, body.address.strip(), body.unit_code, body.location.strip(),
                 body.owner.strip(), body.access_hours, body.status, body.pads_expire_on, body.battery_expire_on,
                 body.last_checked_on, body.last_checked_by.strip())
    return AedOut.of(await commands.add_aed(conn, row, actor=actor), _today(), 30)


@router.post("/imports", responses={
    **error_responses(400, 409, 413),
    200: {"description": "The report: imported (or, on a dry run, would import)."},
    422: {"description": "The report when any row is bad (nothing imported), or an invalid request."},
})
async def import_aeds(
    file: Annotated[UploadFile, File(description="CSV (UTF-8 or GBK) or XLSX sheet of AEDs.")],
    conn: Conn,
    actor: AdminDep,
    dry_run: Annotated[bool, Query()] = False,
) -> JSONResponse:
    """Import an AED sheet, all or nothing; bad rows named by row and column (see the module docstring)."""
    return await answer_import(file, MAX_BYTES, lambda data, name: commands.import_aed_file(
        conn, data, name, dry_run=dry_run, actor=actor))
