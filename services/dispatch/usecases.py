"""Dispatch's use cases: each one transaction that reads state, asks the pure domain, writes state + outbox.

* :func:`open_incident` — validate, store, call the first wave of each requirement (escalating at
  once where a level has no one), ``IncidentOpened`` + ``CallOutRequested`` …
* :func:`process_due` — the deadline ticker's step: one due requirement, locked with
  ``FOR UPDATE SKIP LOCKED``; waiting call-outs time out; next wave / escalation / unfilled.
* :func:`apply_reply_event` — notify's ``ReplyReceived``: record it (always), apply it.
* :func:`record_delivery` — notify's ``Message*`` for the board's figures.
* :func:`add_volunteer`, :func:`remove_callout`, :func:`move_volunteer`, :func:`stand_down`,
  :func:`close_incident` — operator actions.

Lock order everywhere: incident row → requirement rows → call-out rows, so concurrent replies,
ticks and operator actions serialise without deadlocks. Call-outs are created under a
transaction-level advisory lock so that reply codes stay unique among a volunteer's open call-outs.

Events: ``INCIDENT`` keyed by incident id; ``CALLOUT`` keyed by volunteer id; all carry
``correlation_id = incident_id`` and the drill mark; ``causation_id`` is the event that caused them.

Errors: :class:`~services.dispatch.errors.InvalidInput`, :class:`~services.dispatch.errors.NotFound`,
:class:`~services.dispatch.errors.Conflict`, :class:`~services.dispatch.errors.AccessDenied` from operator
actions (raised before anything is written).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import orjson

from shared import outbox
from shared.consumer import Received, is_transient
from shared.divisions import ancestor, level_of
from shared.events import (
    BroadcastAudience,
    BroadcastRequested,
    CallOutAssigned,
    CallOutCancelled,
    CallOutRequested,
    CancelReason,
    IncidentClosed,
    IncidentEscalated,
    IncidentMode,
    IncidentOpened,
    MeetingPointChanged,
    MessageDelivered,
    MessageFailed,
    MessageSent,
    ReplyIntent,
    ReplyReceived,
    RequirementFilled,
    RequirementSpec,
    RequirementUnfilled,
    utcnow,
)
from shared.logging import get_logger
from shared.maps import amap_marker_url
from shared.metrics import (
    DISPATCH_CALLOUTS_REQUESTED,
    DISPATCH_FANOUT_SECONDS,
    DISPATCH_REPLIES,
    DISPATCH_REPLY_SECONDS,
)
from shared.topics import CALLOUT, INCIDENT, TopicSpec
from shared.vocabulary import TEAM_TYPES, Level, TeamType, skill_by_code

from .adapters.board_feed import board_changed
from .adapters.projection import (
    called_in_incident,
    load_aeds,
    load_team_candidates,
    load_volunteer_candidates,
    opted_out_of_cardiac,
    unit_prefix,
)
from .domain.cardiac import (
    CARDIAC_ARREST,
    CIRCLE_SKILL,
    CirclePolicy,
    Responder,
    Role,
    RoleKind,
    assign_roles,
    circle_step,
    select_circle,
)
from .domain.model import COUNTED_STATES, OPEN_STATES, CallOutState
from .domain.replies import ReplyNote, apply_reply
from .domain.selection import select_teams, select_volunteers, within_unit
from .domain.validation import (
    MAX_KIND_LENGTH,
    MAX_MEETING_POINT_LENGTH,
    MAX_OUTCOME_LENGTH,
    MAX_REQUIREMENTS,
    MAX_TITLE_LENGTH,
    check_broadcast_text,
    check_callback_phone,
    check_requirement,
    check_text,
    has_link,
)
from .domain.waves import (
    CallWave,
    Escalate,
    Filled,
    FlagUnfilled,
    deadline_seconds,
    decide,
    level_allowed,
    reply_code,
    urgent_reply_code,
    wave_size,
)
from .errors import AccessDenied, Conflict, InvalidInput, NotFound

__all__ = [
    "Actor",
    "Broadcast",
    "DueRequirementFailed",
    "IncidentInput",
    "Move",
    "RequirementInput",
    "add_volunteer",
    "apply_reply_batch",
    "apply_reply_event",
    "broadcast",
    "close_incident",
    "move_volunteer",
    "open_incident",
    "process_due",
    "record_delivery",
    "remove_callout",
    "set_meeting_point",
    "set_scene_safety",
    "stand_down",
]

log = get_logger(__name__)

CODES_LOCK = 0x6D75_6364  # advisory lock id: call-out creation (unique reply codes)
_OPEN = tuple(s.value for s in OPEN_STATES)
_WAITING = (CallOutState.REQUESTED.value, CallOutState.TIMED_OUT.value)


@dataclass(frozen=True)
class Actor:
    """Who acts: an operator (name, role, unit) or the system (the ticker, a consumer)."""

    name: str
    role: str
    unit_code: str


SYSTEM = Actor("dispatch", "system", "330600")


@dataclass(frozen=True)
class RequirementInput:
    skill: str | None
    team_type: str | None
    count: int


@dataclass(frozen=True)
class IncidentInput:
    """An incident to open. ``lat``/``lon`` WGS84 degrees; ``unit_code`` the village (12 digits).

    ``max_level`` is the highest level the search may escalate to; None means the opening operator's own
    scope level (a county operator's search stops at the county, a city operator's at the city).
    """

    kind: str
    title: str
    lat: float
    lon: float
    unit_code: str
    mode: IncidentMode
    requirements: Sequence[RequirementInput]
    start_level: Level = Level.VILLAGE
    max_level: Level | None = None
    over_call_factor: float = 2.0
    wave_deadline_seconds: int | None = None
    meeting_point: str | None = None
    meeting_lat: float | None = None
    meeting_lon: float | None = None
    callback_phone: str | None = None
    scene_unsafe: bool = False
    circle: CirclePolicy | None = None


# --------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class _Incident:
    incident_id: UUID
    kind: str
    title: str
    mode: IncidentMode
    lat: float
    lon: float
    unit_code: str
    place: str
    max_level: Level
    factor: float
    deadline_s: int
    status: str
    meeting_point: str = ""
    meeting_lat: float = 0.0
    meeting_lon: float = 0.0
    callback_phone: str | None = None
    scene_unsafe: bool = False
    circle: CirclePolicy | None = None

    @property
    def drill(self) -> bool:
        return self.mode is IncidentMode.DRILL

    @property
    def cardiac(self) -> bool:
        """A cardiac-arrest incident: its ``cpr_aed`` requirement is called by the circle, not by waves."""
        return self.kind == CARDIAC_ARREST

    def where(self) -> dict[str, Any]:
        """Where to go, as call-out events carry it: meeting point, its Amap link (GCJ-02), callback number."""
        return {"meeting_point": self.meeting_point,
                "map_url": amap_marker_url(self.meeting_lat, self.meeting_lon, self.meeting_point),
                "callback_phone": self.callback_phone}

    def env(self, causation: UUID | None = None) -> dict[str, Any]:
        """Envelope fields of an event about this incident."""
        return {"correlation_id": self.incident_id, "causation_id": causation, "drill": self.drill}


async def _incident(conn: asyncpg.Connection, incident_id: UUID, *, lock: bool = False) -> _Incident:
    # FOR NO KEY UPDATE, not FOR UPDATE: the ticker writes a wave's call-outs while holding a requirement,
    # and their foreign key takes KEY SHARE on this row; FOR UPDATE conflicted with it and deadlocked the
    # ticker against a close or a reply that holds this row and waits for the requirement (fault drill).
    r = await conn.fetchrow(
        "SELECT * FROM incidents WHERE incident_id = $1" + (" FOR NO KEY UPDATE" if lock else ""), incident_id
    )
    if r is None:
        raise NotFound(f"no incident {incident_id}")
    return _incident_of(r)


def _incident_of(r: asyncpg.Record) -> _Incident:
    return _Incident(
        r["incident_id"], r["kind"], r["title"], IncidentMode(r["mode"]), r["lat"], r["lon"], r["unit_code"],
        r["place"], Level(r["max_level"]), r["over_call_factor"], r["wave_deadline_seconds"], r["status"],
        r["meeting_point"] or r["place"], r["meeting_lat"] if r["meeting_lat"] is not None else r["lat"],
        r["meeting_lon"] if r["meeting_lon"] is not None else r["lon"], r["callback_phone"],
        scene_unsafe=r["scene_unsafe"], circle=_circle_of(r["circle_policy"]),
    )


def _circle_of(raw: Mapping[str, Any] | None) -> CirclePolicy | None:
    if not raw:
        return None
    return CirclePolicy(rings_m=tuple(float(x) for x in raw["rings_m"]), first=int(raw["first"]), cap=int(raw["cap"]),
                        reply_window_s=int(raw["reply_window_s"]), wanted=int(raw["wanted"]),
                        max_fetch_m=float(raw["max_fetch_m"]))


def _circle_json(p: CirclePolicy) -> dict[str, Any]:
    return {"rings_m": list(p.rings_m), "first": p.first, "cap": p.cap, "reply_window_s": p.reply_window_s,
            "wanted": p.wanted, "max_fetch_m": p.max_fetch_m}


async def timeline(conn: asyncpg.Connection, incident_id: UUID, at: datetime, kind: str, **detail: Any) -> None:
    """Append one entry to the incident's timeline."""
    await conn.execute(
        "INSERT INTO timeline (incident_id, at, kind, detail) VALUES ($1, $2, $3, $4)",
        incident_id, at, kind, {k: (str(v) if isinstance(v, UUID) else v) for k, v in detail.items()},
    )
    await board_changed(conn, [incident_id])  # every operator action, wave, escalation and fill passes here


async def audit(
    conn: asyncpg.Connection, actor: Actor, action: str, incident_id: UUID | None, before: Any, after: Any
) -> None:
    """Append one operator action to the audit log (append-only: a trigger refuses UPDATE and DELETE)."""
    await conn.execute(
        "INSERT INTO audit_log (operator, role, action, incident_id, before, after) VALUES ($1,$2,$3,$4,$5,$6)",
        actor.name, actor.role, action, incident_id, before, after,
    )


def _role_text(skill: str | None, team_type: str | None) -> str:
    if skill:
        return skill_by_code(skill).name_zh
    return TEAM_TYPES[TeamType(team_type)] if team_type else "志愿者"


# --------------------------------------------------------------------------- waves


