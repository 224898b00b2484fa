"""The volunteers' record over time (issue #19): service hours, their roll-up by unit, star ratings, the XLSX.

Hours run from arrival to release (:mod:`services.dispatch.domain.service_hours`); stars follow
:mod:`services.dispatch.domain.stars` with the levels of ``DISPATCH_STAR_LEVELS`` (default the national
ones). Every route is scoped to the operator's unit (403 outside it); a viewer may read.
"""

from __future__ import annotations

import io
from collections import defaultdict
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from openpyxl import Workbook
from pydantic import TypeAdapter

from shared.http_errors import error_responses
from shared.inputs import neutralise_cell
from shared.settings import DispatchSettings

from .. import queries
from ..domain.service_hours import CST, Spell, roll_up, spell_hours, year_bounds
from ..domain.stars import DEFAULT_LEVELS, Rating, Record, StarLevel, rate
from ..errors import NotFound
from ..units import units
from .http import OperatorDep, _pool

__all__ = ["router", "star_levels"]

router = APIRouter(tags=["service record"], responses=error_responses(401, 403, 422))

YearQuery = Annotated[int | None, Query(ge=2000, le=2100, description="Calendar year, China Standard Time; "
                                                                         "default the current one.")]
UnitQuery = Annotated[str | None, Query(pattern=r"^\d{6}(\d{3}(\d{3})?)?$", description="Default the operator's unit.")]
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def _this_year() -> int:
    return datetime.now(CST).year


def star_levels(settings: DispatchSettings) -> tuple[StarLevel, ...]:
    """The configured levels (``DISPATCH_STAR_LEVELS`` JSON), else the national defaults.

    Raises:
        pydantic.ValidationError: the JSON is not a list of levels (at start-up, not at the first export).

    """
    if not settings.star_levels:
        return DEFAULT_LEVELS
    return tuple(TypeAdapter(list[StarLevel]).validate_json(settings.star_levels))


def _name(code: str) -> str:
    u = units()
    return u.place(code) if code in u.names else code


@router.get("/volunteers/{volunteer_id}/service", responses=error_responses(404))
async def volunteer_service(
    volunteer_id: UUID, request: Request, op: OperatorDep, year: YearQuery = None,
) -> dict[str, Any]:
    """A volunteer's record of service for a year: each arrival to release, the totals (hours), the stars.

    Service (emergencies, events) and drills are totalled apart; a spell still on scene counts up to
    now (``released_at`` null). The stars are those of the cumulative record up to the end of the year.
    404 unknown volunteer, 403 outside the operator's unit.
    """
    y = year or _this_year()
    start, end = year_bounds(y)
    now = datetime.now(UTC)
    async with _pool(request).acquire() as conn:
        unit = await conn.fetchval("SELECT unit_code FROM volunteers WHERE volunteer_id = $1", volunteer_id)
        if unit is None:
            raise NotFound(f"no volunteer {volunteer_id}")
        op.require_scope(unit)
        spells = await queries.service_spells(conn, _EPOCH, end, volunteer_id=volunteer_id)
    items = [{"callout_id": str(s["callout_id"]), "incident_id": str(s["incident_id"]), "title": s["title"],
              "kind": s["kind"], "mode": s["mode"], "arrived_at": s["arrived_at"].isoformat(),
              "released_at": s["released_at"].isoformat() if s["released_at"] else None,
              "hours": round(spell_hours(s["arrived_at"], s["released_at"], now), 2)}
             for s in spells if s["arrived_at"] >= start]
    service = [i for i in items if i["mode"] != "drill"]
    rating = _ratings(spells, now, star_levels(request.app.state.runtime.settings))[volunteer_id]
    return {"volunteer_id": str(volunteer_id), "year": y, "deployments": len(service),
            "hours": round(sum(i["hours"] for i in service), 2),
            "drill_hours": round(sum(i["hours"] for i in items if i["mode"] == "drill"), 2), "spells": items,
            "stars": rating.stars, "stars_explained": rating.explanation, "next_level_needs": rating.next_needs}


@router.get("/service-hours")
async def service_hours(request: Request, op: OperatorDep, year: YearQuery = None,
                        unit_code: UnitQuery = None) -> dict[str, Any]:
    """Service hours of a unit's volunteers for a year, rolled up by the units one level below it.

    ``units``: ``[{"unit_code", "unit_name", "volunteers" (distinct, who served), "deployments", "hours",
    "drill_hours"}]``, and the unit's totals. Hours from arrival to release (China Standard Time year of
    the arrival). 403 a unit outside the operator's.
    """
    code = unit_code or op.unit_code
    op.require_scope(code)
    y = year or _this_year()
    start, end = year_bounds(y)
    now = datetime.now(UTC)
    async with _pool(request).acquire() as conn:
        rows = await queries.service_spells(conn, start, end, unit_code=code)
    spells = [Spell(r["volunteer_id"], r["unit_code"], r["arrived_at"], r["released_at"], r["mode"] == "drill")
              for r in rows]
    groups = roll_up(code, spells, now)
    return {
        "unit_code": code, "unit_name": _name(code), "year": y,
        "volunteers": len({s.volunteer_id for s in spells if not s.drill}),
        "deployments": sum(g.deployments for g in groups), "hours": round(sum(g.hours for g in groups), 2),
        "drill_hours": round(sum(g.drill_hours for g in groups), 2),
        "units": [{"unit_code": g.unit_code, "unit_name": _name(g.unit_code), "volunteers": len(g.volunteers),
                   "deployments": g.deployments, "hours": round(g.hours, 2), "drill_hours": round(g.drill_hours, 2)}
                  for g in groups],
    }


