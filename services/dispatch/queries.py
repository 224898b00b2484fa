"""Read side: the incident board, its call-outs with their replies, the report, lists.

Times are returned in UTC (ISO 8601); the operator's screens show them in Asia/Shanghai.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from shared.divisions import level_of
from shared.vocabulary import Level

from .domain.cardiac import CARDIAC_ARREST
from .domain.model import CallOutState
from .domain.report import (
    CallOutFact,
    CircleCallOutFact,
    MessageFact,
    RequirementFact,
    circle_figures,
    incident_figures,
)
from .domain.waves import LEVEL_ORDER
from .errors import NotFound

__all__ = ["board", "callouts", "engaged_in", "incident_unit", "list_incidents", "report", "roles", "unmatched_replies",
           "unrecognised_replies"]


def _iso(v: Any) -> Any:
    return v.isoformat() if hasattr(v, "isoformat") else v


def _same(v: Any) -> Any:
    return v


# converters by the value's exact type, learnt as met (a 10,000-row call-out list repeats a handful of types)
_CONVERTERS: dict[type, Any] = {type(None): _same, str: _same, int: _same, float: _same, bool: _same}


def _row(r: asyncpg.Record) -> dict[str, Any]:
    """A record as JSON-ready values: UUIDs as text, dates and times as ISO 8601, the rest as they are."""
    out = {}
    for k, v in r.items():
        conv = _CONVERTERS.get(type(v))
        if conv is None:
            conv = _CONVERTERS[type(v)] = str if isinstance(v, UUID) else _iso if hasattr(v, "isoformat") else _same
        out[k] = conv(v)
    return out


async def engaged_in(conn: asyncpg.Connection, volunteer_id: UUID) -> UUID | None:
    """The open incident ``volunteer_id`` is assigned (or arrived) in, from ``engagements``; None when free."""
    incident_id: UUID | None = await conn.fetchval(
        "SELECT incident_id FROM engagements WHERE volunteer_id = $1", volunteer_id)
    return incident_id


async def incident_unit(conn: asyncpg.Connection, incident_id: UUID) -> str:
    """The incident's village code (for scope checks).

    Raises:
        NotFound: no such incident.

    """
    unit = await conn.fetchval("SELECT unit_code FROM incidents WHERE incident_id = $1", incident_id)
    if unit is None:
        raise NotFound(f"no incident {incident_id}")
    return str(unit)


async def board(conn: asyncpg.Connection, incident_id: UUID, *, timeline_limit: int | None = None) -> dict[str, Any]:
    """The incident board; ``timeline_limit``: only the latest that many timeline entries (still oldest first).

    Returns:
        ``{"incident": {...}, "requirements": [{..., "filled", "outstanding", "level", "wave", "status",
        "deadline_at"}], "callouts_by_state": {state: n}, "current_level", "next_deadline",
        "messages_by_channel": {channel: n}, "delivery_failures": n, "timeline": [{"at", "kind", "detail"}]}``
        (messages as notify reported them on ``notify.delivery.v1``).

    Raises:
        NotFound: no such incident.

    """
    inc = await conn.fetchrow("SELECT * FROM incidents WHERE incident_id = $1", incident_id)
    if inc is None:
        raise NotFound(f"no incident {incident_id}")
    reqs = await conn.fetch(
        "SELECT requirement_id, skill, team_type, count, filled, level, wave, status, deadline_at, filled_at "
        "FROM requirements WHERE incident_id = $1 ORDER BY position", incident_id,
    )
    states = await conn.fetch("SELECT state, count(*) AS n FROM callouts WHERE incident_id = $1 GROUP BY state",
                              incident_id)
    events = await conn.fetch(
        "SELECT at, kind, detail FROM (SELECT id, at, kind, detail FROM timeline WHERE incident_id = $1 "
        "ORDER BY id DESC LIMIT $2) AS latest ORDER BY id", incident_id, timeline_limit,
    )
    channels = await conn.fetch(
        "SELECT channel, count(DISTINCT message_id) AS n, count(DISTINCT message_id) FILTER (WHERE status = 'failed') "
        "AS failed FROM messages WHERE incident_id = $1 GROUP BY channel", incident_id,
    )
    deadlines = [r["deadline_at"] for r in reqs if r["deadline_at"] is not None]
    levels = [Level(r["level"]) for r in reqs]
    return {
        "incident": _row(inc),
        "requirements": [{**_row(r), "outstanding": max(r["count"] - r["filled"], 0)} for r in reqs],
        "callouts_by_state": {r["state"]: r["n"] for r in states},
        "current_level": max(levels, key=LEVEL_ORDER.index).value if levels else None,
        "next_deadline": _iso(min(deadlines)) if deadlines else None,
        "messages_by_channel": {r["channel"]: r["n"] for r in channels},
        "delivery_failures": sum(r["failed"] for r in channels),
        "timeline": [_row(e) for e in events],
        **({"roles": await roles(conn, incident_id)} if inc["kind"] == CARDIAC_ARREST else {}),
    }


async def callouts(conn: asyncpg.Connection, incident_id: UUID) -> list[dict[str, Any]]:
    """Every call-out of the incident with every reply recorded for it (duplicates and late ones included).

    Returns:
        ``[{"callout_id", "volunteer_id", "team_id", "requirement_id", "state", "level", "wave", "reply_code",
        "requested_at", "respond_by", "accepted_at", "arrived_at", "eta_minutes", "cancel_reason", "manual",
        "replies": [{"reply_id", "intent", "text", "eta_minutes", "channel", "received_at", "applied", "note"}]}]``

    """
    await incident_unit(conn, incident_id)
    rows = await conn.fetch(
        "SELECT callout_id, volunteer_id, team_id, requirement_id, state, level, wave, reply_code, distance_m, "
        "requested_at, respond_by, accepted_at, arrived_at, eta_minutes, cancel_reason, manual "
        "FROM callouts WHERE incident_id = $1 ORDER BY wave, requested_at, distance_m NULLS LAST", incident_id,
    )
    reps = await conn.fetch(
        "SELECT reply_id, callout_id, intent, text, eta_minutes, channel, received_at, recorded_at, applied, note "
        "FROM replies WHERE incident_id = $1 ORDER BY received_at, recorded_at", incident_id,
    )
    by_callout: dict[UUID, list[dict[str, Any]]] = {}
    for r in reps:
        by_callout.setdefault(r["callout_id"], []).append(
            {k: v for k, v in _row(r).items() if k != "callout_id"}
        )
    return [{**_row(r), "replies": by_callout.get(r["callout_id"], [])} for r in rows]


async def list_incidents(conn: asyncpg.Connection, *, unit_prefix: str, limit: int = 100) -> list[dict[str, Any]]:
    """Incidents inside the unit prefix, newest first, with filled/needed totals and the levels reached."""
    rows = await conn.fetch(
        """SELECT i.incident_id, i.kind, i.title, i.mode, i.unit_code, i.status, i.opened_at, i.closed_at, i.place,
                  sum(r.count)::int AS needed, sum(r.filled)::int AS filled,
                  array_agg(DISTINCT r.level) AS levels
           FROM incidents i JOIN requirements r ON r.incident_id = i.incident_id
           WHERE i.unit_code LIKE $1 || '%'
           GROUP BY i.incident_id ORDER BY i.opened_at DESC LIMIT $2""",
        unit_prefix, limit,
    )
    return [_row(r) for r in rows]


async def unmatched_replies(conn: asyncpg.Connection, *, limit: int = 200) -> list[dict[str, Any]]:
    """Replies that matched no call-out (kept for operators), newest first; senders are already masked by notify."""
    rows = await conn.fetch(
        "SELECT reply_id, volunteer_id, callout_id, intent, text, channel, sender, received_at, note FROM replies "
        "WHERE incident_id IS NULL ORDER BY received_at DESC LIMIT $1", limit,
    )
    return [_row(r) for r in rows]


async def unrecognised_replies(conn: asyncpg.Connection, incident_id: UUID) -> list[dict[str, Any]]:
    """The incident's replies nobody could classify, for an operator to read, newest first; never dropped.

    Returns:
        ``[{"reply_id", "callout_id", "volunteer_id", "text", "channel", "received_at", "auto_answered"}]``;
        ``auto_answered`` is true once notify reported the call-out's one automatic answer (kind ``auto_answer``
        on ``notify.delivery.v1``), so the operator knows the volunteer was told how to reply.

    Raises:
        NotFound: no such incident.

    """
    await incident_unit(conn, incident_id)
    rows = await conn.fetch(
        """SELECT r.reply_id, r.callout_id, r.volunteer_id, r.text, r.channel, r.received_at,
                  EXISTS (SELECT 1 FROM messages m WHERE m.callout_id = r.callout_id AND m.kind = 'auto_answer')
                      AS auto_answered
           FROM replies r WHERE r.incident_id = $1 AND r.intent = 'unrecognised' ORDER BY r.received_at DESC""",
        incident_id,
    )
    return [_row(r) for r in rows]


async def _circle(conn: asyncpg.Connection, incident_id: UUID, inc: asyncpg.Record) -> dict[str, Any]:
    """A cardiac-arrest incident's circle figures, and its roles (who does CPR, who fetches which AED)."""
    rows = await conn.fetch(
        "SELECT c.wave, c.state, c.requested_at, c.accepted_at, c.arrived_at, r.role FROM callouts c "
        "LEFT JOIN cardiac_roles r ON r.callout_id = c.callout_id WHERE c.incident_id = $1", incident_id)
    first_sent = await conn.fetchval(
        "SELECT min(occurred_at) FROM messages WHERE incident_id = $1 AND kind = 'callout' AND status IN "
        "('sent', 'delivered')", incident_id)
    policy = inc["circle_policy"] or {}
    out = circle_figures(
        opened_at=inc["opened_at"], rings_m=tuple(policy.get("rings_m", ())), first_alert_sent_at=first_sent,
        callouts=[CircleCallOutFact(r["wave"], CallOutState(r["state"]), r["requested_at"], r["accepted_at"],
                                    r["arrived_at"], r["role"]) for r in rows],
    )
    out["roles"] = await roles(conn, incident_id)
    return out