async def _write_wave(
    conn: asyncpg.Connection,
    inc: _Incident,
    req: asyncpg.Record,
    picked: Sequence[tuple[UUID, UUID | None, float | None]],
    *,
    level: Level,
    wave: int,
    now: datetime,
    respond_by: datetime,
    causation: UUID | None,
    manual: bool = False,
    announce: bool = True,
    urgent: bool = False,
) -> list[UUID]:
    """Insert call-outs for ``picked`` ((volunteer id, team id, distance m)) and their ``CallOutRequested``.

    ``announce`` False writes the call-outs without their ``CallOutRequested`` (a move: the volunteer is
    told by the ``CallOutAssigned`` that follows, not asked first).
    ``urgent`` (the cardiac circle): without the codes lock, with three-character codes
    (:func:`~services.dispatch.domain.waves.urgent_reply_code`); the open-code unique index catches the rare
    clash with another urgent writer (``asyncpg.UniqueViolationError``; the caller writes again, locked).
    """
    if not urgent:
        await conn.execute("SELECT pg_advisory_xact_lock($1)", CODES_LOCK)
    vids = [p[0] for p in picked]
    taken: dict[UUID, set[str]] = {}
    # codes in use: the volunteer's open call-outs, and their declined ones in open incidents (a declined
    # call-out can still become assigned if they change their mind, and must keep its code)
    # (two index paths: the open ones from the partial unique index on (volunteer_id, reply_code) — its
    # predicate is spelt out so the planner can use it —, the declined ones through the few open incidents)
    for r in await conn.fetch(
        """SELECT volunteer_id, reply_code FROM callouts
           WHERE volunteer_id = ANY($1::uuid[]) AND state IN ('requested', 'timed_out', 'assigned')
           UNION ALL
           SELECT c.volunteer_id, c.reply_code FROM incidents i JOIN callouts c ON c.incident_id = i.incident_id
           WHERE i.status = 'open' AND c.state = 'declined' AND c.volunteer_id = ANY($1::uuid[])""",
        vids,
    ):
        taken.setdefault(r["volunteer_id"], set()).add(r["reply_code"])
    rows = []
    if not picked:
        return []
    # one validated template per wave, serialized once; each call-out's event is the template's JSON with
    # its own ids and code put in (the same bytes as serializing the model, see _CallOutRenderer)
    template = CallOutRequested(
        callout_id=uuid4(), incident_id=inc.incident_id, requirement_id=req["requirement_id"],
        volunteer_id=picked[0][0], team_id=picked[0][1], wave=wave, level=level, incident_kind=inc.kind,
        incident_title=inc.title, place=inc.place, role=_role_text(req["skill"], req["team_type"]),
        reply_code="00", respond_by=respond_by, occurred_at=now, meeting_lat=inc.meeting_lat,
        meeting_lon=inc.meeting_lon, **inc.where(), **inc.env(causation),
    )
    render = _CallOutRenderer(template)
    base_headers = outbox.event_headers(template)
    events = []
    incident_id, requirement_id, requested = inc.incident_id, req["requirement_id"], CallOutState.REQUESTED.value
    ids = [uuid4() for _ in range(2 * len(picked))]
    for (vid, team_id, dist), cid, eid in zip(picked, ids[0::2], ids[1::2], strict=True):
        code = (urgent_reply_code if urgent else reply_code)(cid, taken.get(vid, ()))
        taken.setdefault(vid, set()).add(code)
        rows.append((cid, incident_id, requirement_id, vid, team_id, wave, level.value, code, requested, dist, manual,
                     now, respond_by))
        events.append((eid, CALLOUT.name, str(vid), render(eid, cid, vid, team_id, code),
                       {**base_headers, "event_id": str(eid)}))
    await conn.copy_records_to_table(
        "callouts", records=rows,
        columns=["callout_id", "incident_id", "requirement_id", "volunteer_id", "team_id", "wave", "level",
                 "reply_code", "state", "distance_m", "manual", "requested_at", "respond_by"],
    )
    if announce:
        await outbox.add_serialized(conn, events)
    return [r[0] for r in rows]


class _CallOutRenderer:
    """A wave's ``CallOutRequested`` bytes from one template: the template's JSON with each call-out's ids and code.

    The template is serialized once with sentinel values in the five fields that differ between the
    call-outs of a wave (``event_id``, ``callout_id``, ``volunteer_id``, ``team_id``, ``reply_code``); a
    call-out's event is the pieces between the sentinels joined with its own values encoded as pydantic
    encodes them (a UUID as its hyphenated lower-case text, None as ``null``, the code as a JSON string),
    so the bytes equal ``template.model_copy(update=…).to_bytes()`` (tests/unit/dispatch/test_wave_render.py).
    Should a sentinel not occur exactly once (free text that happens to contain one), it falls back to
    ``model_copy`` and serialization per event.
    """

    _FIELDS = ("event_id", "callout_id", "volunteer_id", "team_id", "reply_code")

    def __init__(self, template: CallOutRequested) -> None:
        self._template = template
        sentinels: dict[str, Any] = {name: UUID(int=i + 1) for i, name in enumerate(self._FIELDS[:4])}
        sentinels["reply_code"] = "~reply-code~"
        raw = template.model_copy(update=sentinels).to_bytes()
        tokens = [orjson.dumps(str(sentinels[n])) for n in self._FIELDS]
        self._parts: list[bytes] | None = None
        if all(raw.count(t) == 1 for t in tokens):
            order = sorted(range(len(tokens)), key=lambda i: raw.index(tokens[i]))
            parts, pos = [], 0
            for i in order:
                at = raw.index(tokens[i])
                parts.append(raw[pos:at])
                pos = at + len(tokens[i])
            parts.append(raw[pos:])
            self._parts = parts
            # one bytes %-format with a slot per field, in the order the fields appear
            self._format = b"%s".join(part.replace(b"%", b"%%") for part in parts)
            # five indices, so the getter returns a tuple (typeshed's itemgetter.__call__ returns Any)
            self._order: Callable[[tuple[bytes, ...]], tuple[bytes, ...]] = itemgetter(*order)

    def __call__(self, event_id: UUID, callout_id: UUID, volunteer_id: UUID, team_id: UUID | None, code: str) -> bytes:
        if self._parts is None:
            values = (event_id, callout_id, volunteer_id, team_id, code)
            return self._template.model_copy(update=dict(zip(self._FIELDS, values, strict=True))).to_bytes()
        encoded = (b'"%s"' % str(event_id).encode(), b'"%s"' % str(callout_id).encode(),
                   b'"%s"' % str(volunteer_id).encode(),
                   b"null" if team_id is None else b'"%s"' % str(team_id).encode(), orjson.dumps(code))
        return self._format % self._order(encoded)


async def _call_next(
    conn: asyncpg.Connection, inc: _Incident, req: asyncpg.Record, *, now: datetime, causation: UUID | None,
    called: set[UUID] | None = None,
) -> None:
    """Call the next wave of ``req`` (locked by the caller), escalating while a level has no one left.

    ``called``: the volunteers already called in the incident, when the caller keeps them (opening an
    incident calls its requirements one after another); the wave's callees are added to it. None: read
    from the database.
    """
    if inc.cardiac and req["skill"] == CIRCLE_SKILL:
        await _call_circle(conn, inc, req, now=now, causation=causation, called=called)
        return
    level = Level(req["level"])
    outstanding = req["count"] - req["filled"]
    if called is None:
        called = await called_in_incident(conn, inc.incident_id)
    size = wave_size(outstanding, inc.factor)
    while True:
        started = time.perf_counter()  # a wave's fan-out: selection and writes (muster_dispatch_fanout_seconds)
        unit = ancestor(inc.unit_code, level)
        prefix = unit_prefix(unit, level)
        picked: list[tuple[UUID, UUID | None, float | None]]
        if req["skill"]:
            vols = await load_volunteer_candidates(
                conn, skill=req["skill"], prefix=prefix, incident_id=inc.incident_id, at=now, lat=inc.lat,
                lon=inc.lon, limit=size,
            )
            chosen = select_volunteers(vols, skill=req["skill"], lat=inc.lat, lon=inc.lon, unit_code=inc.unit_code,
                                       level=level, at=now, called=called, limit=size)
            picked = [(v.volunteer_id, None, d if d != float("inf") else None) for v, d in chosen]
        else:
            teams = await load_team_candidates(
                conn, team_type=TeamType(req["team_type"]), prefix=prefix, incident_id=inc.incident_id, at=now
            )
            chosen_t = select_teams(teams, team_type=TeamType(req["team_type"]), lat=inc.lat, lon=inc.lon,
                                    unit_code=inc.unit_code, level=level, at=now, called=called, limit=size)
            picked = [(t.leader.volunteer_id, t.team_id, d if d != float("inf") else None)  # type: ignore[union-attr]
                      for t, d in chosen_t]
        decision = decide(outstanding=outstanding, level=level, max_level=inc.max_level,
                          eligible_left=len(picked), factor=inc.factor)
        rid = req["requirement_id"]
        if isinstance(decision, Filled):
            await conn.execute("UPDATE requirements SET deadline_at = NULL WHERE requirement_id = $1", rid)
            return
        if isinstance(decision, CallWave):
            wave = req["wave"] + 1
            respond_by = now + timedelta(seconds=inc.deadline_s)
            await _write_wave(conn, inc, req, picked[: decision.size], level=level, wave=wave, now=now,
                              respond_by=respond_by, causation=causation)
            DISPATCH_FANOUT_SECONDS.observe(time.perf_counter() - started)
            DISPATCH_CALLOUTS_REQUESTED.inc(decision.size)
            called.update(p[0] for p in picked[: decision.size])
            await conn.execute(
                "UPDATE requirements SET wave = $2, level = $3, deadline_at = $4, status = 'open' "
                "WHERE requirement_id = $1", rid, wave, level.value, respond_by,
            )
            await timeline(conn, inc.incident_id, now, "wave_called", requirement_id=rid, wave=wave,
                           level=level.value, size=decision.size, respond_by=respond_by.isoformat())
            log.info("dispatch.wave_called", incident_id=str(inc.incident_id), requirement_id=str(rid),
                     wave=wave, level=level.value, size=decision.size)
            return
        if isinstance(decision, Escalate):
            to_unit = ancestor(inc.unit_code, decision.to_level)
            ev = IncidentEscalated(incident_id=inc.incident_id, requirement_id=rid, from_level=decision.from_level,
                                   to_level=decision.to_level, unit_code=to_unit, occurred_at=now,
                                   **inc.env(causation))
            await outbox.add(conn, INCIDENT, str(inc.incident_id), ev)
            await conn.execute("UPDATE requirements SET level = $2 WHERE requirement_id = $1", rid,
                               decision.to_level.value)
            await timeline(conn, inc.incident_id, now, "escalated", requirement_id=rid,
                           from_level=decision.from_level.value, to_level=decision.to_level.value, unit_code=to_unit)
            log.info("dispatch.escalated", incident_id=str(inc.incident_id), requirement_id=str(rid),
                     from_level=decision.from_level.value, to_level=decision.to_level.value)
            level = decision.to_level
            causation = ev.event_id
            continue
        assert isinstance(decision, FlagUnfilled)
        ev_u = RequirementUnfilled(incident_id=inc.incident_id, requirement_id=rid, filled=req["filled"],
                                   outstanding=decision.outstanding, level=decision.level, occurred_at=now,
                                   **inc.env(causation))
        await outbox.add(conn, INCIDENT, str(inc.incident_id), ev_u)
        await conn.execute(
            "UPDATE requirements SET status = 'unfilled', deadline_at = NULL, level = $2 WHERE requirement_id = $1",
            rid, decision.level.value,
        )
        await timeline(conn, inc.incident_id, now, "unfilled", requirement_id=rid, level=decision.level.value,
                       outstanding=decision.outstanding)
        log.warning("dispatch.requirement_unfilled", incident_id=str(inc.incident_id), requirement_id=str(rid),
                    outstanding=decision.outstanding, level=decision.level.value)
        return