def _ratings(rows: list[dict[str, Any]], now: datetime, levels: tuple[StarLevel, ...]) -> dict[UUID, Rating]:
    totals: dict[UUID, list[float]] = defaultdict(lambda: [0.0, 0, 0])
    for r in rows:
        t = totals[r["volunteer_id"]]
        if r["mode"] == "drill":
            t[2] += 1
        else:
            t[0] += spell_hours(r["arrived_at"], r["released_at"], now)
            t[1] += 1
    return defaultdict(lambda: rate(Record(0.0, 0, 0), levels),
                       {v: rate(Record(h, int(d), int(k)), levels) for v, (h, d, k) in totals.items()})


async def _star_rows(request: Request, op: OperatorDep, year: int | None, unit_code: str | None
                     ) -> tuple[str, int, list[dict[str, Any]]]:
    code = unit_code or op.unit_code
    op.require_scope(code)
    y = year or _this_year()
    start, end = year_bounds(y)
    now = datetime.now(UTC)
    async with _pool(request).acquire() as conn:
        spells = await queries.service_spells(conn, _EPOCH, end, unit_code=code)
        people = {r["volunteer_id"]: r for r in await conn.fetch(
            "SELECT volunteer_id, display_name, unit_code FROM volunteers WHERE volunteer_id = ANY($1::uuid[])",
            list({s["volunteer_id"] for s in spells}))}
    ratings = _ratings(spells, now, star_levels(request.app.state.runtime.settings))
    year_hours: dict[UUID, float] = defaultdict(float)
    for s in spells:
        if s["mode"] != "drill" and s["arrived_at"] >= start:
            year_hours[s["volunteer_id"]] += spell_hours(s["arrived_at"], s["released_at"], now)
    out = []
    for vid, p in sorted(people.items(), key=lambda kv: (kv[1]["unit_code"], kv[1]["display_name"] or "")):
        r = ratings[vid]
        out.append({"volunteer_id": str(vid), "name": p["display_name"], "unit_code": p["unit_code"],
                    "unit_name": _name(p["unit_code"]), "year_hours": round(year_hours[vid], 2),
                    "stars": r.stars, "explanation": r.explanation, "next_level_needs": r.next_needs})
    return code, y, out


@router.get("/service-hours/stars")
async def star_ratings(request: Request, op: OperatorDep, year: YearQuery = None,
                       unit_code: UnitQuery = None) -> dict[str, Any]:
    """Star ratings of the unit's volunteers who served up to the end of ``year``, each explained.

    ``volunteers``: ``[{"volunteer_id", "name", "unit_code", "unit_name", "year_hours", "stars",
    "explanation", "next_level_needs"}]`` by unit, then name. 403 a unit outside the operator's.
    """
    code, y, rows = await _star_rows(request, op, year, unit_code)
    return {"unit_code": code, "unit_name": _name(code), "year": y, "volunteers": rows}


@router.get("/service-hours/stars.xlsx", response_class=Response,
            responses={200: {"content": {"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {}},
                             "description": "The annual review's workbook."}})
async def star_ratings_xlsx(request: Request, op: OperatorDep, year: YearQuery = None,
                            unit_code: UnitQuery = None) -> Response:
    """The star ratings as an XLSX workbook for the annual review (星级评定), one row per volunteer.

    Columns: 姓名, 单位, 单位代码, 本年服务小时, 星级, 说明, 下一级. Text cells that a spreadsheet would run
    as formulas are neutralised (:func:`shared.inputs.neutralise_cell`, OWASP). 403 a unit outside the operator's.
    """
    code, y, rows = await _star_rows(request, op, year, unit_code)
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = f"{y}年星级评定"
    ws.append(["姓名", "单位", "单位代码", "本年服务小时", "星级", "说明", "下一级"])
    for r in rows:
        ws.append([neutralise_cell(v) for v in (r["name"], r["unit_name"], r["unit_code"], r["year_hours"],
                                                r["stars"], r["explanation"], r["next_level_needs"] or "")])
    buf = io.BytesIO()
    wb.save(buf)
    return Response(buf.getvalue(), media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    headers={"Content-Disposition": f'attachment; filename="stars-{code}-{y}.xlsx"'})
