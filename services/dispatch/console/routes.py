"""Console routes: the pages, their static files, the divisions data, the live stream and two small reads.

The stream (``GET /incidents/{id}/stream``, ``text/event-stream``) sends ``event: board`` frames whose
``id`` is a sequence number and whose ``data`` is ``{"full", "board", "responders"}``: the first frame is
the whole board (``full: true``; also after a reconnect with ``Last-Event-ID``: it is everything missed),
then after each committed change the board and only the responder rows that changed (``full: false``; a
viewer too slow to keep up gets a whole one again); a ``: keepalive`` comment every 15 s. The browser reads it with
``fetch`` (so the token goes in the ``Authorization`` header, never in a URL or an access log).
Errors as the rest of the API: 401/403/404 (see :mod:`services.dispatch.handlers.http`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from functools import lru_cache
from pathlib import Path
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, StreamingResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel

from shared.divisions import level_of
from shared.events import IncidentMode
from shared.service import Runtime
from shared.vocabulary import SKILLS, TEAM_TYPES, Level

from .. import queries
from ..auth import hash_token
from ..errors import NotFound
from ..handlers.http import OperatorDep, _pool
from ..units import units
from . import repository
from .live import BoardHub

__all__ = ["router", "stop_hub"]

HERE = Path(__file__).resolve().parent
STATIC = {p.name: p for p in (HERE / "static").iterdir() if p.is_file()}
_MEDIA = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
templates = Jinja2Templates(directory=HERE / "templates")

router = APIRouter()
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "no, unknown or revoked token"}, 403: {"description": "outside the operator's unit"},
    404: {"description": "no such incident"},
}

LEVEL_ZH = {Level.VILLAGE: "村（社区）", Level.TOWN: "乡镇（街道）", Level.COUNTY: "区县", Level.CITY: "市"}
MODE_ZH = {IncidentMode.EMERGENCY: "紧急", IncidentMode.EVENT: "活动保障", IncidentMode.DRILL: "演练"}
KINDS_ZH = {"drowning": "溺水", "cardiac_arrest": "心脏骤停", "flood": "洪涝", "typhoon": "台风",
            "fire": "火灾", "traffic": "交通事故", "missing_person": "人员走失", "event_cover": "大型活动保障",
            "other": "其他"}


def _vocabulary() -> dict[str, Any]:
    return {
        "skills": [{"code": s.code, "name": s.name_zh} for s in SKILLS],
        "team_types": [{"code": t.value, "name": n} for t, n in TEAM_TYPES.items()],
        "levels": [{"code": lv.value, "name": LEVEL_ZH[lv]} for lv in Level],
        "modes": [{"code": m.value, "name": MODE_ZH[m]} for m in IncidentMode],
        "kinds": [{"code": k, "name": n} for k, n in KINDS_ZH.items()],
    }


def _page(request: Request, name: str, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(
        request, name, {"vocabulary": _vocabulary(), "vocabulary_json": json.dumps(_vocabulary(), ensure_ascii=False),
                        **context})


@router.get("/console/", response_class=HTMLResponse, include_in_schema=False)
async def index(request: Request) -> HTMLResponse:
    return _page(request, "index.html", page="index")


@router.get("/console/new", response_class=HTMLResponse, include_in_schema=False)
async def new_incident(request: Request) -> HTMLResponse:
    return _page(request, "new.html", page="new")


@router.get("/console/incidents/{incident_id}", response_class=HTMLResponse, include_in_schema=False)
async def board_page(request: Request, incident_id: UUID) -> HTMLResponse:
    return _page(request, "board.html", page="board", incident_id=str(incident_id), map=_map())


@router.get("/console/service", response_class=HTMLResponse, include_in_schema=False)
async def service_page(request: Request) -> HTMLResponse:
    """Service hours by unit and the star ratings, with the annual review's XLSX (issue #19)."""
    return _page(request, "service.html", page="service")


@router.get("/console/incidents/{incident_id}/report", response_class=HTMLResponse, include_in_schema=False)
async def report_page(request: Request, incident_id: UUID) -> HTMLResponse:
    return _page(request, "report.html", page="report", incident_id=str(incident_id))


@router.get("/console/static/{name}", include_in_schema=False)
async def static(name: str) -> FileResponse:
    path = STATIC.get(name)
    if path is None:
        raise NotFound(f"no console file {name}")
    return FileResponse(path, media_type=_MEDIA.get(path.suffix, "application/octet-stream"),
                        headers={"Cache-Control": "no-cache"})


class Division(BaseModel):
    code: str
    name: str
    level: Level
    parent: str | None
    lat: float | None
    lon: float | None


@lru_cache(maxsize=1)
def _divisions() -> list[Division]:
    u = units()
    out = []
    for code, name in u.names.items():
        lvl = level_of(code)
        parent = None if lvl is Level.CITY else (
            "330600" if lvl is Level.COUNTY else code[:6] if lvl is Level.TOWN else code[:9])
        c = u.centres.get(code)
        out.append(Division(code=code, name=name, level=lvl, parent=parent,
                            lat=c[0] if c else None, lon=c[1] if c else None))
    return out


@router.get("/console/divisions.json", tags=["console"])
async def divisions() -> list[Division]:
    """Shaoxing's divisions (NBS 2023 codes; WGS84 centres where the data has them: city, counties, towns)."""
    return _divisions()