async def _call_circle(
    conn: asyncpg.Connection, inc: _Incident, req: asyncpg.Record, *, now: datetime, causation: UUID | None,
    called: set[UUID] | None,
) -> None:
    """The cardiac-arrest circle's next step for ``req`` (locked by the caller): one ring, or the circle's end.

    The step is the requirement's ``wave`` (steps done so far); the rule is
    :mod:`services.dispatch.domain.cardiac`: candidates by distance across division borders (the SQL
    pre-filter keeps the nearest ``size + 50`` of the whole roster projection; the pure selection checks
    certificate, ring, cap and opt-outs). The next step is due :attr:`CirclePolicy.step_seconds` later; after
    the last one, a final tick times out the unanswered and ends the circle (timeline ``circle_ended``).
    A scene marked unsafe alerts nobody (timeline ``circle_held``).
    """
    policy = inc.circle or CirclePolicy()
    rid = req["requirement_id"]
    n_called = int(await conn.fetchval("SELECT count(*) FROM callouts WHERE requirement_id = $1", rid))
    decided = circle_step(policy, step=req["wave"], called=n_called, accepted=req["filled"],
                          scene_unsafe=inc.scene_unsafe)
    if decided is None:
        await conn.execute("UPDATE requirements SET deadline_at = NULL WHERE requirement_id = $1", rid)
        reason = ("scene_unsafe" if inc.scene_unsafe else "enough_accepted" if req["filled"] >= policy.wanted
                  else "window_over")
        await timeline(conn, inc.incident_id, now, "circle_held" if inc.scene_unsafe else "circle_ended",
                       requirement_id=rid, reason=reason, called=n_called, accepted=req["filled"])
        log.info("dispatch.circle_stopped", incident_id=str(inc.incident_id), reason=reason, called=n_called)
        return
    started = time.perf_counter()
    if called is None:
        called = await called_in_incident(conn, inc.incident_id)
    picked: list[tuple[UUID, UUID | None, float | None]] = []
    if decided.size > 0:
        vols = await load_volunteer_candidates(conn, skill=CIRCLE_SKILL, prefix="", incident_id=inc.incident_id,
                                               at=now, lat=inc.lat, lon=inc.lon, limit=decided.size)
        opted_out = await opted_out_of_cardiac(conn, [v.volunteer_id for v in vols])
        chosen = select_circle(vols, lat=inc.lat, lon=inc.lon, at=now, radius_m=decided.radius_m, called=called,
                               limit=decided.size, opted_out=opted_out)
        picked = [(v.volunteer_id, None, d) for v, d in chosen]
    wave = req["wave"] + 1
    next_at = now + timedelta(seconds=policy.step_seconds)
    if picked:
        try:
            async with conn.transaction():  # a savepoint: a code clash with another urgent writer is retried
                await _write_wave(conn, inc, req, picked, level=Level(req["level"]), wave=wave, now=now,
                                  respond_by=next_at, causation=causation, urgent=True)
        except asyncpg.UniqueViolationError:
            await _write_wave(conn, inc, req, picked, level=Level(req["level"]), wave=wave, now=now,
                              respond_by=next_at, causation=causation)
        DISPATCH_FANOUT_SECONDS.observe(time.perf_counter() - started)
        DISPATCH_CALLOUTS_REQUESTED.inc(len(picked))
        called.update(p[0] for p in picked)
    await conn.execute("UPDATE requirements SET wave = $2, deadline_at = $3, status = 'open' WHERE requirement_id = $1",
                       rid, wave, next_at)
    await timeline(conn, inc.incident_id, now, "ring_called", requirement_id=rid, wave=wave, ring_m=decided.radius_m,
                   size=len(picked), respond_by=next_at.isoformat())
    log.info("dispatch.ring_called", incident_id=str(inc.incident_id), wave=wave, ring_m=decided.radius_m,
             size=len(picked))


