"""PostgreSQL adapter of the roster: units, volunteers, teams and memberships (asyncpg).

Every function takes the connection of the caller's transaction, so state and outbox rows commit
together. Rows map to :mod:`services.roster.domain.model` records. Bulk writes use COPY.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID

import asyncpg

from services.roster.domain.model import Certificate, Team, Volunteer
from services.roster.domain.positions import CityBox
from services.roster.domain.units import Unit
from shared.events import Availability
from shared.vocabulary import Channel, Level, TeamType

__all__ = [
    "SearchFilter",
    "count_units",
    "insert_units",
    "load_units",
]

_V_COLS = (
    "id, revision, name, mobile, unit_code, lat, lon, position_approximate, skills, certificates, availability, unavailable_until, "
    "wechat_openid, wechat_subscribed, preferred_channel, consent, sms_consent, active, cardiac_alerts"
)
_V_SELECT = (
    f"SELECT {', '.join('v.' + c.strip() for c in _V_COLS.split(','))}, "
    "COALESCE((SELECT array_agg(m.team_id ORDER BY m.team_id) FROM team_members m JOIN teams t ON t.id = m.team_id "
    "AND t.active WHERE m.volunteer_id = v.id), '{}') AS team_ids FROM volunteers v"
)


# --------------------------------------------------------------------------- units


async def count_units(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM units"))


async def insert_units(conn: asyncpg.Connection, units: Sequence[Unit]) -> int:
    """Insert or update units (parents first); returns the number written."""
    await conn.execute("CREATE TEMP TABLE _units (LIKE units) ON COMMIT DROP")
    await conn.copy_records_to_table(
        "_units",
        records=[
            (u.code, u.name, u.level.value, u.parent_code, u.centre_lat, u.centre_lon, u.centre_datum, u.lat, u.lon)
            for u in units
        ],
        columns=["code", "name", "level", "parent_code", "centre_lat", "centre_lon", "centre_datum", "lat", "lon"],
    )
    # Parents first so the foreign key holds row by row.
    await conn.execute(
        """
        INSERT INTO units SELECT * FROM _units
        ORDER BY CASE level WHEN 'city' THEN 0 WHEN 'county' THEN 1 WHEN 'town' THEN 2 ELSE 3 END, code
        ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, level = EXCLUDED.level,
            parent_code = EXCLUDED.parent_code, centre_lat = EXCLUDED.centre_lat, centre_lon = EXCLUDED.centre_lon,
            centre_datum = EXCLUDED.centre_datum, lat = EXCLUDED.lat, lon = EXCLUDED.lon
        """
    )
    await conn.execute("DROP TABLE _units")
    return len(units)


async def load_units(conn: asyncpg.Connection) -> list[Unit]:
    rows = await conn.fetch(
        "SELECT code, name, level, parent_code, centre_lat, centre_lon, centre_datum, lat, lon FROM units"
    )
    return [
        Unit(r["code"], r["name"], Level(r["level"]), r["parent_code"], r["centre_lat"], r["centre_lon"],
             r["centre_datum"], r["lat"], r["lon"])
        for r in rows
    ]


# --------------------------------------------------------------------------- volunteers


def _volunteer(r: asyncpg.Record) -> Volunteer:
    return Volunteer(
        id=r["id"],
        revision=r["revision"],
        name=r["name"],
        mobile=r["mobile"],
        unit_code=r["unit_code"],
        lat=r["lat"],
        lon=r["lon"],
        position_approximate=r["position_approximate"],
        skills=tuple(r["skills"]),
        certificates=tuple(Certificate.from_json(c) for c in r["certificates"]),
        team_ids=tuple(r["team_ids"]),
        availability=Availability(r["availability"]),
        unavailable_until=r["unavailable_until"],
        wechat_openid=r["wechat_openid"],
        wechat_subscribed=r["wechat_subscribed"],
        preferred_channel=Channel(r["preferred_channel"]),
        consent=r["consent"],
        sms_consent=r["sms_consent"],
        active=r["active"],
        cardiac_alerts=r["cardiac_alerts"],
    )


SEARCH_LEVELS = (6, 9)  # county and town prefixes; villages are small enough for the general path


def search_rows(v: Volunteer) -> list[tuple[str, str, UUID]]:
    """Rows of ``volunteer_search`` for ``v`` (none when retired).

    ``(<skill>@<county code>)``, ``(<skill>@<town code>)`` for each skill, and ``*@<county code>``
    for unit-only searches of a county; each with the unit code and volunteer id (the page order).
    """
    if not v.active:
        return []
    code = v.unit_code
    rows = [(f"{s}@{code[:n]}", code, v.id) for s in dict.fromkeys(v.skills) for n in SEARCH_LEVELS]
    rows.append((f"*@{code[:6]}", code, v.id))
    return rows


def _record(v: Volunteer) -> tuple[Any, ...]:
    return (
        v.id, v.revision, v.name, v.mobile, v.unit_code, v.lat, v.lon, v.position_approximate, list(v.skills),
        [c.to_json() for c in v.certificates], v.availability.value, v.unavailable_until, v.wechat_openid,
        v.wechat_subscribed, v.preferred_channel.value, v.consent, v.sms_consent, v.active, v.cardiac_alerts,
    )


_V_COLUMNS = [c.strip() for c in _V_COLS.split(",")]
_S_COLUMNS = ["key", "unit_code", "volunteer_id"]


async def get_volunteer(conn: asyncpg.Connection, volunteer_id: UUID, *, for_update: bool = False) -> Volunteer | None:
    lock = " FOR UPDATE OF v" if for_update else ""
    r = await conn.fetchrow(f"{_V_SELECT} WHERE v.id = $1{lock}", volunteer_id)
    return _volunteer(r) if r else None


async def get_volunteers(conn: asyncpg.Connection, ids: Iterable[UUID]) -> list[Volunteer]:
    rows = await conn.fetch(f"{_V_SELECT} WHERE v.id = ANY($1::uuid[]) ORDER BY v.id", list(ids))
    return [_volunteer(r) for r in rows]


async def volunteers_by_mobile(conn: asyncpg.Connection, mobiles: Sequence[str]) -> dict[str, Volunteer]:
    """The volunteers (active or retired) with these mobiles, by mobile; bulk (one join for team ids)."""
    cols = ", ".join(f"v.{c}" for c in _V_COLUMNS)
    rows = await conn.fetch(
        f"""
        SELECT {cols}, COALESCE(t.team_ids, '{{}}') AS team_ids
        FROM volunteers v
        LEFT JOIN (SELECT m.volunteer_id, array_agg(m.team_id ORDER BY m.team_id) AS team_ids
                   FROM team_members m JOIN teams tt ON tt.id = m.team_id AND tt.active GROUP BY m.volunteer_id) t
               ON t.volunteer_id = v.id
        WHERE v.mobile = ANY($1::text[])
        """,
        list(mobiles),
    )
    return {r["mobile"]: _volunteer(r) for r in rows}


async def city_box(conn: asyncpg.Connection) -> CityBox | None:
    """The city's box (:meth:`services.roster.domain.positions.CityBox.of`) from the units' centres; None without any."""
    r = await conn.fetchrow("SELECT min(lat) AS a, max(lat) AS b, min(lon) AS c, max(lon) AS d, avg(lat) AS m "
                            "FROM units WHERE lat IS NOT NULL AND lon IS NOT NULL")
    if r is None or r["a"] is None:
        return None
    return CityBox.around(r["a"], r["b"], r["c"], r["d"], r["m"])


async def unit_centre(conn: asyncpg.Connection, code: str) -> tuple[float, float] | None:
    """WGS84 ``(lat, lon)`` of unit ``code``'s centre, else of its nearest ancestor's.

    As :func:`services.roster.domain.positions.unit_centre`; None when no unit on the way has one.
    """
    r = await conn.fetchrow(
        """
        WITH RECURSIVE up(code, parent_code, lat, lon, depth) AS (
            SELECT code, parent_code, lat, lon, 0 FROM units WHERE code = $1
            UNION ALL
            SELECT u.code, u.parent_code, u.lat, u.lon, up.depth + 1 FROM units u JOIN up ON u.code = up.parent_code
        )
        SELECT lat, lon FROM up WHERE lat IS NOT NULL AND lon IS NOT NULL ORDER BY depth LIMIT 1
        """,
        code,
    )
    return (r["lat"], r["lon"]) if r else None


async def insert_volunteers(conn: asyncpg.Connection, volunteers: Sequence[Volunteer]) -> None:
    """Insert new volunteers with COPY (their team memberships are written separately)."""
    await conn.copy_records_to_table("volunteers", records=[_record(v) for v in volunteers], columns=_V_COLUMNS)
    await _copy_search_rows(conn, volunteers)


async def _copy_search_rows(conn: asyncpg.Connection, volunteers: Sequence[Volunteer]) -> None:
    # Sorted in primary-key order, the b-tree inserts land next to each other (much faster in bulk).
    rows = sorted((r for v in volunteers for r in search_rows(v)), key=lambda r: (r[0], r[1], r[2].bytes))
    await conn.copy_records_to_table("volunteer_search", records=rows, columns=_S_COLUMNS)


async def update_volunteers(conn: asyncpg.Connection, volunteers: Sequence[Volunteer]) -> None:
    """Overwrite existing volunteers (matched by id) with the given records, via a COPY into a temp table."""
    if not volunteers:
        return
    await conn.execute("CREATE TEMP TABLE _vol (LIKE volunteers INCLUDING DEFAULTS) ON COMMIT DROP")
    await conn.copy_records_to_table("_vol", records=[_record(v) for v in volunteers], columns=_V_COLUMNS)
    sets = ", ".join(f"{c} = s.{c}" for c in _V_COLUMNS if c != "id")
    await conn.execute(f"UPDATE volunteers v SET {sets}, updated_at = now() FROM _vol s WHERE v.id = s.id")
    await conn.execute("DROP TABLE _vol")
    await conn.execute("DELETE FROM volunteer_search WHERE volunteer_id = ANY($1::uuid[])", [v.id for v in volunteers])
    await _copy_search_rows(conn, volunteers)


async def vacuum_search(conn: asyncpg.Connection) -> bool:
    """``VACUUM ANALYZE volunteer_search`` after a bulk write, so subtree counts are index-only again.

    Skipped (returns False) inside a transaction, where VACUUM cannot run; autovacuum catches up.
    """
    if conn.is_in_transaction():
        return False
    await conn.execute("VACUUM (ANALYZE) volunteer_search")
    await conn.execute("ANALYZE volunteers")
    return True


async def delete_volunteers(conn: asyncpg.Connection, ids: Sequence[UUID]) -> None:
    """Delete volunteers and their search rows (memberships must be gone already)."""
    await conn.execute("DELETE FROM volunteer_search WHERE volunteer_id = ANY($1::uuid[])", list(ids))
    await conn.execute("DELETE FROM volunteers WHERE id = ANY($1::uuid[])", list(ids))


async def add_memberships(conn: asyncpg.Connection, pairs: Iterable[tuple[UUID, UUID]]) -> None:
    """Add ``(team_id, volunteer_id)`` memberships (existing ones are kept)."""
    await conn.executemany(
        "INSERT INTO team_members (team_id, volunteer_id) VALUES ($1, $2) ON CONFLICT DO NOTHING", list(pairs)
    )


async def all_volunteer_ids(conn: asyncpg.Connection, *, active_only: bool = True) -> list[UUID]:
    where = " WHERE active" if active_only else ""
    return [r["id"] for r in await conn.fetch(f"SELECT id FROM volunteers{where} ORDER BY id")]


@dataclass(frozen=True)
class SearchFilter:
    """A volunteer search.

    Attributes:
        unit: code prefix of the unit subtree (``330603`` = all of 柯桥区), or None.
        skill: skill code, or None.
        certified_on: a certificate (of ``skill`` when given, else any) must be valid on this date.
        availability: ``available`` (an unavailability that has ended counts as available),
            ``unavailable`` or ``off_duty``, or None.
        active: active (True) or retired (False) volunteers.
        name: substring of the name.

    """

    unit: str | None = None
    skill: str | None = None
    certified_on: date | None = None
    availability: Availability | None = None
    active: bool = True
    name: str | None = None


def subtree_prefix(unit: str) -> str:
    """The code prefix of a unit's subtree: a city code ``330600`` covers ``3306…``, others themselves."""
    digits = "".join(c for c in unit if c.isdigit())
    if len(digits) == 6 and digits.endswith("00"):
        return digits[:4]
    return digits


