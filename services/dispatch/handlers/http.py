"""Operator HTTP API (OpenAPI at ``/docs``): incidents, the board, call-outs, replies, report.

Every route needs ``Authorization: Bearer <token>`` (see :mod:`services.dispatch.auth`). Reads are
open to every role inside its unit; writes to city/county/town operators inside their unit.
Errors map from :mod:`services.dispatch.errors`: 401/403 access, 404 unknown, 409 conflict,
422 bad input (pydantic's own 422 for malformed bodies, including text over its limit: title 100,
kind 40, outcome 500 characters, skill/team type/unit code 40, at most 20 requirements; see
:mod:`services.dispatch.domain.validation`). Nothing is written when an error is returned.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from shared.events import BroadcastAudience, IncidentMode
from shared.http_errors import error_responses
from shared.inputs import FiniteFloat, Int32, MultiLine, SingleLine, StrictInt
from shared.refusals import Refusal, record_refusal, route_of
from shared.vocabulary import Level

from .. import queries, usecases
from ..auth import Operator, authenticate
from ..domain.cardiac import CirclePolicy
from ..domain.validation import (
    MAX_BROADCAST_LENGTH,
    MAX_CODE_LENGTH,
    MAX_KIND_LENGTH,
    MAX_MEETING_POINT_LENGTH,
    MAX_OUTCOME_LENGTH,
    MAX_REQUIREMENTS,
    MAX_TITLE_LENGTH,
)
from ..errors import AccessDenied, DispatchError, InvalidInput
from ..units import units

__all__ = ["install_error_handlers", "router"]

# Every route: 401 (no/unknown token), 403 (role or unit), 422 (input); 503 is the app's (shared.service).
router = APIRouter(tags=["incidents"], responses=error_responses(401, 403, 422))
_ITEM = error_responses(404)  # an incident (or its call-out/requirement/volunteer) that does not exist
_WRITE = error_responses(404, 409)  # ... or whose state refuses the change (closed, already called)
_BODY = error_responses(400)  # a body that is not JSON


class RequirementIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    skill: SingleLine | None = Field(
        default=None, max_length=MAX_CODE_LENGTH, description="Skill code (shared.vocabulary.SKILLS).",
        examples=["first_aid"],
    )
    team_type: SingleLine | None = Field(
        default=None, max_length=MAX_CODE_LENGTH, description="Team type, instead of a skill.", examples=["water"]
    )
    count: StrictInt = Field(description="How many people (or teams), 1..2000; a JSON integer.", examples=[2])


class CircleIn(BaseModel):
    """The cardiac-arrest circle's settings (kind ``cardiac_arrest`` only); see services.dispatch.domain.cardiac."""

    model_config = ConfigDict(extra="forbid")

    rings_m: list[float] = Field(default=[700.0, 900.0, 1100.0, 1300.0], min_length=1, max_length=10,
                                 description="Ring radii, metres, increasing; one step per ring.")
    first: int = Field(default=3, ge=1, le=100, description="Called at once, nearest first.")
    cap: int = Field(default=30, ge=1, le=200, description="Called at most in all.")
    reply_window_s: int = Field(default=120, ge=1, le=3600, description="Seconds from the first ring to the last.")
    wanted: int = Field(default=3, ge=1, le=30, description="Acceptances after which nobody more is called "
                        "(one CPR, the others fetch AEDs).")

    def policy(self) -> CirclePolicy:
        try:
            return CirclePolicy(rings_m=tuple(self.rings_m), first=self.first, cap=self.cap,
                                reply_window_s=self.reply_window_s, wanted=self.wanted)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from exc


class PolicyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    over_call_factor: FiniteFloat = Field(default=2.0, description="People called per person needed (1..10).")
    wave_deadline_seconds: Int32 | None = Field(
        default=None, description="Seconds per wave; default 180 (emergency), 1800 (event); required for drills."
    )
    max_level: Level | None = Field(
        default=None,
        description="Highest level the search may escalate to; default the operator's own scope level (county "
        "operator: county, city operator: city, town operator: town). Above the operator's scope: 403.",
    )
    circle: CircleIn | None = Field(default=None, description="Kind cardiac_arrest: the rescue circle's rings "
                                    "(default 700..1,300 m, 3 first, 30 at most, 120 s); 422 for other kinds.")


class IncidentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: SingleLine = Field(max_length=MAX_KIND_LENGTH, description="Kind of incident, 1..40 characters.",
                      examples=["drowning"])
    title: SingleLine = Field(max_length=MAX_TITLE_LENGTH, description="Short title, 1..100 characters.",
                       examples=["柯桥区鉴湖溺水"])
    lat: FiniteFloat = Field(description="WGS84 latitude, degrees.", examples=[30.0])
    lon: FiniteFloat = Field(description="WGS84 longitude, degrees.", examples=[120.5])
    unit_code: SingleLine = Field(max_length=MAX_CODE_LENGTH, description="Village/community code (12 digits) the point lies in.")
    mode: IncidentMode
    requirements: list[RequirementIn] = Field(
        default_factory=list, max_length=MAX_REQUIREMENTS,
        description="1..20 requirements; for kind cardiac_arrest none means the circle's own (cpr_aed × wanted).")
    scene_unsafe: bool = Field(default=False, description="Cardiac arrest: the scene is unsafe (violence, traffic, "
                               "fire): no volunteer is alerted until it is marked safe.")
    start_level: Level = Level.VILLAGE
    policy: PolicyIn = Field(default_factory=PolicyIn)
    meeting_point: SingleLine | None = Field(
        default=None, max_length=MAX_MEETING_POINT_LENGTH,
        description="Where to gather (address or landmark), 1..40 characters; default the incident's place.",
        examples=["鉴湖南门停车场"],
    )
    meeting_lat: FiniteFloat | None = Field(default=None, description="Meeting point, WGS84 latitude; default the "
                                      "incident's point (give with meeting_lon).")
    meeting_lon: FiniteFloat | None = Field(default=None, description="Meeting point, WGS84 longitude.")
    callback_phone: SingleLine | None = Field(
        default=None, max_length=20, description="Operator's callback number for the message: a landline with "
        "area code, a 400 or a 95 number (SMS notification-template rule); 422 otherwise.",
        examples=["0575-85123456"],
    )


class BroadcastIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: MultiLine = Field(max_length=MAX_BROADCAST_LENGTH, description="What to tell them, 1..120 characters, no link.",
                      examples=["集合点改到南门"])
    audience: BroadcastAudience = Field(description="assigned: accepted, on the way or arrived; called: everyone "
                                        "not declined or stood down.")
    broadcast_id: UUID | None = Field(default=None, description="Idempotency key: the same id again sends nothing "
                                      "more (default: a new broadcast).")


class BroadcastOut(BaseModel):
    broadcast_id: UUID
    recipients: int = Field(description="Call-outs it goes to (one message per person and channel).")
    created: bool = Field(description="False when this broadcast id had already been sent.")


class MeetingPointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    meeting_point: SingleLine | None = Field(default=None, max_length=MAX_MEETING_POINT_LENGTH,
                                      description="New meeting point text, 1..40 characters.")
    meeting_lat: FiniteFloat | None = Field(default=None, description="New meeting point, WGS84 latitude.")
    meeting_lon: FiniteFloat | None = Field(default=None, description="New meeting point, WGS84 longitude.")
    callback_phone: SingleLine | None = Field(default=None, max_length=20, description="New callback number.")


class SceneIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    unsafe: bool = Field(description="True: the scene is unsafe, nobody is alerted and the called are stood down; "
                         "False: safe again, the circle resumes.")
    reason: str = Field(default="", max_length=200, examples=["现场有暴力冲突"])


class AddVolunteerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    volunteer_id: UUID
    requirement_id: UUID


class CloseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: MultiLine = Field(max_length=MAX_OUTCOME_LENGTH, description="What happened, 1..500 characters.",
                         examples=["rescued, handed to 120"])