async def _cardiac_role(
    conn: asyncpg.Connection, inc: _Incident, callout_id: UUID, volunteer_id: UUID, now: datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The role of a volunteer who just accepted in a cardiac-arrest incident, stored in ``cardiac_roles``.

    :func:`~services.dispatch.domain.cardiac.assign_roles` decides, with the incident's roles so far and the
    AEDs being fetched anywhere; the partial unique index on ``cardiac_roles (aed_id)`` is the backstop
    against a concurrent run taking the same device (the insert then finds it taken and decides again,
    three times at most, then sends the volunteer to the patient).

    Returns:
        ``(fields for CallOutAssigned, timeline detail)``.

    """
    await conn.execute("DELETE FROM cardiac_roles WHERE callout_id = $1", callout_id)  # accepted again after a withdrawal
    existing = {r["volunteer_id"]: Role(RoleKind(r["role"]), r["aed_id"], r["path_m"]) for r in await conn.fetch(
        "SELECT volunteer_id, role, aed_id, path_m FROM cardiac_roles WHERE incident_id = $1 AND released_at IS NULL",
        inc.incident_id)}
    pos = await conn.fetchrow("SELECT lat, lon FROM volunteers WHERE volunteer_id = $1", volunteer_id)
    me = Responder(volunteer_id, pos["lat"] if pos else None, pos["lon"] if pos else None, now)
    aeds = {a.aed_id: a for a in await load_aeds(conn, lat=inc.lat, lon=inc.lon)}
    role = Role(RoleKind.CPR)
    for _ in range(3):
        taken = {r["aed_id"] for r in await conn.fetch(
            "SELECT aed_id FROM cardiac_roles WHERE aed_id IS NOT NULL AND released_at IS NULL")}
        role = assign_roles(patient_lat=inc.lat, patient_lon=inc.lon, new=[me], existing=existing,
                            aeds=aeds.values(), taken=taken, at=now, policy=inc.circle)[volunteer_id]
        if await conn.fetchval(
            "INSERT INTO cardiac_roles (callout_id, incident_id, volunteer_id, role, aed_id, path_m, assigned_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING RETURNING 1",
            callout_id, inc.incident_id, volunteer_id, role.kind.value, role.aed_id, role.path_m, now,
        ):
            break
    else:
        role = Role(RoleKind.CPR)
        await conn.execute(
            "INSERT INTO cardiac_roles (callout_id, incident_id, volunteer_id, role, assigned_at) "
            "VALUES ($1, $2, $3, 'cpr', $4)", callout_id, inc.incident_id, volunteer_id, now)
    fields: dict[str, Any] = {"cardiac_role": role.kind}
    detail: dict[str, Any] = {"callout_id": callout_id, "volunteer_id": volunteer_id, "role": role.kind.value}
    if role.aed_id is not None:
        aed = aeds[role.aed_id]
        fields.update(aed_place=aed.place, aed_map_url=amap_marker_url(aed.lat, aed.lon, "AED"))
        detail.update(aed_id=role.aed_id, path_m=role.path_m)
    return fields, detail


async def set_scene_safety(
    conn: asyncpg.Connection, incident_id: UUID, actor: Actor, *, unsafe: bool, reason: str = "",
    now: datetime | None = None,
) -> int:
    """Mark a cardiac-arrest incident's scene unsafe (violence, traffic, fire) or safe again.

    Unsafe: nobody more is alerted, and every open call-out is stood down (``stood_down``: an assigned
    volunteer is told to stop going); the requirement's count of accepted goes back to 0 and its steps stop.
    Safe again: the circle resumes at its next step at the ticker's next pass (people stood down before are
    not called again: one call-out per person and incident). Audited (``incident.scene``), on the timeline.
    The caller checked the operator's scope.

    Returns:
        The call-outs stood down (0 when marking safe, or when nothing changes).

    Raises:
        NotFound: no such incident. Conflict: closed. InvalidInput: not a cardiac-arrest incident; a reason over
            200 characters.

    """
    now = now or utcnow()
    check_text("reason", reason or "-", 200)
    async with conn.transaction():
        inc = await _open_incident_locked(conn, incident_id)
        if not inc.cardiac:
            raise InvalidInput(f"scene safety applies to {CARDIAC_ARREST} incidents (this one is {inc.kind})")
        if inc.scene_unsafe == unsafe:
            return 0
        await conn.execute("SELECT 1 FROM requirements WHERE incident_id = $1 ORDER BY position FOR UPDATE",
                           incident_id)
        await conn.execute("UPDATE incidents SET scene_unsafe = $2 WHERE incident_id = $1", incident_id, unsafe)
        n = 0
        if unsafe:
            n = await _cancel(conn, inc, "incident_id = $1 AND state = ANY($2::text[])",
                              [incident_id, [*_OPEN, "arrived"]], reason=CancelReason.STOOD_DOWN, now=now,
                              causation=None)
            await conn.execute("UPDATE requirements SET deadline_at = NULL, filled = 0, filled_at = NULL, "
                               "status = 'open' WHERE incident_id = $1 AND status IN ('open', 'filled')", incident_id)
        else:
            await conn.execute("UPDATE requirements SET deadline_at = $2 WHERE incident_id = $1 AND status = 'open'",
                               incident_id, now)
        await timeline(conn, incident_id, now, "scene_unsafe" if unsafe else "scene_safe", by=actor.name,
                       reason=reason, stood_down=n)
        await audit(conn, actor, "incident.scene", incident_id, {"scene_unsafe": not unsafe},
                    {"scene_unsafe": unsafe, "reason": reason, "stood_down": n})
    log.info("dispatch.scene", incident_id=str(incident_id), unsafe=unsafe, stood_down=n, by=actor.name)
    return n


# --------------------------------------------------------------------------- opening


async def open_incident(
    conn: asyncpg.Connection, data: IncidentInput, actor: Actor, *, place: str, now: datetime | None = None
) -> UUID:
    """Store an incident, call the first waves, write ``IncidentOpened`` and the call-outs, in one transaction.

    The caller checked the point and the operator's scope. ``place`` is the unit's name as people say it.
    ``data.max_level`` defaults to the level of ``actor``'s unit (city 330600 → city, a county → county,
    a town → town), so nobody escalates beyond their own scope by default.

    Raises:
        AccessDenied: (403) ``data.max_level`` above the level of ``actor``'s unit.
        InvalidInput: bad requirements (none, more than 20, unknown skill …), levels or policy; an empty
            title or kind, or one longer than 100 / 40 characters (nothing is written).

    """
    now = now or utcnow()
    circle = None
    if data.kind == CARDIAC_ARREST:
        circle = data.circle or CirclePolicy()
        if not data.requirements:  # the circle's own need: one for CPR, the others to fetch AEDs
            data = replace(data, requirements=[RequirementInput(CIRCLE_SKILL, None, circle.wanted)])
        if data.wave_deadline_seconds is None and data.mode is not IncidentMode.DRILL:  # a drill gives its own
            data = replace(data, wave_deadline_seconds=circle.reply_window_s)
    elif data.circle is not None:
        raise InvalidInput(f"policy.circle applies to kind {CARDIAC_ARREST} only")
    if not data.requirements:
        raise InvalidInput("an incident needs at least one requirement")
    if len(data.requirements) > MAX_REQUIREMENTS:
        raise InvalidInput(f"{len(data.requirements)} requirements; at most {MAX_REQUIREMENTS} in one incident")
    for r in data.requirements:
        check_requirement(skill=r.skill, team_type=r.team_type, count=r.count)
    scope = level_of(actor.unit_code)
    max_level = data.max_level or scope
    if not level_allowed(max_level, scope):
        raise AccessDenied(
            f"max level {max_level.value} is above {actor.name}'s scope ({scope.value} {actor.unit_code})",
            who=actor.name, role=actor.role,
        )
    if not level_allowed(data.start_level, max_level):
        raise InvalidInput(f"start level {data.start_level} is above max level {max_level}")
    if not 1 <= data.over_call_factor <= 10:
        raise InvalidInput(f"over_call_factor must be between 1 and 10, got {data.over_call_factor}")
    if data.wave_deadline_seconds is not None and not 1 <= data.wave_deadline_seconds <= 86_400:
        raise InvalidInput("wave_deadline_seconds must be between 1 and 86400")
    try:
        deadline_s = deadline_seconds(data.mode, data.wave_deadline_seconds)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc
    check_text("title", data.title, MAX_TITLE_LENGTH)
    check_text("kind", data.kind, MAX_KIND_LENGTH)
    meeting = _meeting(data.meeting_point, data.meeting_lat, data.meeting_lon, data.callback_phone)

    incident_id = uuid4()
    specs = tuple(
        RequirementSpec(requirement_id=uuid4(), skill=r.skill, team_type=TeamType(r.team_type) if r.team_type else None,
                        count=r.count)
        for r in data.requirements
    )
    opened = IncidentOpened(
        incident_id=incident_id, kind=data.kind, title=data.title, mode=data.mode, lat=data.lat, lon=data.lon,
        unit_code=data.unit_code, start_level=data.start_level, max_level=max_level, requirements=specs,
        occurred_at=now, correlation_id=incident_id, drill=data.mode is IncidentMode.DRILL,
    )
    async with conn.transaction():
        await conn.execute(
            """INSERT INTO incidents (incident_id, kind, title, mode, lat, lon, unit_code, place, start_level,
                   max_level, over_call_factor, wave_deadline_seconds, opened_by, opened_at, opened_event_id,
                   meeting_point, meeting_lat, meeting_lon, callback_phone, scene_unsafe, circle_policy)
               VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21)""",
            incident_id, data.kind, data.title, data.mode.value, data.lat, data.lon, data.unit_code, place,
            data.start_level.value, max_level.value, data.over_call_factor, deadline_s, actor.name, now,
            opened.event_id, *meeting, data.scene_unsafe, _circle_json(circle) if circle else None,
        )
        await conn.executemany(
            "INSERT INTO requirements (requirement_id, incident_id, position, skill, team_type, count, level) "
            "VALUES ($1,$2,$3,$4,$5,$6,$7)",
            [(s.requirement_id, incident_id, i, s.skill, s.team_type.value if s.team_type else None, s.count,
              data.start_level.value) for i, s in enumerate(specs)],
        )
        await outbox.add(conn, INCIDENT, str(incident_id), opened)
        await timeline(conn, incident_id, now, "opened", by=actor.name, mode=data.mode.value,
                       level=data.start_level.value)
        inc = await _incident(conn, incident_id)
        called: set[UUID] = set()  # a new incident: nobody called yet
        for req in await conn.fetch(
            "SELECT * FROM requirements WHERE incident_id = $1 ORDER BY position FOR UPDATE", incident_id
        ):
            await _call_next(conn, inc, req, now=now, causation=opened.event_id, called=called)
        await audit(conn, actor, "incident.open", incident_id, None,
                    {"kind": data.kind, "title": data.title, "mode": data.mode.value, "unit_code": data.unit_code,
                     "lat": data.lat, "lon": data.lon, "requirements": [s.model_dump(mode="json") for s in specs],
                     "meeting_point": meeting[0], "meeting_lat": meeting[1], "meeting_lon": meeting[2],
                     "callback_phone": meeting[3], "scene_unsafe": data.scene_unsafe,
                     "circle": _circle_json(circle) if circle else None})
    log.info("dispatch.incident_opened", incident_id=str(incident_id), mode=data.mode.value, by=actor.name)
    return incident_id


def _meeting(
    text: str | None, lat: float | None, lon: float | None, phone: str | None
) -> tuple[str | None, float | None, float | None, str | None]:
    """Checked meeting point and callback number, as stored (None = the incident's place / point, no number).

    Raises:
        InvalidInput: a blank or over-long (> 40 characters) meeting point, only one of lat/lon, a point out of
            range, or a callback number SMS providers do not allow (see ``check_callback_phone``).

    """
    if text is not None:
        text = " ".join(text.split())
        check_text("meeting_point", text, MAX_MEETING_POINT_LENGTH)
        if has_link(text):  # it goes into an SMS template variable, where providers refuse URLs
            raise InvalidInput("meeting_point may not contain a link: SMS providers refuse URLs in template "
                               "variables; the message carries its own map link")
    if (lat is None) != (lon is None):
        raise InvalidInput("meeting_lat and meeting_lon go together: give both or neither")
    if lat is not None and lon is not None and not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise InvalidInput(f"meeting point ({lat}, {lon}) is not a WGS84 latitude/longitude")
    if lat is not None and lon is not None:
        from .units import units

        if not units().city.contains(lat, lon):
            raise InvalidInput(f"meeting point ({lat}, {lon}) is outside the city")
    return text, lat, lon, check_callback_phone(phone) if phone is not None else None


async def set_meeting_point(
    conn: asyncpg.Connection, incident_id: UUID, actor: Actor, *, meeting_point: str | None,
    meeting_lat: float | None, meeting_lon: float | None, callback_phone: str | None,
    now: datetime | None = None,
) -> None:
    """Change an open incident's meeting point and/or callback number; later call-outs carry the new values.

    Fields left None keep their value (the point goes with its text only when given). Audited and on the
    timeline. Call-outs already sent keep what they said (an operator broadcast tells people on the way);
    ``MeetingPointChanged`` lets notify word what it sends later for them (reply page, automatic answer).

    The caller checked the operator's scope.

    Raises:
        NotFound: no such incident. Conflict: the incident is closed.
        InvalidInput: as :func:`_meeting`, or nothing to change.

    """
    now = now or utcnow()
    text, lat, lon, phone = _meeting(meeting_point, meeting_lat, meeting_lon, callback_phone)
    if text is None and lat is None and phone is None:
        raise InvalidInput("nothing to change: give meeting_point, meeting_lat/meeting_lon or callback_phone")
    async with conn.transaction():
        await _open_incident_locked(conn, incident_id)
        await conn.execute(
            """UPDATE incidents SET meeting_point = coalesce($2, meeting_point), meeting_lat = coalesce($3, meeting_lat),
                   meeting_lon = coalesce($4, meeting_lon), callback_phone = coalesce($5, callback_phone)
               WHERE incident_id = $1""",
            incident_id, text, lat, lon, phone,
        )
        change = {k: v for k, v in {"meeting_point": text, "meeting_lat": lat, "meeting_lon": lon,
                                     "callback_phone": phone}.items() if v is not None}
        inc = await _incident(conn, incident_id)
        where = inc.where()
        await outbox.add(conn, INCIDENT, str(incident_id), MeetingPointChanged(
            incident_id=incident_id, meeting_point=where["meeting_point"] or inc.place, map_url=where["map_url"],
            callback_phone=where["callback_phone"], occurred_at=now, **inc.env()))
        await timeline(conn, incident_id, now, "meeting_point_changed", by=actor.name, **change)
        await audit(conn, actor, "incident.meeting_point", incident_id, None, change)


_AUDIENCE_STATES = {
    BroadcastAudience.ASSIGNED: [CallOutState.ASSIGNED.value, CallOutState.ARRIVED.value],
    BroadcastAudience.CALLED: [CallOutState.REQUESTED.value, CallOutState.TIMED_OUT.value, CallOutState.ASSIGNED.value,
                               CallOutState.ARRIVED.value],
}


@dataclass(frozen=True)
class Broadcast:
    """A broadcast as recorded: its id, how many call-outs it went to, and whether this request made it."""

    broadcast_id: UUID
    recipients: int
    created: bool


async def broadcast(
    conn: asyncpg.Connection, incident_id: UUID, actor: Actor, *, text: str, audience: BroadcastAudience,
    broadcast_id: UUID | None = None, now: datetime | None = None,
) -> Broadcast:
    """Send an operator's text to the incident's audience: one ``BroadcastRequested`` per call-out, in one transaction.

    ``audience`` ``assigned``: call-outs accepted, on the way or arrived; ``called``: every call-out not declined
    or stood down. ``broadcast_id`` makes a repeated request harmless: the same id again records and sends
    nothing more and returns the first result (``created`` False). Drill incidents' broadcasts are drill-marked.
    Audited (``incident.broadcast``) and on the timeline. The caller checked the operator's scope.

    Raises:
        NotFound: no such incident. Conflict: the incident is closed, or ``broadcast_id`` belongs to another
            incident. InvalidInput: text blank, longer than 120 characters or holding a URL.

    """
    now = now or utcnow()
    text = check_broadcast_text(text)
    broadcast_id = broadcast_id or uuid4()
    async with conn.transaction():
        inc = await _open_incident_locked(conn, incident_id)
        before = await conn.fetchrow(
            "SELECT incident_id, recipients FROM broadcasts WHERE broadcast_id = $1", broadcast_id)
        if before is not None:
            if before["incident_id"] != incident_id:
                raise Conflict(f"broadcast {broadcast_id} belongs to another incident")
            return Broadcast(broadcast_id, before["recipients"], created=False)
        rows = await conn.fetch(
            "SELECT callout_id, volunteer_id FROM callouts WHERE incident_id = $1 AND state = ANY($2::text[]) "
            "ORDER BY callout_id", incident_id, _AUDIENCE_STATES[audience],
        )
        await conn.execute(
            "INSERT INTO broadcasts (broadcast_id, incident_id, audience, text, sent_by, sent_at, recipients) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7)",
            broadcast_id, incident_id, audience.value, text, actor.name, now, len(rows),
        )
        await outbox.add_many(conn, [
            (CALLOUT, str(r["volunteer_id"]), BroadcastRequested(
                broadcast_id=broadcast_id, callout_id=r["callout_id"], incident_id=incident_id,
                volunteer_id=r["volunteer_id"], incident_title=inc.title, text=text, callback_phone=inc.callback_phone,
                occurred_at=now, **inc.env()))
            for r in rows
        ])
        await timeline(conn, incident_id, now, "broadcast", by=actor.name, broadcast_id=str(broadcast_id),
                       audience=audience.value, recipients=len(rows))
        await audit(conn, actor, "incident.broadcast", incident_id, None,
                    {"broadcast_id": str(broadcast_id), "audience": audience.value, "text": text,
                     "recipients": len(rows)})
    log.info("dispatch.broadcast", incident_id=str(incident_id), broadcast_id=str(broadcast_id),
             audience=audience.value, recipients=len(rows), by=actor.name)
    return Broadcast(broadcast_id, len(rows), created=True)


# --------------------------------------------------------------------------- deadlines


async def process_due(
    pool: asyncpg.Pool, *, now: datetime | None = None, skip: Collection[UUID] = ()
) -> UUID | None:
    """Handle one due requirement (deadline passed, incident open), in its own transaction.

    Waiting call-outs of the requirement whose ``respond_by`` passed become ``timed_out``; then the
    next wave is called, or the search escalates, or the requirement is flagged unfilled. Rows
    locked by another replica are skipped (``FOR UPDATE SKIP LOCKED``).

    Args:
        pool: the service's pool.
        now: the time to judge deadlines by (UTC); default now.
        skip: requirements to leave alone this time (ones that just failed), so one bad row cannot
            hold up the others.

    Returns:
        The requirement handled, or None when nothing is due.

    Raises:
        DueRequirementFailed: handling one requirement failed (nothing of it was written); its id is attached.

    """
    now = now or utcnow()
    async with pool.acquire() as conn, conn.transaction():
        req = await conn.fetchrow(
            """SELECT r.* FROM requirements r JOIN incidents i ON i.incident_id = r.incident_id
               WHERE r.deadline_at <= $1 AND r.status = 'open' AND i.status = 'open'
                 AND r.requirement_id <> ALL($2::uuid[])
               ORDER BY r.deadline_at LIMIT 1 FOR UPDATE OF r SKIP LOCKED""",
            now, list(skip),
        )
        if req is None:
            return None
        try:
            async with conn.transaction():  # a savepoint: a failure leaves nothing of this requirement behind
                await _handle_due(conn, req, now)
        except Exception as exc:
            if is_transient(exc):
                raise
            raise DueRequirementFailed(req["requirement_id"]) from exc
        return req["requirement_id"]  # type: ignore[no-any-return]


class DueRequirementFailed(Exception):
    """Handling one due requirement failed; ``requirement_id`` names it (the ticker skips it until the next tick)."""

    def __init__(self, requirement_id: UUID) -> None:
        super().__init__(f"handling due requirement {requirement_id} failed")
        self.requirement_id = requirement_id


async def _handle_due(conn: asyncpg.Connection, req: asyncpg.Record, now: datetime) -> None:
    inc = await _incident(conn, req["incident_id"])
    timed_out = await conn.fetchval(
        """WITH t AS (UPDATE callouts SET state = 'timed_out'
                      WHERE requirement_id = $1 AND state = 'requested' AND respond_by <= $2 RETURNING 1)
           SELECT count(*) FROM t""",
        req["requirement_id"], now,
    )
    await timeline(conn, inc.incident_id, now, "deadline", requirement_id=req["requirement_id"],
                   wave=req["wave"], level=req["level"], timed_out=timed_out,
                   outstanding=req["count"] - req["filled"])
    await _call_next(conn, inc, req, now=now, causation=None)


# --------------------------------------------------------------------------- replies


async def _fill_check(
    conn: asyncpg.Connection, inc: _Incident, req: Mapping[str, Any], filled: int, *, now: datetime,
    causation: UUID | None,
) -> None:
    """After ``filled`` changed: mark filled and stand down the rest, or reopen when it dropped below."""
    rid = req["requirement_id"]
    if filled >= req["count"] and req["status"] != "filled":
        ev = RequirementFilled(incident_id=inc.incident_id, requirement_id=rid, filled=filled, occurred_at=now,
                               **inc.env(causation))
        await outbox.add(conn, INCIDENT, str(inc.incident_id), ev)
        await conn.execute(
            "UPDATE requirements SET status = 'filled', deadline_at = NULL, filled_at = $2 WHERE requirement_id = $1",
            rid, now,
        )
        await timeline(conn, inc.incident_id, now, "filled", requirement_id=rid, filled=filled)
        await _cancel(conn, inc, "requirement_id = $1 AND state = ANY($2::text[])", [rid, list(_WAITING)],
                      reason=CancelReason.FILLED, now=now, causation=ev.event_id)
    elif filled < req["count"] and req["status"] == "filled":
        await conn.execute(
            "UPDATE requirements SET status = 'open', deadline_at = $2, filled_at = NULL WHERE requirement_id = $1",
            rid, now,
        )
        await timeline(conn, inc.incident_id, now, "reopened", requirement_id=rid, filled=filled)


async def _cancel(
    conn: asyncpg.Connection, inc: _Incident, where: str, args: list[Any], *, reason: CancelReason, now: datetime,
    causation: UUID | None,
) -> int:
    """Stand down the call-outs matching ``where`` ($1.. = ``args``): state cancelled + ``CallOutCancelled`` each."""
    n = len(args)
    rows = await conn.fetch(
        f"""UPDATE callouts c SET state = 'cancelled', cancel_reason = ${n + 1}
            FROM (SELECT callout_id, state AS old_state FROM callouts WHERE {where} FOR UPDATE) o
            WHERE c.callout_id = o.callout_id
            RETURNING c.callout_id, c.volunteer_id, o.old_state""",
        *args, reason.value,
    )
    await outbox.add_many(conn, [
        (CALLOUT, str(r["volunteer_id"]), CallOutCancelled(
            callout_id=r["callout_id"], incident_id=inc.incident_id, volunteer_id=r["volunteer_id"], reason=reason,
            incident_title=inc.title, was_assigned=r["old_state"] in ("assigned", "arrived"), occurred_at=now,
            **inc.env(causation),
        ))
        for r in rows
    ])
    return len(rows)


async def apply_reply_event(conn: asyncpg.Connection, item: Received) -> None:
    """Consumer handler for ``notify.reply.v1``: record the reply (always), then apply it to its call-out.

    A reply with no call-out or an unknown call-out is recorded unmatched (``GET /replies/unmatched``);
    one from a volunteer other than the one called is recorded on the call-out with the note
    ``volunteer_mismatch``; neither changes anything. A reply id seen before (the
    same reply re-published under a new event id) is neither recorded nor applied again.
    """
    if not isinstance(item, ReplyReceived):
        log.warning("dispatch.unexpected_event", event_type=getattr(item, "event_type", None))
        return
    ev = item
    if await conn.fetchval("SELECT 1 FROM replies WHERE reply_id = $1", ev.reply_id):
        # the same reply published again under a new event id (notify retried): one reply, applied once
        log.info("dispatch.reply_duplicate", reply_id=str(ev.reply_id), event_id=str(ev.event_id))
        return
    try:
        async with conn.transaction():  # a savepoint: a failed application leaves nothing half-done
            await _apply_reply(conn, ev)
    except Exception as exc:
        if is_transient(exc):
            raise
        # never lose a reply: keep it for the operators (unmatched list) with the error noted
        log.error("dispatch.reply_failed", reply_id=str(ev.reply_id), callout_id=str(ev.callout_id), error=repr(exc))
        await _record_reply(conn, ev, None, None, False, "error")


async def apply_reply_batch(conn: asyncpg.Connection, items: Sequence[Received]) -> None:
    """Batch handler for ``notify.reply.v1``: :func:`apply_reply_event` for each event, in topic order.

    The same effect with a fixed number of statements per batch instead of four to seven per reply
    (the reply path's cost under load, ``bench/reply_path.py``): see :func:`_apply_replies`. The
    consumer runs the batch in one savepoint (:class:`shared.consumer.IdempotentConsumer`); if any
    reply fails with a non-transient error the batch is rolled back to it and the consumer applies
    the events one by one with :func:`apply_reply_event`, which records a failing reply as unmatched
    with the note ``error``. A reply id recorded before, or twice in one batch (re-published under a
    new event id), is applied once.
    """
    replies: list[ReplyReceived] = []
    for item in items:
        if isinstance(item, ReplyReceived):
            replies.append(item)
        else:
            log.warning("dispatch.unexpected_event", event_type=getattr(item, "event_type", None))
    if not replies:
        return
    seen = {r["reply_id"] for r in await conn.fetch(
        "SELECT reply_id FROM replies WHERE reply_id = ANY($1::uuid[])", [ev.reply_id for ev in replies])}
    fresh: list[ReplyReceived] = []
    for ev in replies:
        if ev.reply_id in seen:
            log.info("dispatch.reply_duplicate", reply_id=str(ev.reply_id), event_id=str(ev.event_id))
            continue
        seen.add(ev.reply_id)
        fresh.append(ev)
    await _apply_replies(conn, fresh)


async def _record_reply(
    conn: asyncpg.Connection, ev: ReplyReceived, callout_id: UUID | None, incident_id: UUID | None, applied: bool,
    note: str,
) -> None:
    await conn.execute(
        """INSERT INTO replies (reply_id, event_id, callout_id, incident_id, volunteer_id, intent, text,
               eta_minutes, channel, sender, received_at, applied, note)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)
           ON CONFLICT (reply_id) DO NOTHING""",
        ev.reply_id, ev.event_id, callout_id, incident_id, ev.volunteer_id, ev.intent.value, ev.text,
        ev.eta_minutes, ev.channel.value, ev.sender, ev.received_at, applied, note,
    )


async def _apply_reply(conn: asyncpg.Connection, ev: ReplyReceived) -> None:
    """Apply one reply (see :func:`apply_reply_event`): :func:`_apply_replies` with one reply."""
    await _apply_replies(conn, [ev])


_CALLOUT_COLUMNS = ("state", "last_reply_at", "accepted_at", "arrived_at", "eta_minutes", "cancel_reason")


class _ReplyWrites:
    """What a run of replies changes, kept in memory and written with one statement per table.

    ``callouts`` and ``requirements`` are the locked rows as dicts, changed in place as each reply is
    decided, so a later reply of the batch sees what the earlier ones did; ``dirty_*`` name the rows
    to write back.
    """

    def __init__(self) -> None:
        self.replies: list[tuple[Any, ...]] = []
        self.events: list[tuple[TopicSpec, str, Any]] = []
        self.timeline: list[tuple[UUID, datetime, str, dict[str, Any]]] = []
        self.dirty_callouts: set[UUID] = set()
        self.dirty_requirements: set[UUID] = set()

    def record(self, ev: ReplyReceived, callout_id: UUID | None, incident_id: UUID | None, applied: bool,
               note: str) -> None:
        self.replies.append((ev.reply_id, ev.event_id, callout_id, incident_id, ev.volunteer_id, ev.intent.value,
                             ev.text, ev.eta_minutes, ev.channel.value, ev.sender, ev.received_at, applied, note))

    async def flush(self, conn: asyncpg.Connection, callouts: dict[UUID, dict[str, Any]],
                    requirements: dict[UUID, dict[str, Any]]) -> None:
        """Write everything kept so far (replies, call-outs, filled counts, events, timeline), in that order."""
        if self.replies:
            await conn.execute(
                """INSERT INTO replies (reply_id, event_id, callout_id, incident_id, volunteer_id, intent, text,
                       eta_minutes, channel, sender, received_at, applied, note)
                   SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[], $6::text[],
                                        $7::text[], $8::int[], $9::text[], $10::text[], $11::timestamptz[],
                                        $12::bool[], $13::text[])
                   ON CONFLICT (reply_id) DO NOTHING""",
                *[list(col) for col in zip(*self.replies, strict=True)],
            )
        if self.dirty_callouts:
            rows = [callouts[cid] for cid in sorted(self.dirty_callouts)]
            await conn.execute(
                """UPDATE callouts c SET state = u.state, last_reply_at = u.last_reply_at,
                       accepted_at = u.accepted_at, arrived_at = u.arrived_at, eta_minutes = u.eta_minutes,
                       cancel_reason = u.cancel_reason
                   FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::timestamptz[],
                               $6::int[], $7::text[])
                        AS u(callout_id, state, last_reply_at, accepted_at, arrived_at, eta_minutes, cancel_reason)
                   WHERE c.callout_id = u.callout_id""",
                [r["callout_id"] for r in rows], *[[r[k] for r in rows] for k in _CALLOUT_COLUMNS],
            )
        if self.dirty_requirements:
            reqs = [requirements[rid] for rid in sorted(self.dirty_requirements)]
            await conn.execute(
                "UPDATE requirements r SET filled = u.filled FROM unnest($1::uuid[], $2::int[]) AS u(id, filled) "
                "WHERE r.requirement_id = u.id",
                [r["requirement_id"] for r in reqs], [r["filled"] for r in reqs],
            )
        await outbox.add_many(conn, self.events)
        if self.timeline:
            await conn.execute(
                "INSERT INTO timeline (incident_id, at, kind, detail) "
                "SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::jsonb[])",
                [t[0] for t in self.timeline], [t[1] for t in self.timeline], [t[2] for t in self.timeline],
                [{k: (str(v) if isinstance(v, UUID) else v) for k, v in t[3].items()} for t in self.timeline],
            )
        await board_changed(conn, {r[3] for r in self.replies if r[3] is not None})
        self.replies, self.events, self.timeline = [], [], []
        self.dirty_callouts, self.dirty_requirements = set(), set()


_CLAIMING = (ReplyIntent.ACCEPT, ReplyIntent.ETA, ReplyIntent.ARRIVED)
_CLAIMABLE = (CallOutState.REQUESTED.value, CallOutState.TIMED_OUT.value, CallOutState.DECLINED.value)


class _Engagements:
    """The ``engagements`` rows of a run of replies' volunteers: who is assigned where (issue #14, no double booking).

    A volunteer is engaged (assigned or arrived) in at most one open incident: ``engagements`` has the
    volunteer as primary key (migration 0006), so of two transactions claiming the same person the second
    waits on the key and then finds it taken, whatever the order or concurrency of the replies. The run's
    likely claims are made up front in one statement (:meth:`preclaim`); :meth:`take` settles each reply
    that would assign someone; :meth:`release_unused` drops the claims no reply used. Triggers on
    ``callouts`` and ``incidents`` free an engagement when its call-out leaves assigned/arrived or its
    incident closes, and refuse an assignment nobody claimed.

    ``held``: volunteer → (incident id, call-out id) of their engagement as last read or claimed;
    ``ours``: the call-outs this transaction claimed.
    """

    def __init__(self) -> None:
        self.held: dict[UUID, tuple[UUID, UUID]] = {}
        self.ours: set[UUID] = set()

    async def preclaim(self, conn: asyncpg.Connection, wanted: Sequence[tuple[UUID, UUID, UUID]]) -> None:
        """Claim (volunteer, incident, call-out) for each reply that may assign (first per volunteer wins), read the rest."""
        if not wanted:
            return
        # sorted by volunteer so that two runs claiming the same people take the keys in one order
        rows = await conn.fetch(
            """INSERT INTO engagements (volunteer_id, incident_id, callout_id)
               SELECT v, i, c FROM unnest($1::uuid[], $2::uuid[], $3::uuid[]) WITH ORDINALITY AS u(v, i, c, n)
               ORDER BY v, n
               ON CONFLICT DO NOTHING RETURNING callout_id""",
            [w[0] for w in wanted], [w[1] for w in wanted], [w[2] for w in wanted],
        )
        self.ours.update(r["callout_id"] for r in rows)
        await self._read(conn, list({w[0] for w in wanted}))

    async def _read(self, conn: asyncpg.Connection, volunteers: list[UUID]) -> None:
        for r in await conn.fetch(
            "SELECT volunteer_id, incident_id, callout_id FROM engagements WHERE volunteer_id = ANY($1::uuid[])",
            volunteers,
        ):
            self.held[r["volunteer_id"]] = (r["incident_id"], r["callout_id"])

    async def take(
        self, conn: asyncpg.Connection, flush: Callable[[], Any], volunteer_id: UUID, incident_id: UUID,
        callout_id: UUID, callouts: Mapping[UUID, Mapping[str, Any]],
    ) -> UUID | None:
        """Engage ``volunteer_id`` through ``callout_id``; None when done, else the incident they are engaged in.

        A claim of ours on another call-out that no reply turned into an assignment (yet) is given up
        for this one. ``flush`` writes the run's changes so far (so the triggers free what they free)
        before a claim is made here.
        """
        held = self.held.get(volunteer_id)
        if held is not None and held[1] == callout_id:
            return None
        if held is not None and not (held[1] in self.ours and callouts[held[1]]["state"] not in ("assigned", "arrived")):
            return held[0]
        await flush()
        if held is not None:
            await conn.execute("DELETE FROM engagements WHERE callout_id = $1", held[1])
            self.ours.discard(held[1])
            del self.held[volunteer_id]
        claimed = await conn.fetchval(
            "INSERT INTO engagements (volunteer_id, incident_id, callout_id) VALUES ($1, $2, $3) "
            "ON CONFLICT DO NOTHING RETURNING callout_id", volunteer_id, incident_id, callout_id,
        )
        if claimed is not None:
            self.ours.add(callout_id)
            self.held[volunteer_id] = (incident_id, callout_id)
            return None
        await self._read(conn, [volunteer_id])
        held = self.held.get(volunteer_id)
        return held[0] if held is not None and held[1] != callout_id else None

    def released(self, volunteer_id: UUID, callout_id: UUID) -> None:
        """A reply took ``callout_id`` out of assigned/arrived (the trigger deletes the row when it is written)."""
        if self.held.get(volunteer_id, (None, None))[1] == callout_id:
            del self.held[volunteer_id]

    async def release_unused(self, conn: asyncpg.Connection) -> None:
        """Drop this run's claims whose call-out did not end assigned or arrived."""
        if self.ours:
            await conn.execute(
                "DELETE FROM engagements e USING callouts c WHERE e.callout_id = ANY($1::uuid[]) "
                "AND c.callout_id = e.callout_id AND c.state NOT IN ('assigned', 'arrived')", list(self.ours),
            )