def _where(f: SearchFilter) -> tuple[str, list[Any]]:
    clauses = ["v.active = $1"]
    args: list[Any] = [f.active]
    unit = subtree_prefix(f.unit) if f.unit else None
    if unit:
        args.append(unit + "%")
        clauses.append(f"v.unit_code LIKE ${len(args)}")
    if f.skill:
        args.append([f.skill])
        clauses.append(f"v.skills @> ${len(args)}::text[]")
    if f.certified_on:
        args.append(f.certified_on)
        d = f"${len(args)}::date"
        skill_test = ""
        if f.skill:
            args.append(f.skill)
            skill_test = f" AND c->>'kind' = ${len(args)}"
        clauses.append(
            f"EXISTS (SELECT 1 FROM jsonb_array_elements(v.certificates) c WHERE "
            f"(c->>'expires_on' IS NULL OR (c->>'expires_on')::date >= {d}) "
            f"AND (c->>'issued_on' IS NULL OR (c->>'issued_on')::date <= {d}){skill_test})"
        )
    if f.availability is Availability.AVAILABLE:
        clauses.append(
            "(v.availability = 'available' OR (v.availability = 'unavailable' AND v.unavailable_until <= now()))"
        )
    elif f.availability is Availability.UNAVAILABLE:
        clauses.append("(v.availability = 'unavailable' AND (v.unavailable_until IS NULL OR v.unavailable_until > now()))")
    elif f.availability is Availability.OFF_DUTY:
        clauses.append("v.availability = 'off_duty'")
    if f.name:
        args.append("%" + f.name.replace("%", "") + "%")
        clauses.append(f"v.name LIKE ${len(args)}")
    return " AND ".join(clauses), args