async def roles(conn: asyncpg.Connection, incident_id: UUID) -> list[dict[str, Any]]:
    """The roles of a cardiac-arrest incident, in order of assignment.

    Returns:
        ``[{"callout_id", "volunteer_id", "role", "aed_id", "aed_place", "path_m", "assigned_at", "released_at",
        "arrived_at"}]``.

    """
    rows = await conn.fetch(
        "SELECT r.callout_id, r.volunteer_id, r.role, r.aed_id, a.address || CASE WHEN a.location <> '' THEN ' ' || "
        "a.location ELSE '' END AS aed_place, r.path_m, r.assigned_at, r.released_at, c.arrived_at "
        "FROM cardiac_roles r JOIN callouts c ON c.callout_id = r.callout_id LEFT JOIN aeds a ON a.aed_id = r.aed_id "
        "WHERE r.incident_id = $1 ORDER BY r.assigned_at, r.callout_id", incident_id)
    return [_row(r) for r in rows]


async def report(conn: asyncpg.Connection, incident_id: UUID) -> dict[str, Any]:
    """The incident's timeline and figures (see :func:`services.dispatch.domain.report.incident_figures`)."""
    inc = await conn.fetchrow("SELECT opened_at, status, outcome, closed_at, mode, kind, circle_policy FROM incidents "
                              "WHERE incident_id = $1", incident_id)
    if inc is None:
        raise NotFound(f"no incident {incident_id}")
    reqs = await conn.fetch("SELECT requirement_id, count, filled, level, filled_at FROM requirements "
                            "WHERE incident_id = $1 ORDER BY position", incident_id)
    calls = await conn.fetch("SELECT requirement_id, level, wave, state, requested_at, accepted_at FROM callouts "
                             "WHERE incident_id = $1", incident_id)
    msgs = await conn.fetch("SELECT message_id, channel, status FROM messages WHERE incident_id = $1", incident_id)
    events = await conn.fetch("SELECT at, kind, detail FROM timeline WHERE incident_id = $1 ORDER BY id", incident_id)
    figures = incident_figures(
        opened_at=inc["opened_at"],
        requirements=[RequirementFact(r["requirement_id"], r["count"], r["filled"], Level(r["level"]), r["filled_at"])
                      for r in reqs],
        callouts=[CallOutFact(c["requirement_id"], Level(c["level"]), c["wave"], CallOutState(c["state"]),
                              c["requested_at"], c["accepted_at"]) for c in calls],
        messages=[MessageFact(m["message_id"], m["channel"], m["status"]) for m in msgs],
    )
    figures["messages_by_status"] = dict(Counter(m["status"] for m in msgs))
    if inc["kind"] == CARDIAC_ARREST:
        figures["circle"] = await _circle(conn, incident_id, inc)
    return {
        "incident_id": str(incident_id), "status": inc["status"], "outcome": inc["outcome"], "mode": inc["mode"],
        "opened_at": _iso(inc["opened_at"]), "closed_at": _iso(inc["closed_at"]),
        "figures": figures, "timeline": [_row(e) for e in events],
    }