async def _apply_replies(conn: asyncpg.Connection, replies: Sequence[ReplyReceived]) -> None:
    """Apply replies in order, each as :func:`apply_reply_event` describes, with a few statements in all.

    Reads: the call-outs' requirement and incident ids, then the rows locked in the order every other
    writer takes them — incidents (``FOR NO KEY UPDATE``), then requirements, then call-outs
    (``FOR UPDATE``), each set by id. Each reply is decided by the pure
    :func:`~services.dispatch.domain.replies.apply_reply` against the rows as the earlier replies left
    them (in memory). Writes: one ``INSERT … unnest`` of the replies, one ``UPDATE … FROM unnest`` of
    the changed call-outs and one of the changed filled counts, one outbox COPY of the confirmations
    and stand-downs (in reply order, so per volunteer in order), one timeline insert. A reply that
    fills a requirement (or reopens one) writes what came before it, stands down the requirement's
    waiting call-outs (:func:`_fill_check`) and re-reads the locked rows before the next reply.
    Replies must be new (not recorded before) and distinct.
    """
    if not replies:
        return
    DISPATCH_REPLIES.inc(len(replies))
    now_ts = time.time()
    for r in replies:  # the reply's arrival at notify to its application here (reply → board)
        DISPATCH_REPLY_SECONDS.observe(max(0.0, now_ts - r.received_at.timestamp()))
    heads = {r["callout_id"]: r for r in await conn.fetch(
        "SELECT callout_id, requirement_id, incident_id FROM callouts WHERE callout_id = ANY($1::uuid[])",
        list({ev.callout_id for ev in replies if ev.callout_id is not None}))}
    incidents = {r["incident_id"]: _incident_of(r) for r in await conn.fetch(
        "SELECT * FROM incidents WHERE incident_id = ANY($1::uuid[]) ORDER BY incident_id FOR NO KEY UPDATE",
        sorted({h["incident_id"] for h in heads.values()}))} if heads else {}

    async def load() -> tuple[dict[UUID, dict[str, Any]], dict[UUID, dict[str, Any]]]:
        reqs = {r["requirement_id"]: dict(r) for r in await conn.fetch(
            "SELECT requirement_id, count, filled, status, skill FROM requirements WHERE requirement_id = ANY($1::uuid[]) "
            "ORDER BY requirement_id FOR UPDATE",
            sorted({h["requirement_id"] for h in heads.values()}))}
        calls = {r["callout_id"]: dict(r) for r in await conn.fetch(
            "SELECT callout_id, volunteer_id, state, last_reply_at, accepted_at, arrived_at, eta_minutes, "
            "cancel_reason FROM callouts WHERE callout_id = ANY($1::uuid[]) ORDER BY callout_id FOR UPDATE",
            sorted(heads))}
        return reqs, calls

    requirements, callouts = await load() if heads else ({}, {})
    out = _ReplyWrites()
    engagements = _Engagements()
    await engagements.preclaim(conn, [
        (c["volunteer_id"], heads[ev.callout_id]["incident_id"], ev.callout_id) for ev in replies
        if ev.callout_id in callouts and ev.intent in _CLAIMING
        and (c := callouts[ev.callout_id])["state"] in _CLAIMABLE
        and ev.volunteer_id in (None, c["volunteer_id"])
    ])
    engaged_titles: dict[UUID, str] = {}

    async def flush() -> None:
        await out.flush(conn, callouts, requirements)

    for ev in replies:
        now = utcnow()
        head = heads.get(ev.callout_id) if ev.callout_id is not None else None
        if head is None:
            out.record(ev, None, None, False, "unmatched" if ev.callout_id is None else "unknown_callout")
            log.info("dispatch.reply_unmatched", reply_id=str(ev.reply_id), callout_id=str(ev.callout_id))
            continue
        inc = incidents[head["incident_id"]]
        req = requirements[head["requirement_id"]]
        c = callouts[head["callout_id"]]
        if ev.volunteer_id is not None and ev.volunteer_id != c["volunteer_id"]:
            out.record(ev, ev.callout_id, inc.incident_id, False, "volunteer_mismatch")
            continue
        outcome = apply_reply(
            state=CallOutState(c["state"]), intent=ev.intent, eta_minutes=ev.eta_minutes,
            outstanding=req["count"] - req["filled"], incident_open=inc.status == "open",
            received_at=ev.received_at, last_reply_at=c["last_reply_at"],
        )
        engaged_in = None
        if outcome.filled_delta > 0:
            engaged_in = await engagements.take(conn, flush, c["volunteer_id"], inc.incident_id, c["callout_id"],
                                                callouts)
            if engaged_in is not None:
                outcome = apply_reply(
                    state=CallOutState(c["state"]), intent=ev.intent, eta_minutes=ev.eta_minutes,
                    outstanding=req["count"] - req["filled"], incident_open=True, received_at=ev.received_at,
                    last_reply_at=c["last_reply_at"], engaged_elsewhere=True,
                )
        out.record(ev, ev.callout_id, inc.incident_id, outcome.applied, outcome.note.value)
        log.info("dispatch.reply_applied", incident_id=str(inc.incident_id), callout_id=str(ev.callout_id),
                 intent=ev.intent.value, note=outcome.note.value)
        if not outcome.applied:
            continue
        new = outcome.state
        c.update(
            state=new.value, last_reply_at=ev.received_at,
            accepted_at=(ev.received_at if outcome.filled_delta > 0
                         else None if new is CallOutState.DECLINED else c["accepted_at"]),
            arrived_at=ev.received_at if new is CallOutState.ARRIVED else c["arrived_at"],
            eta_minutes=outcome.eta_minutes if outcome.eta_minutes is not None else c["eta_minutes"],
            cancel_reason=("filled" if new is CallOutState.CANCELLED
                           else "engaged_elsewhere" if engaged_in is not None else c["cancel_reason"]),
        )
        out.dirty_callouts.add(c["callout_id"])
        vid = c["volunteer_id"]
        if new.value not in ("assigned", "arrived"):
            engagements.released(vid, c["callout_id"])
        if engaged_in is not None:
            # the short answer, sent by notify like a stand-down: "already on <incident>, no need to come"
            if engaged_in not in engaged_titles:
                engaged_titles[engaged_in] = await conn.fetchval(
                    "SELECT title FROM incidents WHERE incident_id = $1", engaged_in) or ""
            out.events.append((CALLOUT, str(vid), CallOutCancelled(
                callout_id=c["callout_id"], incident_id=inc.incident_id, volunteer_id=vid,
                reason=CancelReason.ENGAGED_ELSEWHERE, incident_title=inc.title,
                engaged_incident_title=engaged_titles[engaged_in], occurred_at=now, **inc.env(ev.event_id))))
            out.timeline.append((inc.incident_id, now, ReplyNote.ENGAGED_ELSEWHERE.value, {
                "callout_id": c["callout_id"], "volunteer_id": vid, "engaged_incident_id": engaged_in}))
        if outcome.confirm:
            role_fields: dict[str, Any] = {}
            if inc.cardiac and req["skill"] == CIRCLE_SKILL:  # the circle's own need (not a team asked beside it)
                role_fields, role_detail = await _cardiac_role(conn, inc, c["callout_id"], vid, now)
                out.timeline.append((inc.incident_id, now, "cardiac_role", role_detail))
            out.events.append((CALLOUT, str(vid), CallOutAssigned(
                callout_id=c["callout_id"], incident_id=inc.incident_id, volunteer_id=vid, incident_title=inc.title,
                place=inc.place, occurred_at=now, **inc.where(), **role_fields, **inc.env(ev.event_id))))
        if outcome.stand_down:
            out.events.append((CALLOUT, str(vid), CallOutCancelled(
                callout_id=c["callout_id"], incident_id=inc.incident_id, volunteer_id=vid,
                reason=CancelReason.FILLED, incident_title=inc.title, occurred_at=now, **inc.env(ev.event_id))))
        if outcome.note in (ReplyNote.ASSIGNED, ReplyNote.WITHDRAWN, ReplyNote.ARRIVED):
            out.timeline.append((inc.incident_id, now, outcome.note.value, {
                "callout_id": c["callout_id"], "volunteer_id": vid, "requirement_id": req["requirement_id"]}))
        if outcome.filled_delta:
            req["filled"] += outcome.filled_delta
            out.dirty_requirements.add(req["requirement_id"])
            filled = req["filled"]
            if (filled >= req["count"]) != (req["status"] == "filled"):  # fills it, or reopens it
                await out.flush(conn, callouts, requirements)
                await _fill_check(conn, inc, req, filled, now=now, causation=ev.event_id)
                requirements, callouts = await load()  # the stand-downs changed call-outs of this batch
    await out.flush(conn, callouts, requirements)
    await engagements.release_unused(conn)


