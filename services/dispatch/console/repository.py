"""The console's reads: the live snapshot (board + responders) and the volunteer search for a manual add.

Times are UTC ISO 8601 (the page shows Asia/Shanghai); distances in metres; positions WGS84 degrees.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from .. import queries
from ..units import units

__all__ = ["responders", "search_volunteers", "snapshot"]

# a message's furthest status wins (a "sent" after its "delivered" does not undo the delivery)
_STATUS_RANK = "CASE status WHEN 'failed' THEN 3 WHEN 'delivered' THEN 2 ELSE 1 END"


async def responders(conn: asyncpg.Connection, incident_id: UUID) -> list[dict[str, Any]]:
    """Every call-out of the incident with the responder's name, unit and messages.

    Returns:
        ``[{"callout_id", "requirement_id", "volunteer_id", "team_id", "name", "unit_code", "unit_name",
        "lat", "lon", "distance_m", "state", "level", "wave", "reply_code", "eta_minutes", "accepted_at",
        "arrived_at", "cancel_reason", "manual", "requested_at", "messages": [{"kind", "channel", "status",
        "error_code", "fallback"}]}]`` ordered by wave, then distance.

    """
    rows = await conn.fetch(
        """SELECT c.callout_id::text, c.requirement_id::text, c.volunteer_id::text, c.team_id::text, c.state,
                  c.level, c.wave, c.reply_code, c.distance_m, c.eta_minutes, c.requested_at, c.accepted_at, c.arrived_at,
                  c.cancel_reason, c.manual, coalesce(t.name, v.display_name, '') AS name,
                  coalesce(t.unit_code, v.unit_code) AS unit_code, coalesce(v.lat, t.lat) AS lat,
                  coalesce(v.lon, t.lon) AS lon
           FROM callouts c LEFT JOIN volunteers v ON v.volunteer_id = c.volunteer_id
                LEFT JOIN teams t ON t.team_id = c.team_id
           WHERE c.incident_id = $1 ORDER BY c.wave, c.distance_m NULLS LAST, c.requested_at""",
        incident_id,
    )
    msgs = await conn.fetch(
        f"""SELECT DISTINCT ON (callout_id, message_id) callout_id::text, kind, channel, status, error_code, fallback
            FROM messages WHERE incident_id = $1
            ORDER BY callout_id, message_id, {_STATUS_RANK} DESC, occurred_at DESC""",
        incident_id,
    )
    by_callout: dict[str, list[dict[str, Any]]] = {}
    for m in msgs:
        by_callout.setdefault(m["callout_id"], []).append(
            {"kind": m["kind"], "channel": m["channel"], "status": m["status"], "error_code": m["error_code"],
             "fallback": m["fallback"]})
    u = units()
    place: dict[str, str] = {}  # a board's people come from a few units: name each once
    out = []
    for r in rows:
        d = dict(r)
        for k in ("requested_at", "accepted_at", "arrived_at"):
            if d[k] is not None:
                d[k] = d[k].isoformat()
        code = d["unit_code"]
        if code not in place:
            place[code] = u.place(code) if code in u.names else code
        d["unit_name"] = place[code]
        d["messages"] = by_callout.get(d["callout_id"], [])
        out.append(d)
    return out


#: The live board's timeline: the latest entries (a 1,700-person call-out has an entry per acceptance; every
#: frame carried and the page redrew all of them). The report (``GET /incidents/{id}/report``) has them all.
BOARD_TIMELINE = 200


async def snapshot(conn: asyncpg.Connection, incident_id: UUID) -> dict[str, Any]:
    """``{"board": queries.board(...), "responders": responders(...)}`` read in one snapshot transaction.

    The board's timeline is the latest :data:`BOARD_TIMELINE` entries.

    Raises:
        NotFound: no such incident.

    """
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        return {"board": await queries.board(conn, incident_id, timeline_limit=BOARD_TIMELINE),
                "responders": await responders(conn, incident_id)}


async def search_volunteers(conn: asyncpg.Connection, *, unit_prefix: str, text: str, skill: str | None,
                            limit: int = 20) -> list[dict[str, Any]]:
    """Volunteers on the roster projection inside ``unit_prefix`` matching ``text`` (name or unit name/code).

    Returns:
        ``[{"volunteer_id", "name", "unit_code", "unit_name", "skills", "active", "consent", "availability",
        "engaged_in"}]`` (``engaged_in``: the title of the open incident they are assigned in, or None),
        at most ``limit``; inactive, retired and unconsenting people are left out (a manual add refuses them).

    """
    u = units()
    text = text.strip()
    codes = [c for c, n in u.names.items() if text and text in n and c.startswith(unit_prefix)][:200]
    rows = await conn.fetch(
        """SELECT volunteer_id, display_name, unit_code, skills, active, consent, availability,
                  (SELECT i.title FROM engagements e JOIN incidents i ON i.incident_id = e.incident_id
                   WHERE e.volunteer_id = volunteers.volunteer_id) AS engaged_in
           FROM volunteers
           WHERE unit_code LIKE $1 || '%' AND active AND consent AND NOT retired
             AND ($2 = '' OR display_name LIKE '%' || $2 || '%' OR unit_code LIKE $2 || '%'
                  OR EXISTS (SELECT 1 FROM unnest($3::text[]) AS p WHERE unit_code LIKE p || '%'))
             AND ($4::text IS NULL OR $4 = ANY(skills))
           ORDER BY display_name, volunteer_id LIMIT $5""",
        unit_prefix, text, codes, skill, limit,
    )
    return [{"volunteer_id": str(r["volunteer_id"]), "name": r["display_name"], "unit_code": r["unit_code"],
             "unit_name": u.place(r["unit_code"]), "skills": list(r["skills"]), "active": r["active"],
             "consent": r["consent"], "availability": r["availability"], "engaged_in": r["engaged_in"]}
            for r in rows]