async def search_volunteers(
    conn: asyncpg.Connection, f: SearchFilter, *, page: int, page_size: int
) -> tuple[list[Volunteer], int]:
    """One page of volunteers matching ``f``, ordered by unit code then id, and the total count.

    Fast path (active volunteers of a county, or of a town with a skill, optionally with a skill,
    nothing else): an index-only range scan of ``volunteer_search`` for the page and an index-only count.
    Otherwise one scan of ``volunteers`` gives the page and the total (a window count). Team ids
    are gathered for the page's rows only.
    """
    unit = subtree_prefix(f.unit) if f.unit else None
    if (f.active and unit and (len(unit) == 6 or (len(unit) == 9 and f.skill)) and f.certified_on is None
            and f.availability is None and not f.name):
        key = f"{f.skill or '*'}@{unit}"
        total = int(await conn.fetchval("SELECT count(*) FROM volunteer_search WHERE key = $1", key))
        ids = [r["volunteer_id"] for r in await conn.fetch(
            "SELECT volunteer_id FROM volunteer_search WHERE key = $1 ORDER BY unit_code, volunteer_id "
            "LIMIT $2 OFFSET $3", key, page_size, (page - 1) * page_size)]
        found = {v.id: v for v in await get_volunteers(conn, ids)}
        return [found[i] for i in ids if i in found], total
    where, args = _where(f)
    n = len(args)
    cols = ", ".join(f"v.{c}" for c in _V_COLUMNS)
    rows = await conn.fetch(
        f"""
        WITH page AS (
            SELECT {cols}, count(*) OVER () AS total FROM volunteers v WHERE {where}
            ORDER BY v.unit_code, v.id LIMIT ${n + 1} OFFSET ${n + 2}
        )
        SELECT p.*, COALESCE((SELECT array_agg(m.team_id ORDER BY m.team_id) FROM team_members m
                              JOIN teams t ON t.id = m.team_id AND t.active WHERE m.volunteer_id = p.id), '{{}}')
               AS team_ids
        FROM page p ORDER BY p.unit_code, p.id
        """,
        *args, page_size, (page - 1) * page_size,
    )
    if rows:
        total = int(rows[0]["total"])
    elif page == 1:
        total = 0
    else:  # past the last page: count separately
        total = int(await conn.fetchval(f"SELECT count(*) FROM volunteers v WHERE {where}", *args))
    return [_volunteer(r) for r in rows], total