_DELIVERY_STATUS = {"MessageSent": "sent", "MessageDelivered": "delivered", "MessageFailed": "failed"}


async def record_delivery(conn: asyncpg.Connection, item: Received) -> None:
    """Consumer handler for ``notify.delivery.v1``: one event (see :func:`record_deliveries`)."""
    await record_deliveries(conn, [item])


async def record_deliveries(conn: asyncpg.Connection, items: Sequence[Received]) -> None:
    """Batch handler for ``notify.delivery.v1``: keep each message's status for the board and report.

    One ``INSERT … SELECT FROM unnest(…)`` for the whole batch (a 10,000-person fan-out brings 20,000
    of these events: sent, then delivered); an event already stored (same ``event_id``) changes nothing.
    Messages about call-outs this dispatch does not know (another environment's, a test's) are not kept.
    Events of other types on the topic are logged and skipped.
    """
    events: list[MessageSent | MessageDelivered | MessageFailed] = []
    for item in items:
        if isinstance(item, MessageSent | MessageDelivered | MessageFailed):
            events.append(item)
        else:
            log.warning("dispatch.unexpected_event", event_type=getattr(item, "event_type", None))
    if not events:
        return
    changed = await conn.fetch(  # the incidents whose boards changed, once each
        """WITH ins AS (INSERT INTO messages (event_id, message_id, callout_id, incident_id, volunteer_id, kind,
               channel, provider, status, error_code, fallback, occurred_at)
           SELECT u.event_id, u.message_id, u.callout_id, c.incident_id, u.volunteer_id, u.kind, u.channel,
                  u.provider, u.status, u.error_code, u.fallback, u.occurred_at
           FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::text[], $7::text[],
                       $8::text[], $9::text[], $10::bool[], $11::timestamptz[])
                AS u(event_id, message_id, callout_id, volunteer_id, kind, channel, provider, status, error_code,
                     fallback, occurred_at)
           JOIN callouts c ON c.callout_id = u.callout_id
           ON CONFLICT (event_id) DO NOTHING
           RETURNING incident_id) SELECT DISTINCT incident_id FROM ins""",
        [e.event_id for e in events], [e.message_id for e in events], [e.callout_id for e in events],
        [e.volunteer_id for e in events], [e.kind.value for e in events], [e.channel.value for e in events],
        [e.provider for e in events], [_DELIVERY_STATUS[e.event_type] for e in events],
        [e.error_code if isinstance(e, MessageFailed) else None for e in events],
        [e.fallback if isinstance(e, MessageFailed) else False for e in events], [e.occurred_at for e in events],
    )
    await board_changed(conn, {r["incident_id"] for r in changed})
    for e in events:
        if isinstance(e, MessageFailed):
            log.warning("dispatch.delivery_failed", callout_id=str(e.callout_id), channel=e.channel.value,
                        error_code=e.error_code, fallback=e.fallback)