async def service_spells(
    conn: asyncpg.Connection, start: datetime, end: datetime, *, unit_code: str | None = None,
    volunteer_id: UUID | None = None,
) -> list[dict[str, Any]]:
    """The spells of service that started in [``start``, ``end``) (UTC), for a unit's people or one person.

    Returns:
        ``[{"callout_id", "incident_id", "title", "kind", "mode", "volunteer_id", "unit_code",
        "arrived_at", "released_at"}]`` (UTC datetimes; ``released_at`` None while on scene), oldest first.
        ``unit_code`` keeps the volunteers whose village lies inside it (6, 9 or 12 digits; a city by its
        4-digit prefix).

    """
    prefix = None if unit_code is None else unit_code[:4] if level_of(unit_code) is Level.CITY else unit_code
    rows = await conn.fetch(
        """SELECT c.callout_id, c.incident_id, i.title, i.kind, i.mode, c.volunteer_id, v.unit_code,
                  c.arrived_at, c.released_at
           FROM callouts c JOIN incidents i ON i.incident_id = c.incident_id
                JOIN volunteers v ON v.volunteer_id = c.volunteer_id
           WHERE c.arrived_at >= $1 AND c.arrived_at < $2
             AND ($3::uuid IS NULL OR c.volunteer_id = $3) AND ($4::text IS NULL OR v.unit_code LIKE $4 || '%')
           ORDER BY c.arrived_at, c.callout_id""",
        start, end, volunteer_id, prefix,
    )
    return [dict(r) for r in rows]
