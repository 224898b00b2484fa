"""The roster projection in dispatch's database: upserts from roster's snapshots, and candidate loading.

Snapshots carry a ``revision``; an upsert only replaces a row with a lower revision, so a late,
older snapshot (or a redelivery) changes nothing. A tombstone (retirement) marks the row
``retired`` and inactive but keeps its revision, so an older snapshot arriving after it cannot
bring the volunteer back; a newer one (re-registration) can.

Candidate loading pre-filters in SQL (unit prefix, skill, active, consented, not retired, not yet
called in the incident) so that the pure selection (:mod:`services.dispatch.domain.selection`)
ranks a few thousand rows rather than the whole roster; the pure function re-checks every rule.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from shared.consumer import Received, Tombstone
from shared.events import AedStatus, AedUpdated, Availability, TeamUpdated, VolunteerProfileUpdated
from shared.logging import get_logger
from shared.vocabulary import Level, TeamType, skill_by_code

from ..domain.cardiac import AedSite
from ..domain.model import Certificate, TeamCandidate, VolunteerCandidate
from ..domain.selection import SHANGHAI

__all__ = [
    "FAIRNESS_WINDOW",
    "apply_aed",
    "apply_profile",
    "apply_team",
    "called_in_incident",
    "load_aeds",
    "load_team_candidates",
    "opted_out_of_cardiac",
    "load_volunteer_candidates",
    "unit_prefix",
    "upsert_profile",
]

log = get_logger(__name__)

#: Call-outs within this window count for fairness ranking.
FAIRNESS_WINDOW = timedelta(days=30)


def unit_prefix(unit: str, level: Level) -> str:
    """The code prefix of everything inside ``unit`` (the city by its first 4 digits)."""
    return unit[:4] if level is Level.CITY else unit


async def upsert_profile(conn: asyncpg.Connection, p: VolunteerProfileUpdated) -> bool:
    """Store a profile snapshot unless an equal or newer revision is stored; True when stored."""
    certs = [
        {"skill": c.skill, "issued_on": c.issued_on and c.issued_on.isoformat(),
         "expires_on": c.expires_on and c.expires_on.isoformat()}
        for c in p.certificates
    ]
    stored = await conn.fetchval(
        """
        INSERT INTO volunteers (volunteer_id, revision, display_name, unit_code, lat, lon, skills, certificates,
                                team_ids, availability, unavailable_until, consent, active, retired, updated_at,
                                cardiac_alerts)
        VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,false,now(),$14)
        ON CONFLICT (volunteer_id) DO UPDATE SET
            revision=EXCLUDED.revision, display_name=EXCLUDED.display_name, unit_code=EXCLUDED.unit_code,
            lat=EXCLUDED.lat, lon=EXCLUDED.lon, skills=EXCLUDED.skills, certificates=EXCLUDED.certificates,
            team_ids=EXCLUDED.team_ids, availability=EXCLUDED.availability,
            unavailable_until=EXCLUDED.unavailable_until, consent=EXCLUDED.consent, active=EXCLUDED.active,
            retired=false, updated_at=now(), cardiac_alerts=EXCLUDED.cardiac_alerts
        WHERE volunteers.revision < EXCLUDED.revision
        RETURNING 1
        """,
        p.volunteer_id, p.revision, p.display_name, p.unit_code, p.lat, p.lon, list(p.skills), certs,
        list(p.team_ids), p.availability.value, p.unavailable_until, p.consent, p.active, p.cardiac_alerts,
    )
    return bool(stored)


async def apply_profile(conn: asyncpg.Connection, item: Received) -> None:
    """Consumer handler for ``roster.volunteer-profile.v1``: upsert a snapshot, retire on a tombstone."""
    if isinstance(item, Tombstone):
        await conn.execute(
            "UPDATE volunteers SET active=false, retired=true, updated_at=now() WHERE volunteer_id=$1",
            UUID(item.key),
        )
        log.info("projection.volunteer_retired", volunteer_id=item.key)
        return
    if not isinstance(item, VolunteerProfileUpdated):
        log.warning("projection.unexpected_event", event_type=item.event_type, event_id=str(item.event_id))
        return
    if not await upsert_profile(conn, item):
        log.info("projection.stale_snapshot", volunteer_id=str(item.volunteer_id), revision=item.revision)


async def apply_team(conn: asyncpg.Connection, item: Received) -> None:
    """Consumer handler for ``roster.team.v1``: upsert a team snapshot, retire it on a tombstone."""
    if isinstance(item, Tombstone):
        await conn.execute(
            "UPDATE teams SET active=false, retired=true, updated_at=now() WHERE team_id=$1", UUID(item.key)
        )
        return
    if not isinstance(item, TeamUpdated):
        log.warning("projection.unexpected_event", event_type=item.event_type, event_id=str(item.event_id))
        return
    await conn.execute(
        """
        INSERT INTO teams (team_id, revision, name, team_type, unit_code, leader_id, member_ids, lat, lon, active,
                           retired, updated_at)
        VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,false,now())
        ON CONFLICT (team_id) DO UPDATE SET
            revision=EXCLUDED.revision, name=EXCLUDED.name, team_type=EXCLUDED.team_type,
            unit_code=EXCLUDED.unit_code, leader_id=EXCLUDED.leader_id, member_ids=EXCLUDED.member_ids,
            lat=EXCLUDED.lat, lon=EXCLUDED.lon, active=EXCLUDED.active, retired=false, updated_at=now()
        WHERE teams.revision < EXCLUDED.revision
        """,
        item.team_id, item.revision, item.name, item.team_type.value, item.unit_code, item.leader_id,
        list(item.member_ids), item.lat, item.lon, item.active,
    )


def _certs(raw: list[dict[str, Any]]) -> tuple[Certificate, ...]:
    return tuple(
        Certificate(
            skill=c["skill"],
            issued_on=date.fromisoformat(c["issued_on"]) if c.get("issued_on") else None,
            expires_on=date.fromisoformat(c["expires_on"]) if c.get("expires_on") else None,
        )
        for c in raw
    )


def _volunteer(r: asyncpg.Record, prefix: str = "") -> VolunteerCandidate:
    return VolunteerCandidate(
        volunteer_id=r[f"{prefix}volunteer_id"],
        unit_code=r[f"{prefix}unit_code"],
        lat=r[f"{prefix}lat"],
        lon=r[f"{prefix}lon"],
        skills=frozenset(r[f"{prefix}skills"]),
        certificates=_certs(r[f"{prefix}certificates"]),
        availability=Availability(r[f"{prefix}availability"]),
        unavailable_until=r[f"{prefix}unavailable_until"],
        consent=r[f"{prefix}consent"],
        active=r[f"{prefix}active"] and not r[f"{prefix}retired"],
        recent_callouts=r[f"{prefix}recent"],
        engaged=r[f"{prefix}engaged"],
        display_name=r[f"{prefix}display_name"],
    )


_VOLUNTEER_COLUMNS = """
    v.volunteer_id, v.unit_code, v.lat, v.lon, v.skills, v.certificates, v.availability, v.unavailable_until,
    v.consent, v.active, v.retired, v.display_name,
    (SELECT count(*) FROM callouts c WHERE c.volunteer_id = v.volunteer_id AND c.requested_at > $3)::int AS recent,
    EXISTS (SELECT 1 FROM engagements e WHERE e.volunteer_id = v.volunteer_id AND e.incident_id <> $4) AS engaged