# --------------------------------------------------------------------------- operator actions


async def _open_incident_locked(conn: asyncpg.Connection, incident_id: UUID) -> _Incident:
    inc = await _incident(conn, incident_id, lock=True)
    if inc.status != "open":
        raise Conflict(f"incident {incident_id} is {inc.status}")
    return inc


async def _assignable_by_hand(conn: asyncpg.Connection, volunteer_id: UUID, actor: Actor) -> asyncpg.Record:
    """The volunteer an operator adds or moves by hand (``unit_code, active, consent, retired, skills``).

    Checked: in the projection, home unit inside ``actor``'s unit, active, not retired, consenting.

    Raises:
        NotFound: not in the roster projection.
        AccessDenied: (403) home unit outside ``actor``'s unit.
        InvalidInput: (422) inactive, retired, or without consent to call-outs (the reason named).

    """
    v = await conn.fetchrow(
        "SELECT unit_code, active, consent, retired, skills FROM volunteers WHERE volunteer_id = $1", volunteer_id
    )
    if v is None:
        raise NotFound(f"volunteer {volunteer_id} is not on the roster projection")
    if not within_unit(v["unit_code"], actor.unit_code):
        raise AccessDenied(
            f"volunteer {volunteer_id} belongs to {v['unit_code']}, outside {actor.name}'s unit {actor.unit_code}",
            who=actor.name, role=actor.role,
        )
    if v["retired"]:
        raise InvalidInput(f"volunteer {volunteer_id} has retired from the roster")
    if not v["active"]:
        raise InvalidInput(f"volunteer {volunteer_id} is inactive")
    if not v["consent"]:
        raise InvalidInput(f"volunteer {volunteer_id} has withdrawn (or never gave) consent to call-outs")
    return v


async def add_volunteer(
    conn: asyncpg.Connection, incident_id: UUID, requirement_id: UUID, volunteer_id: UUID, actor: Actor,
    *, now: datetime | None = None,
) -> UUID:
    """Call one volunteer by hand for a requirement (an operator's override of selection, not of consent or scope).

    Checked: the volunteer's home unit lies inside ``actor``'s unit (a county operator adds only
    people of their county, see :func:`~services.dispatch.domain.selection.within_unit`); the
    volunteer is active, not retired, and has consented to call-outs. Deliberately *not* checked:
    the skill and its certificate, availability, distance and engagement elsewhere — adding someone
    by hand is the operator's judgement. The audit entry (``callout.add``) records that the skill
    check was skipped and whether the volunteer holds the requirement's skill.

    Raises:
        NotFound: no such incident, requirement or volunteer in the projection.
        AccessDenied: (403) the volunteer's home unit is outside ``actor``'s unit.
        InvalidInput: (422) the volunteer is inactive, retired, or has withdrawn consent (the reason named).
        Conflict: incident closed; volunteer already called in it.

    """
    now = now or utcnow()
    async with conn.transaction():
        inc = await _open_incident_locked(conn, incident_id)
        req = await conn.fetchrow(
            "SELECT * FROM requirements WHERE requirement_id = $1 AND incident_id = $2 FOR UPDATE",
            requirement_id, incident_id,
        )
        if req is None:
            raise NotFound(f"no requirement {requirement_id} in incident {incident_id}")
        v = await _assignable_by_hand(conn, volunteer_id, actor)
        if await conn.fetchval("SELECT 1 FROM callouts WHERE incident_id = $1 AND volunteer_id = $2",
                               incident_id, volunteer_id):
            raise Conflict(f"volunteer {volunteer_id} was already called in this incident")
        respond_by = now + timedelta(seconds=inc.deadline_s)
        [cid] = await _write_wave(conn, inc, req, [(volunteer_id, None, None)], level=Level(req["level"]),
                                  wave=max(req["wave"], 1), now=now, respond_by=respond_by, causation=None,
                                  manual=True)
        await timeline(conn, incident_id, now, "added_by_hand", callout_id=cid, volunteer_id=volunteer_id,
                       by=actor.name)
        await audit(conn, actor, "callout.add", incident_id, None, {
            "callout_id": str(cid), "volunteer_id": str(volunteer_id), "requirement_id": str(requirement_id),
            "volunteer_unit": v["unit_code"], "skill_check": "skipped: added by hand (operator's judgement)",
            "holds_skill": (req["skill"] in v["skills"]) if req["skill"] else None,
        })
    return cid