def _pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.runtime.require_pool()
    return pool


async def current_operator(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> Operator:
    """The operator behind the request's bearer token (401 without one)."""
    async with _pool(request).acquire() as conn:
        return await authenticate(conn, authorization)


OperatorDep = Annotated[Operator, Depends(current_operator)]


def _actor(op: Operator) -> usecases.Actor:
    return usecases.Actor(op.name, op.role, op.unit_code)


@router.post("/incidents", status_code=201, responses=_BODY)
async def open_incident(body: IncidentIn, request: Request, op: OperatorDep) -> dict[str, Any]:
    """Open an incident and call its first waves; returns the board (201).

    The village must lie inside the operator's unit (403). ``policy.max_level`` defaults to the operator's
    own scope level — a county operator's search escalates at most to the county, a town operator's to the
    town, a city operator's to the city; a ``max_level`` above the operator's scope is refused (403).
    422 for bad input (see :func:`services.dispatch.usecases.open_incident`).
    """
    u = units()
    u.check_point(body.lat, body.lon, body.unit_code)
    op.require_write(body.unit_code)
    data = usecases.IncidentInput(
        kind=body.kind, title=body.title, lat=body.lat, lon=body.lon, unit_code=body.unit_code, mode=body.mode,
        requirements=[usecases.RequirementInput(r.skill, r.team_type, r.count) for r in body.requirements],
        start_level=body.start_level, max_level=body.policy.max_level,
        over_call_factor=body.policy.over_call_factor, wave_deadline_seconds=body.policy.wave_deadline_seconds,
        meeting_point=body.meeting_point, meeting_lat=body.meeting_lat, meeting_lon=body.meeting_lon,
        callback_phone=body.callback_phone, scene_unsafe=body.scene_unsafe,
        circle=body.policy.circle.policy() if body.policy.circle else None,
    )
    async with _pool(request).acquire() as conn:
        incident_id = await usecases.open_incident(conn, data, _actor(op), place=u.place(body.unit_code))
        return await queries.board(conn, incident_id)


@router.get("/incidents")
async def list_incidents(request: Request, op: OperatorDep, limit: Int32 = 100) -> list[dict[str, Any]]:
    """Incidents inside the operator's unit, newest first."""
    prefix = op.unit_code[:4] if op.unit_code.endswith("00") and len(op.unit_code) == 6 else op.unit_code
    async with _pool(request).acquire() as conn:
        return await queries.list_incidents(conn, unit_prefix=prefix, limit=min(max(limit, 1), 1000))


async def _readable(conn: asyncpg.Connection, op: Operator, incident_id: UUID) -> None:
    op.require_scope(await queries.incident_unit(conn, incident_id))


async def _writable(conn: asyncpg.Connection, op: Operator, incident_id: UUID) -> None:
    op.require_write(await queries.incident_unit(conn, incident_id))


@router.get("/incidents/{incident_id}", responses=_ITEM)
async def get_board(incident_id: UUID, request: Request, op: OperatorDep) -> dict[str, Any]:
    """The incident board: requirements filled/outstanding, call-outs by state, level, next deadline, timeline."""
    async with _pool(request).acquire() as conn:
        await _readable(conn, op, incident_id)
        return await queries.board(conn, incident_id)


@router.get("/incidents/{incident_id}/callouts", responses=_ITEM)
async def get_callouts(incident_id: UUID, request: Request, op: OperatorDep) -> list[dict[str, Any]]:
    """Every call-out with every reply recorded for it."""
    async with _pool(request).acquire() as conn:
        await _readable(conn, op, incident_id)
        return await queries.callouts(conn, incident_id)


@router.get("/incidents/{incident_id}/replies/unrecognised", tags=["replies"], responses=_ITEM)
async def get_unrecognised(incident_id: UUID, request: Request, op: OperatorDep) -> list[dict[str, Any]]:
    """Replies of the incident nobody could classify, newest first, flagged with whether the automatic answer went.

    404 unknown incident, 403 outside the operator's unit.
    """
    async with _pool(request).acquire() as conn:
        await _readable(conn, op, incident_id)
        return await queries.unrecognised_replies(conn, incident_id)


@router.get("/incidents/{incident_id}/report", responses=_ITEM)
async def get_report(incident_id: UUID, request: Request, op: OperatorDep) -> dict[str, Any]:
    """Timeline and figures (seconds, rates 0..1)."""
    async with _pool(request).acquire() as conn:
        await _readable(conn, op, incident_id)
        return await queries.report(conn, incident_id)


@router.post("/incidents/{incident_id}/callouts", status_code=201, responses={**_WRITE, **_BODY})
async def add_volunteer(incident_id: UUID, body: AddVolunteerIn, request: Request, op: OperatorDep) -> dict[str, str]:
    """Call one volunteer by hand for a requirement (201 with ``{"callout_id"}``).

    Both the incident's village and the volunteer's home unit must lie inside the operator's unit
    (403 otherwise). A volunteer who is inactive, retired or has withdrawn consent is refused (422,
    the reason named). The skill (and certificate) check is deliberately skipped: adding someone by
    hand is the operator's judgement; the audit entry ``callout.add`` records that it was skipped and
    whether the volunteer holds the skill. 404 unknown incident/requirement/volunteer; 409 incident
    closed or volunteer already called in it. Nothing is written when an error is returned.
    """
    async with _pool(request).acquire() as conn:
        await _writable(conn, op, incident_id)
        cid = await usecases.add_volunteer(conn, incident_id, body.requirement_id, body.volunteer_id, _actor(op))
    return {"callout_id": str(cid)}


@router.delete("/incidents/{incident_id}/callouts/{callout_id}", responses=_WRITE)
async def remove_callout(incident_id: UUID, callout_id: UUID, request: Request, op: OperatorDep) -> dict[str, str]:
    """Stand one volunteer down by hand."""
    async with _pool(request).acquire() as conn:
        await _writable(conn, op, incident_id)
        await usecases.remove_callout(conn, incident_id, callout_id, _actor(op))
    return {"callout_id": str(callout_id), "state": "cancelled"}


@router.put("/incidents/{incident_id}/meeting-point", responses={**_WRITE, **_BODY})
async def set_meeting_point(
    incident_id: UUID, body: MeetingPointIn, request: Request, op: OperatorDep
) -> dict[str, Any]:
    """Change the meeting point and/or callback number; returns the board.

    Call-outs sent from now on carry the new values; people already called keep what their message said
    (tell them with a broadcast). 404 unknown incident, 409 closed, 403 outside the operator's unit, 422 bad
    input or nothing to change.
    """
    async with _pool(request).acquire() as conn:
        await _writable(conn, op, incident_id)
        await usecases.set_meeting_point(
            conn, incident_id, _actor(op), meeting_point=body.meeting_point, meeting_lat=body.meeting_lat,
            meeting_lon=body.meeting_lon, callback_phone=body.callback_phone,
        )
        return await queries.board(conn, incident_id)


@router.post(
    "/incidents/{incident_id}/broadcasts", status_code=201, response_model=BroadcastOut,
    responses={200: {"model": BroadcastOut, "description": "This broadcast id was already sent; nothing more is."},
               **_WRITE, **_BODY},
)
async def send_broadcast(incident_id: UUID, body: BroadcastIn, request: Request, op: OperatorDep) -> JSONResponse:
    """Send a text to the incident's assigned people (or everyone still called), through notify.

    201 with the number of recipients; 200 when ``broadcast_id`` was already sent (nothing more goes out).
    404 unknown incident, 409 closed (or the id belongs to another incident), 403 outside the operator's unit,
    422 empty, too long or with a link.
    """
    async with _pool(request).acquire() as conn:
        await _writable(conn, op, incident_id)
        b = await usecases.broadcast(conn, incident_id, _actor(op), text=body.text, audience=body.audience,
                                     broadcast_id=body.broadcast_id)
    out = BroadcastOut(broadcast_id=b.broadcast_id, recipients=b.recipients, created=b.created)
    return JSONResponse(out.model_dump(mode="json"), status_code=201 if b.created else 200)


class MoveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    volunteer_id: UUID = Field(description="The volunteer to move (assigned or arrived in another open incident).")
    requirement_id: UUID = Field(description="The need of this incident they are assigned to.")


class MoveOut(BaseModel):
    volunteer_id: UUID
    from_incident_id: UUID
    from_callout_id: UUID = Field(description="Their call-out in the first incident, now cancelled (removed).")
    to_incident_id: UUID
    to_callout_id: UUID = Field(description="Their call-out here, now assigned.")


@router.post(
    "/incidents/{incident_id}/moves", status_code=201, response_model=MoveOut,
    responses={**_WRITE, **_BODY},  # 403 either incident outside the unit; 409 not engaged elsewhere, closed, filled
)
async def move_volunteer(incident_id: UUID, body: MoveIn, request: Request, op: OperatorDep) -> MoveOut:
    """Move a volunteer here from the incident they are assigned in: released there, assigned here (201).

    Nobody is assigned in two open incidents at once; this is the operator's explicit way to change
    where someone goes (see :func:`services.dispatch.usecases.move_volunteer`). Audited ``volunteer.move``.
    """
    async with _pool(request).acquire() as conn:
        await _writable(conn, op, incident_id)
        current = await queries.engaged_in(conn, body.volunteer_id)
        if current is not None:  # the operator must be able to act on the incident they are released from too
            await _writable(conn, op, current)
        m = await usecases.move_volunteer(conn, body.volunteer_id, incident_id, body.requirement_id, _actor(op))
    return MoveOut(volunteer_id=m.volunteer_id, from_incident_id=m.from_incident_id, from_callout_id=m.from_callout_id,
                   to_incident_id=m.to_incident_id, to_callout_id=m.to_callout_id)


@router.put("/incidents/{incident_id}/scene", responses={**_WRITE, **_BODY})
async def set_scene(incident_id: UUID, body: SceneIn, request: Request, op: OperatorDep) -> dict[str, int]:
    """Mark a cardiac-arrest scene unsafe or safe again (see :func:`services.dispatch.usecases.set_scene_safety`).

    404 unknown incident, 409 closed, 422 not a cardiac-arrest incident.
    """
    async with _pool(request).acquire() as conn:
        await _writable(conn, op, incident_id)
        n = await usecases.set_scene_safety(conn, incident_id, _actor(op), unsafe=body.unsafe, reason=body.reason)
    return {"stood_down": n}


@router.post("/incidents/{incident_id}/stand-down", responses=_WRITE)
async def stand_down(incident_id: UUID, request: Request, op: OperatorDep) -> dict[str, int]:
    """Stand everyone down (no more waves)."""
    async with _pool(request).acquire() as conn:
        await _writable(conn, op, incident_id)
        n = await usecases.stand_down(conn, incident_id, _actor(op))
    return {"stood_down": n}


@router.post("/incidents/{incident_id}/close", responses={**_WRITE, **_BODY})
async def close(incident_id: UUID, body: CloseIn, request: Request, op: OperatorDep) -> dict[str, Any]:
    """Close the incident with an outcome; returns the board."""
    async with _pool(request).acquire() as conn:
        await _writable(conn, op, incident_id)
        await usecases.close_incident(conn, incident_id, body.outcome, _actor(op))
        return await queries.board(conn, incident_id)


@router.get("/aeds", tags=["aeds"])
async def aeds_near(
    request: Request, op: OperatorDep, lat: float = Query(ge=-90, le=90), lon: float = Query(ge=-180, le=180),
    within_m: float = Query(default=1500.0, gt=0, le=10_000),
) -> list[dict[str, Any]]:
    """AEDs of the projection within ``within_m`` metres of (``lat``, ``lon``) (WGS84), nearest first.

    Each: ``aed_id``, ``lat``, ``lon``, ``place`` (address and where it hangs), ``distance_m``, ``usable_now``
    (in service, pads/battery valid, open at this hour), ``fetched_by`` (the call-out fetching it, or null).
    """
    from shared.divisions import distance_m
    from shared.events import utcnow

    from ..adapters.projection import load_aeds

    at = utcnow()
    async with _pool(request).acquire() as conn:
        found = await load_aeds(conn, lat=lat, lon=lon, within_m=within_m)
        runs = {r["aed_id"]: r["callout_id"] for r in await conn.fetch(
            "SELECT aed_id, callout_id FROM cardiac_roles WHERE aed_id IS NOT NULL AND released_at IS NULL")}
    out = [{"aed_id": str(a.aed_id), "lat": a.lat, "lon": a.lon, "place": a.place,
            "distance_m": round(distance_m(lat, lon, a.lat, a.lon), 1), "usable_now": a.usable_at(at),
            "fetched_by": str(runs[a.aed_id]) if a.aed_id in runs else None} for a in found]
    return sorted(out, key=lambda x: (x["distance_m"], x["aed_id"]))


@router.get("/replies/unmatched", tags=["replies"])
async def unmatched(request: Request, op: OperatorDep, limit: Int32 = 200) -> list[dict[str, Any]]:
    """Replies that matched no call-out, newest first (city-level operators and viewers of the city only)."""
    op.require_scope("330600")
    async with _pool(request).acquire() as conn:
        return await queries.unmatched_replies(conn, limit=min(max(limit, 1), 1000))


@router.get("/audit", tags=["audit"], responses=_ITEM)
async def audit_log(request: Request, op: OperatorDep, incident_id: UUID | None = None) -> list[dict[str, Any]]:
    """The audit log (append-only), newest first; of one incident when given."""
    async with _pool(request).acquire() as conn:
        if incident_id is not None:
            await _readable(conn, op, incident_id)
        else:
            op.require_scope("330600")
        rows = await conn.fetch(
            "SELECT id, at, operator, role, action, incident_id, before, after FROM audit_log "
            "WHERE $1::uuid IS NULL OR incident_id = $1 ORDER BY id DESC LIMIT 500", incident_id,
        )
    return [{k: (str(v) if isinstance(v, UUID) else v.isoformat() if hasattr(v, "isoformat") else v)
             for k, v in dict(r).items()} for r in rows]


async def _audit_refusal(request: Request, exc: AccessDenied) -> None:
    """Log and audit a 401/403 (``access.refused``; capped per minute, see :mod:`shared.refusals`)."""
    refusal = Refusal(exc.who, exc.role, route_of(request), exc.status, str(exc), exc.token)
    try:
        incident_id: UUID | None = UUID(str(request.path_params.get("incident_id")))
    except ValueError:
        incident_id = None

    async def write(r: Refusal | None, suppressed: dict[str, int]) -> None:
        async with _pool(request).acquire() as conn:
            if suppressed:
                await conn.execute(
                    "INSERT INTO audit_log (operator, role, action, incident_id, before, after) "
                    "VALUES ('anonymous', '-', 'access.refused_suppressed', NULL, NULL, $1)", suppressed)
            if r is not None:
                await conn.execute(
                    "INSERT INTO audit_log (operator, role, action, incident_id, before, after) "
                    "VALUES ($1, $2, 'access.refused', $3, NULL, $4)",
                    r.who or "anonymous", r.role or "-", incident_id, r.row())

    await record_refusal(request, refusal, write)


def install_error_handlers(app: FastAPI) -> None:
    """Map :class:`DispatchError` to its HTTP status with ``{"detail": message}``."""

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DispatchError)
        if isinstance(exc, AccessDenied):
            await _audit_refusal(request, exc)
        return JSONResponse({"detail": str(exc), "error": type(exc).__name__}, status_code=exc.status)

    app.add_exception_handler(DispatchError, handle)
    app.add_exception_handler(InvalidInput, handle)