async def counts_by(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Active volunteers by county and skill (``county, county_name, skill, n``; skill None = all)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """
        SELECT left(v.unit_code, 6) AS county, u.name AS county_name,
               CASE WHEN GROUPING(s.skill) = 1 THEN NULL ELSE coalesce(s.skill, '(none)') END AS skill,
               count(DISTINCT v.id) AS n
        FROM volunteers v JOIN units u ON u.code = left(v.unit_code, 6)
        LEFT JOIN LATERAL unnest(v.skills) AS s(skill) ON true
        WHERE v.active
        GROUP BY GROUPING SETS ((left(v.unit_code, 6), u.name, s.skill), (left(v.unit_code, 6), u.name))
        ORDER BY county, skill NULLS FIRST
        """
    )
    return rows


# --------------------------------------------------------------------------- teams


def _team(r: asyncpg.Record) -> Team:
    return Team(
        id=r["id"], revision=r["revision"], name=r["name"], team_type=TeamType(r["team_type"]),
        unit_code=r["unit_code"], leader_id=r["leader_id"], member_ids=tuple(r["member_ids"]),
        lat=r["lat"], lon=r["lon"], active=r["active"],
    )


_T_SELECT = (
    "SELECT t.id, t.revision, t.name, t.team_type, t.unit_code, t.leader_id, t.lat, t.lon, t.active, "
    "COALESCE((SELECT array_agg(m.volunteer_id ORDER BY m.volunteer_id) FROM team_members m "
    "WHERE m.team_id = t.id), '{}') AS member_ids FROM teams t"
)