async def remove_callout(
    conn: asyncpg.Connection, incident_id: UUID, callout_id: UUID, actor: Actor, *, now: datetime | None = None
) -> None:
    """Stand one volunteer down by hand (reason ``removed``); an assigned one frees their place (the need reopens).

    Raises:
        NotFound: no such call-out in the incident. Conflict: incident closed or call-out not open.

    """
    now = now or utcnow()
    async with conn.transaction():
        inc = await _open_incident_locked(conn, incident_id)
        head = await conn.fetchrow("SELECT requirement_id FROM callouts WHERE callout_id = $1 AND incident_id = $2",
                                   callout_id, incident_id)
        if head is None:
            raise NotFound(f"no call-out {callout_id} in incident {incident_id}")
        req = await conn.fetchrow("SELECT * FROM requirements WHERE requirement_id = $1 FOR UPDATE",
                                  head["requirement_id"])
        c = await conn.fetchrow("SELECT * FROM callouts WHERE callout_id = $1 FOR UPDATE", callout_id)
        state = CallOutState(c["state"])
        if state not in OPEN_STATES and state is not CallOutState.ARRIVED:
            raise Conflict(f"call-out {callout_id} is {state}; nothing to stand down")
        await _cancel(conn, inc, "callout_id = $1", [callout_id], reason=CancelReason.REMOVED, now=now,
                      causation=None)
        if state in COUNTED_STATES:
            filled = req["filled"] - 1
            await conn.execute("UPDATE requirements SET filled = $2 WHERE requirement_id = $1",
                               req["requirement_id"], filled)
            await _fill_check(conn, inc, req, filled, now=now, causation=None)
        await timeline(conn, incident_id, now, "removed_by_hand", callout_id=callout_id,
                       volunteer_id=c["volunteer_id"], by=actor.name)
        await audit(conn, actor, "callout.remove", incident_id, {"callout_id": str(callout_id), "state": state.value},
                    {"state": "cancelled", "reason": "removed"})


@dataclass(frozen=True)
class Move:
    """A volunteer moved between incidents: the call-out released and the one they are now assigned through."""

    volunteer_id: UUID
    from_incident_id: UUID
    from_callout_id: UUID
    to_incident_id: UUID
    to_callout_id: UUID


async def move_volunteer(
    conn: asyncpg.Connection, volunteer_id: UUID, to_incident_id: UUID, requirement_id: UUID, actor: Actor,
    *, now: datetime | None = None,
) -> Move:
    """Move an engaged volunteer to another incident: released from the first, then assigned in the second.

    The operator's explicit exception to "at most one open incident per person" (issue #14): in one
    transaction the volunteer's current call-out is stood down (reason ``removed``, its need reopens, as
    :func:`remove_callout`), then their call-out for ``requirement_id`` in ``to_incident_id`` — the one
    they were called with (often declined ``engaged_elsewhere``), or one added by hand when they were
    never called there — becomes ``assigned`` (``CallOutAssigned``: notify confirms it). Audited as
    ``volunteer.move`` on the target incident (before: where they were; after: where they are).

    Raises:
        NotFound: no such incident or requirement; the volunteer is not on the roster projection.
        AccessDenied: (403) the incident they leave, or their home unit, is outside ``actor``'s unit.
        InvalidInput: (422) the volunteer is inactive, retired or without consent (as :func:`add_volunteer`).
        Conflict: the volunteer is not engaged anywhere (add them by hand instead), is already engaged in
            ``to_incident_id``, either incident is closed, or the requirement is already filled.

    """
    now = now or utcnow()
    async with conn.transaction():
        eng = await conn.fetchrow("SELECT incident_id, callout_id FROM engagements WHERE volunteer_id = $1",
                                  volunteer_id)
        if eng is None:
            raise Conflict(f"volunteer {volunteer_id} is not assigned in any open incident; add them by hand")
        from_incident = eng["incident_id"]
        if from_incident == to_incident_id:
            raise Conflict(f"volunteer {volunteer_id} is already assigned in incident {to_incident_id}")
        # both incidents first, in id order (the lock order of every writer), then the rest as remove_callout
        await conn.execute("SELECT 1 FROM incidents WHERE incident_id = ANY($1::uuid[]) ORDER BY incident_id "
                           "FOR NO KEY UPDATE", sorted([from_incident, to_incident_id]))
        # under the locks: the incident they leave is the operator's too, and the person may still be called
        from_unit = await conn.fetchval("SELECT unit_code FROM incidents WHERE incident_id = $1", from_incident)
        if not within_unit(from_unit, actor.unit_code):
            raise AccessDenied(f"incident {from_incident} is outside {actor.name}'s unit {actor.unit_code}",
                               who=actor.name, role=actor.role)
        await _assignable_by_hand(conn, volunteer_id, actor)
        inc = await _open_incident_locked(conn, to_incident_id)
        req = await conn.fetchrow(
            "SELECT * FROM requirements WHERE requirement_id = $1 AND incident_id = $2", requirement_id, to_incident_id)
        if req is None:
            raise NotFound(f"no requirement {requirement_id} in incident {to_incident_id}")
        if req["filled"] >= req["count"]:
            raise Conflict(f"requirement {requirement_id} is already filled")
        await remove_callout(conn, from_incident, eng["callout_id"], actor, now=now)
        req = await conn.fetchrow("SELECT * FROM requirements WHERE requirement_id = $1 FOR UPDATE", requirement_id)
        c = await conn.fetchrow("SELECT callout_id, requirement_id, state FROM callouts "
                                "WHERE incident_id = $1 AND volunteer_id = $2 FOR UPDATE", to_incident_id, volunteer_id)
        if c is None or c["requirement_id"] != requirement_id:
            if c is not None:  # called for another need of this incident: that call-out is the one to assign
                req = await conn.fetchrow("SELECT * FROM requirements WHERE requirement_id = $1 FOR UPDATE",
                                          c["requirement_id"])
                if req["filled"] >= req["count"]:
                    raise Conflict(f"requirement {c['requirement_id']} (their call-out's) is already filled")
                cid = c["callout_id"]
            else:
                [cid] = await _write_wave(conn, inc, req, [(volunteer_id, None, None)], level=Level(req["level"]),
                                          wave=max(req["wave"], 1), now=now,
                                          respond_by=now + timedelta(seconds=inc.deadline_s), causation=None,
                                          manual=True, announce=False)
        else:
            cid = c["callout_id"]
        await conn.execute(
            "UPDATE callouts SET state = 'assigned', accepted_at = $2, cancel_reason = NULL WHERE callout_id = $1",
            cid, now,
        )
        code = await conn.fetchval("SELECT reply_code FROM callouts WHERE callout_id = $1", cid)
        await outbox.add(conn, CALLOUT, str(volunteer_id), CallOutAssigned(
            callout_id=cid, incident_id=to_incident_id, volunteer_id=volunteer_id, incident_title=inc.title,
            place=inc.place, reply_code=code, occurred_at=now, **inc.where(), **inc.env()))
        filled = req["filled"] + 1
        await conn.execute("UPDATE requirements SET filled = $2 WHERE requirement_id = $1", req["requirement_id"],
                           filled)
        await _fill_check(conn, inc, req, filled, now=now, causation=None)
        await timeline(conn, to_incident_id, now, "moved_in", callout_id=cid, volunteer_id=volunteer_id,
                       from_incident_id=from_incident, by=actor.name)
        await timeline(conn, from_incident, now, "moved_out", callout_id=eng["callout_id"], volunteer_id=volunteer_id,
                       to_incident_id=to_incident_id, by=actor.name)
        await audit(conn, actor, "volunteer.move", to_incident_id,
                    {"volunteer_id": str(volunteer_id), "incident_id": str(from_incident),
                     "callout_id": str(eng["callout_id"])},
                    {"volunteer_id": str(volunteer_id), "incident_id": str(to_incident_id), "callout_id": str(cid),
                     "state": "assigned"})
    return Move(volunteer_id, from_incident, eng["callout_id"], to_incident_id, cid)


async def stand_down(conn: asyncpg.Connection, incident_id: UUID, actor: Actor, *, now: datetime | None = None) -> int:
    """Stand everyone down: every open call-out cancelled (``stood_down``), no more waves. Returns how many.

    Raises:
        NotFound, Conflict: no such incident; incident closed.

    """
    now = now or utcnow()
    async with conn.transaction():
        inc = await _open_incident_locked(conn, incident_id)
        before = await _requirement_states(conn, incident_id)
        await conn.execute("SELECT 1 FROM requirements WHERE incident_id = $1 ORDER BY position FOR UPDATE",
                           incident_id)
        n = await _cancel(conn, inc, "incident_id = $1 AND state = ANY($2::text[])",
                          [incident_id, [*_OPEN, "arrived"]], reason=CancelReason.STOOD_DOWN, now=now, causation=None)
        await conn.execute(
            "UPDATE requirements SET status = 'stood_down', deadline_at = NULL WHERE incident_id = $1", incident_id
        )
        await timeline(conn, incident_id, now, "stood_down", callouts=n, by=actor.name)
        await audit(conn, actor, "incident.stand_down", incident_id, before, {"stood_down": n})
    return n


async def close_incident(
    conn: asyncpg.Connection, incident_id: UUID, outcome: str, actor: Actor, *, now: datetime | None = None
) -> None:
    """Close an incident with an outcome: open call-outs cancelled (``incident_closed``), ``IncidentClosed``.

    Raises:
        InvalidInput: empty outcome, or longer than :data:`~services.dispatch.domain.validation.MAX_OUTCOME_LENGTH`
            (500) characters. NotFound, Conflict: no such incident; already closed.

    """
    now = now or utcnow()
    if not outcome.strip():
        raise InvalidInput("closing an incident needs an outcome")
    check_text("outcome", outcome, MAX_OUTCOME_LENGTH)
    async with conn.transaction():
        inc = await _open_incident_locked(conn, incident_id)
        before = await _requirement_states(conn, incident_id)
        await conn.execute("SELECT 1 FROM requirements WHERE incident_id = $1 ORDER BY position FOR UPDATE",
                           incident_id)
        ev = IncidentClosed(incident_id=incident_id, outcome=outcome, occurred_at=now, **inc.env())
        n = await _cancel(conn, inc, "incident_id = $1 AND state = ANY($2::text[])", [incident_id, list(_OPEN)],
                          reason=CancelReason.INCIDENT_CLOSED, now=now, causation=ev.event_id)
        await conn.execute(
            "UPDATE requirements SET deadline_at = NULL, status = CASE WHEN status = 'filled' THEN 'filled' "
            "ELSE 'closed' END WHERE incident_id = $1", incident_id,
        )
        await conn.execute(
            "UPDATE incidents SET status = 'closed', outcome = $2, closed_at = $3 WHERE incident_id = $1",
            incident_id, outcome, now,
        )
        await outbox.add(conn, INCIDENT, str(incident_id), ev)
        await timeline(conn, incident_id, now, "closed", outcome=outcome, cancelled=n, by=actor.name)
        await audit(conn, actor, "incident.close", incident_id, {"status": "open", "requirements": before},
                    {"status": "closed", "outcome": outcome})


async def _requirement_states(conn: asyncpg.Connection, incident_id: UUID) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT requirement_id, status, filled, count, level FROM requirements WHERE incident_id = $1 "
        "ORDER BY position", incident_id,
    )
    return [{**dict(r), "requirement_id": str(r["requirement_id"])} for r in rows]