def _map() -> dict[str, Any]:
    """The inline SVG map's frame: the box of every centre and the county/town dots (WGS84)."""
    pts = [d for d in _divisions() if d.lat is not None and d.lon is not None]
    lats = [d.lat for d in pts if d.lat is not None]
    lons = [d.lon for d in pts if d.lon is not None]
    box = {"south": min(lats) - 0.05, "north": max(lats) + 0.05, "west": min(lons) - 0.05, "east": max(lons) + 0.05}
    w, h = 600.0, 600.0 * (box["north"] - box["south"]) / ((box["east"] - box["west"]) * 0.866)

    def xy(lat: float, lon: float) -> tuple[float, float]:
        return (round((lon - box["west"]) / (box["east"] - box["west"]) * w, 1),
                round((box["north"] - lat) / (box["north"] - box["south"]) * h, 1))

    dots = []
    for d in pts:
        assert d.lat is not None and d.lon is not None
        x, y = xy(d.lat, d.lon)
        dots.append({"x": x, "y": y, "name": d.name, "level": d.level.value})
    return {"box": box, "width": w, "height": round(h, 1), "dots": dots}


class Me(BaseModel):
    name: str
    role: str
    unit_code: str
    unit_name: str
    writes: bool


@router.get("/console/api/me", tags=["console"], responses=ERRORS)
async def me(op: OperatorDep) -> Me:
    """The operator behind the token (the console's sign-in check)."""
    return Me(name=op.name, role=op.role, unit_code=op.unit_code,
              unit_name=units().names.get(op.unit_code, op.unit_code), writes=op.writes)


def _prefix(unit_code: str) -> str:
    return unit_code[:4] if unit_code.endswith("00") and len(unit_code) == 6 else unit_code


@router.get("/console/api/volunteers", tags=["console"], responses=ERRORS)
async def volunteers(request: Request, op: OperatorDep, q: str = "", skill: str | None = None,
                     limit: int = 20) -> list[dict[str, Any]]:
    """Volunteers inside the operator's unit by name or unit name (for adding one by hand); at most 50."""
    async with _pool(request).acquire() as conn:
        return await repository.search_volunteers(conn, unit_prefix=_prefix(op.unit_code), text=q[:40],
                                                  skill=skill or None, limit=min(max(limit, 1), 50))


@router.get("/console/api/incidents/{incident_id}", tags=["console"], responses=ERRORS)
async def snapshot(incident_id: UUID, request: Request, op: OperatorDep) -> dict[str, Any]:
    """The stream's snapshot ``{"board", "responders"}`` (the console polls it when the stream is blocked)."""
    async with _pool(request).acquire() as conn:
        op.require_scope(await queries.incident_unit(conn, incident_id))
        return await repository.snapshot(conn, incident_id)


def _hub(request: Request) -> BoardHub:
    runtime: Runtime = request.app.state.runtime
    hub = runtime.extras.get("board_hub")
    if hub is None:
        hub = runtime.extras["board_hub"] = BoardHub(runtime.require_pool(), runtime.settings.dsn)
    assert isinstance(hub, BoardHub)
    return hub


async def stop_hub(runtime: Runtime) -> None:
    """Stop the process's listener (the service's on_stop)."""
    hub = runtime.extras.pop("board_hub", None)
    if isinstance(hub, BoardHub):
        await hub.stop()


#: How often an open stream checks that its token is still valid, seconds.
TOKEN_RECHECK_SECONDS = 5.0
KEEPALIVE_SECONDS = 15.0


@router.get("/incidents/{incident_id}/stream", tags=["incidents"], response_class=StreamingResponse,
            responses={**ERRORS, 200: {"content": {"text/event-stream": {}},
                                       "description": "board snapshots as Server-Sent Events"}})
async def stream(incident_id: UUID, request: Request, op: OperatorDep) -> StreamingResponse:
    """The live board as Server-Sent Events (see the module docstring).

    The token is checked again at least every :data:`TOKEN_RECHECK_SECONDS` while the stream is open: once
    it is revoked the stream sends ``event: revoked`` and ends (a revoked token's open stream went on
    receiving boards: break-it review).
    """
    pool = _pool(request)
    async with pool.acquire() as conn:
        op.require_scope(await queries.incident_unit(conn, incident_id))
    digest = hash_token((request.headers.get("authorization") or "")[7:].strip())
    hub = _hub(request)
    q = hub.subscribe(incident_id)  # its first frame is the whole board, then every change after it
    loop = asyncio.get_running_loop()

    async def still_valid() -> bool:
        async with pool.acquire() as conn:
            return bool(await conn.fetchval(
                "SELECT revoked_at IS NULL FROM operators WHERE token_sha256 = $1", digest))

    async def frames() -> AsyncIterator[bytes]:
        checked = written = loop.time()
        try:
            yield b"retry: 2000\n\n"
            while True:
                wire: bytes | None
                try:
                    wire = (await asyncio.wait_for(q.get(), TOKEN_RECHECK_SECONDS)).wire
                except TimeoutError:
                    wire = b": keepalive\n\n" if loop.time() - written >= KEEPALIVE_SECONDS else None
                if loop.time() - checked >= TOKEN_RECHECK_SECONDS:
                    checked = loop.time()
                    if not await still_valid():
                        yield b"event: revoked\ndata: {}\n\n"
                        return
                if wire is not None:
                    written = loop.time()
                    yield wire
        finally:
            hub.unsubscribe(incident_id, q)

    return StreamingResponse(frames(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