async def get_team(conn: asyncpg.Connection, team_id: UUID, *, for_update: bool = False) -> Team | None:
    lock = " FOR UPDATE OF t" if for_update else ""
    r = await conn.fetchrow(f"{_T_SELECT} WHERE t.id = $1{lock}", team_id)
    return _team(r) if r else None


async def get_teams(conn: asyncpg.Connection, ids: Iterable[UUID]) -> list[Team]:
    return [_team(r) for r in await conn.fetch(f"{_T_SELECT} WHERE t.id = ANY($1::uuid[]) ORDER BY t.id", list(ids))]


async def list_teams(
    conn: asyncpg.Connection, *, unit: str | None, team_type: TeamType | None, active: bool, page: int, page_size: int
) -> tuple[list[Team], int]:
    clauses: list[str] = ["t.active = $1"]
    args: list[Any] = [active]
    if unit:
        args.append(subtree_prefix(unit) + "%")
        clauses.append(f"t.unit_code LIKE ${len(args)}")
    if team_type:
        args.append(team_type.value)
        clauses.append(f"t.team_type = ${len(args)}")
    where = " AND ".join(clauses)
    total = await conn.fetchval(f"SELECT count(*) FROM teams t WHERE {where}", *args)
    n = len(args)
    rows = await conn.fetch(
        f"{_T_SELECT} WHERE {where} ORDER BY t.unit_code, t.name LIMIT ${n + 1} OFFSET ${n + 2}",
        *args, page_size, (page - 1) * page_size,
    )
    return [_team(r) for r in rows], int(total)


async def active_team_names(conn: asyncpg.Connection) -> dict[str, UUID]:
    return {r["name"]: r["id"] for r in await conn.fetch("SELECT id, name FROM teams WHERE active")}


async def insert_teams(conn: asyncpg.Connection, teams: Sequence[Team]) -> None:
    await conn.copy_records_to_table(
        "teams",
        records=[(t.id, t.revision, t.name, t.team_type.value, t.unit_code, t.leader_id, t.lat, t.lon, t.active)
                 for t in teams],
        columns=["id", "revision", "name", "team_type", "unit_code", "leader_id", "lat", "lon", "active"],
    )
    await conn.copy_records_to_table(
        "team_members", records=[(t.id, m) for t in teams for m in t.member_ids], columns=["team_id", "volunteer_id"]
    )


async def save_team(conn: asyncpg.Connection, t: Team) -> None:
    """Overwrite an existing team and replace its members."""
    await conn.execute(
        "UPDATE teams SET revision=$2, name=$3, team_type=$4, unit_code=$5, leader_id=$6, lat=$7, lon=$8, "
        "active=$9, updated_at=now() WHERE id=$1",
        t.id, t.revision, t.name, t.team_type.value, t.unit_code, t.leader_id, t.lat, t.lon, t.active,
    )
    await conn.execute("DELETE FROM team_members WHERE team_id = $1 AND NOT (volunteer_id = ANY($2::uuid[]))",
                       t.id, list(t.member_ids))
    await add_memberships(conn, [(t.id, m) for m in t.member_ids])


async def all_team_ids(conn: asyncpg.Connection, *, active_only: bool = True) -> list[UUID]:
    where = " WHERE active" if active_only else ""
    return [r["id"] for r in await conn.fetch(f"SELECT id FROM teams{where} ORDER BY id")]