"""


#: Great-circle distance in metres in SQL: the haversine formula with the mean Earth radius that
#: :func:`shared.divisions.distance_m` uses (6,371,008.8 m); NULL positions sort last (Infinity).
_SQL_DISTANCE = """coalesce(2 * 6371008.8 * asin(sqrt(
        power(sin(radians(v.lat - $5) / 2), 2)
        + cos(radians($5)) * cos(radians(v.lat)) * power(sin(radians(v.lon - $6) / 2), 2))), 'Infinity'::float8)"""


async def load_volunteer_candidates(
    conn: asyncpg.Connection, *, skill: str, prefix: str, incident_id: UUID, at: datetime,
    lat: float = 0.0, lon: float = 0.0, limit: int | None = None,
) -> list[VolunteerCandidate]:
    """Volunteers who may be eligible for ``skill`` inside the unit ``prefix``: a superset for the pure selection.

    The SQL applies the same rules as :func:`services.dispatch.domain.selection.is_eligible`, each a
    little looser where in doubt (a certificate counts when its skill's latest expiry, ``cert_until``
    kept by a trigger, is on or after the day before the incident's Shanghai date; issue dates are
    left to the pure function), so it never drops someone the pure function would pick. With ``limit`` it keeps
    only the nearest candidates: everyone at or closer than the ``limit + 50``-th one (ties at the
    cut are all kept, so fairness can still decide among them); the pure function then ranks
    exactly. Without ``limit`` every candidate of the unit is returned. Each candidate carries only its
    certificates of ``skill`` (the only ones selection reads) and its call-outs of the last
    :data:`FAIRNESS_WINDOW` (30 days before ``at``) for fairness.

    Args:
        conn: a connection (inside the wave's transaction).
        skill: the skill code.
        prefix: the unit's code prefix (:func:`unit_prefix`).
        incident_id: the incident (its callees are left out; so are people assigned elsewhere).
        at: the incident's time, UTC.
        lat: the incident's latitude, WGS84 degrees (for the nearest-first cut).
        lon: the incident's longitude, WGS84 degrees.
        limit: the wave size, or None for all.

    """
    needs_cert = skill_by_code(skill).needs_certificate
    day = ((at.astimezone(SHANGHAI)).date() - timedelta(days=1)).isoformat()
    # One pass over the unit's people with the skill: the rows the filter keeps carry every column the
    # selection reads (no second visit of the table), with only the certificates of ``skill`` (the only
    # ones selection reads). ``engaged`` is false for every row: the filter already left out whoever is
    # assigned or arrived in another open incident (same snapshot).
    rows = await conn.fetch(
        f"""
        WITH c AS MATERIALIZED (
            SELECT v.volunteer_id, v.unit_code, v.lat, v.lon, v.skills, v.availability, v.unavailable_until,
                   v.consent, v.active, v.retired, v.display_name, v.cert_until ? $2::text AS certified,
                   v.certificates, {_SQL_DISTANCE} AS dist
            FROM volunteers v
            WHERE v.active AND v.consent AND NOT v.retired
              AND v.unit_code LIKE $1 || '%' AND v.skills @> ARRAY[$2::text]
              AND (v.availability = 'available' OR (v.availability = 'unavailable' AND v.unavailable_until <= $3))
              AND (NOT $7 OR (v.cert_until ? $2::text
                              AND coalesce(v.cert_until->>$2::text, '9999-12-31') >= $8::text))
              AND NOT EXISTS (SELECT 1 FROM callouts c WHERE c.incident_id = $4 AND c.volunteer_id = v.volunteer_id)
              AND NOT EXISTS (SELECT 1 FROM engagements e  -- assigned elsewhere, alone or with their team
                              WHERE e.volunteer_id = v.volunteer_id AND e.incident_id <> $4)
        ),
        cut AS (SELECT dist FROM c ORDER BY dist OFFSET greatest(coalesce($9::int, 0) - 1, 0) LIMIT 1)
        SELECT c.volunteer_id, c.unit_code, c.lat, c.lon, c.skills,
               CASE WHEN c.certified THEN jsonb_path_query_array(c.certificates, '$[*] ? (@.skill == $s)',
                                                                  jsonb_build_object('s', $2::text)) END,
               c.availability,
               c.unavailable_until, c.consent, c.active, c.retired, c.display_name,
               (SELECT count(*) FROM callouts x WHERE x.volunteer_id = c.volunteer_id AND x.requested_at > $10)::int
                   AS recent
        FROM c
        WHERE $9::int IS NULL OR c.dist <= coalesce((SELECT dist FROM cut), 'Infinity'::float8)
        """,
        prefix, skill, at, incident_id, lat, lon, needs_cert, day, None if limit is None else limit + 50,
        at - FAIRNESS_WINDOW,
    )
    available = {a.value: a for a in Availability}
    return [
        VolunteerCandidate(
            volunteer_id=r[0], unit_code=r[1], lat=r[2], lon=r[3], skills=frozenset(r[4]),
            certificates=_certs(r[5]) if r[5] else (), availability=available[r[6]], unavailable_until=r[7],
            consent=r[8], active=r[9] and not r[10], recent_callouts=r[12], engaged=False, display_name=r[11],
        )
        for r in rows
    ]


async def load_team_candidates(
    conn: asyncpg.Connection, *, team_type: TeamType, prefix: str, incident_id: UUID, at: datetime
) -> list[TeamCandidate]:
    """Active teams of ``team_type`` inside the unit ``prefix``, with their leader as a volunteer candidate."""
    rows = await conn.fetch(
        f"""
        SELECT t.team_id, t.team_type, t.unit_code AS team_unit, t.name, t.lat AS team_lat, t.lon AS team_lon,
               t.active AS team_active,
               (SELECT count(*) FROM callouts c WHERE c.team_id = t.team_id AND c.requested_at > $3)::int
                   AS team_recent,
               EXISTS (SELECT 1 FROM callouts c JOIN incidents i ON i.incident_id = c.incident_id
                       WHERE c.team_id = t.team_id AND c.state IN ('assigned', 'arrived')
                         AND i.status = 'open' AND c.incident_id <> $4) AS team_engaged,
               {_VOLUNTEER_COLUMNS}
        FROM teams t LEFT JOIN volunteers v ON v.volunteer_id = t.leader_id
        WHERE t.active AND NOT t.retired AND t.team_type = $2 AND t.unit_code LIKE $1 || '%'
        """,
        prefix, team_type.value, at - FAIRNESS_WINDOW, incident_id,
    )
    out = []
    for r in rows:
        leader = _volunteer(r) if r["volunteer_id"] is not None else None
        out.append(
            TeamCandidate(
                team_id=r["team_id"], team_type=TeamType(r["team_type"]), unit_code=r["team_unit"], leader=leader,
                lat=r["team_lat"], lon=r["team_lon"], active=r["team_active"], recent_callouts=r["team_recent"],
                engaged=r["team_engaged"], name=r["name"],
            )
        )
    return out


async def called_in_incident(conn: asyncpg.Connection, incident_id: UUID) -> set[UUID]:
    """Volunteers (team leaders included) already called in the incident."""
    rows = await conn.fetch("SELECT volunteer_id FROM callouts WHERE incident_id = $1", incident_id)
    return {r["volunteer_id"] for r in rows}


async def apply_aed(conn: asyncpg.Connection, item: Received) -> None:
    """Consumer handler for ``roster.aed.v1``: upsert an AED snapshot (newer revision wins), retire on a tombstone."""
    if isinstance(item, Tombstone):
        await conn.execute("UPDATE aeds SET retired = true, updated_at = now() WHERE aed_id = $1", UUID(item.key))
        return
    if not isinstance(item, AedUpdated):
        log.warning("projection.unexpected_event", event_type=item.event_type, event_id=str(item.event_id))
        return
    place = item.address + (f" {item.location}" if item.location else "")
    await conn.execute(
        """
        INSERT INTO aeds (aed_id, revision, lat, lon, address, location, unit_code, owner, access_hours, status,
                          pads_expire_on, battery_expire_on, retired, updated_at)
        VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,false,now())
        ON CONFLICT (aed_id) DO UPDATE SET
            revision=EXCLUDED.revision, lat=EXCLUDED.lat, lon=EXCLUDED.lon, address=EXCLUDED.address,
            location=EXCLUDED.location, unit_code=EXCLUDED.unit_code, owner=EXCLUDED.owner,
            access_hours=EXCLUDED.access_hours, status=EXCLUDED.status, pads_expire_on=EXCLUDED.pads_expire_on,
            battery_expire_on=EXCLUDED.battery_expire_on, retired=false, updated_at=now()
        WHERE aeds.revision < EXCLUDED.revision
        """,
        item.aed_id, item.revision, item.lat, item.lon, item.address, item.location, item.unit_code, item.owner,
        item.access_hours, item.status.value, item.pads_expire_on, item.battery_expire_on,
    )
    log.info("projection.aed_updated", aed_id=str(item.aed_id), revision=item.revision, place=place)


#: AEDs farther than this from the patient are not loaded for the roles (metres; a run is at most ~2 km).
AED_SEARCH_M = 2500.0


async def load_aeds(conn: asyncpg.Connection, *, lat: float, lon: float, within_m: float = AED_SEARCH_M) -> list[AedSite]:
    """The projection's AEDs (not retired) within ``within_m`` metres of (``lat``, ``lon``), WGS84.

    Status, expiry and access hours are not filtered here: :meth:`AedSite.usable_at` judges them.
    """
    dist = _SQL_DISTANCE.replace("v.lat", "a.lat").replace("v.lon", "a.lon").replace("$5", "$1").replace("$6", "$2")
    rows = await conn.fetch(
        f"SELECT aed_id, lat, lon, address, location, access_hours, status, pads_expire_on, battery_expire_on "
        f"FROM aeds a WHERE NOT retired AND {dist} <= $3",
        lat, lon, within_m,
    )
    return [AedSite(aed_id=r["aed_id"], lat=r["lat"], lon=r["lon"],
                    place=r["address"] + (f" {r['location']}" if r["location"] else ""), hours=r["access_hours"],
                    status=AedStatus(r["status"]), pads_expire_on=r["pads_expire_on"],
                    battery_expire_on=r["battery_expire_on"]) for r in rows]


async def opted_out_of_cardiac(conn: asyncpg.Connection, volunteer_ids: list[UUID]) -> set[UUID]:
    """Of ``volunteer_ids``, those who opted out of cardiac-arrest alerts."""
    rows = await conn.fetch(
        "SELECT volunteer_id FROM volunteers WHERE volunteer_id = ANY($1::uuid[]) AND NOT cardiac_alerts", volunteer_ids)
    return {r["volunteer_id"] for r in rows}
