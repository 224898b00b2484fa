"""The roster's commands: each changes state and writes its events to the outbox in one transaction.

Callers (HTTP handlers, the CLI, consumers) pass a connection; every command opens a transaction
on it (a nested one becomes a savepoint), so a change and its events commit together or not at all.

Errors (all :class:`RosterError`)::

    RosterError
    ├── NotFound          the volunteer or team does not exist           (HTTP 404)
    ├── Conflict          the mobile, openid or active team name is taken, (HTTP 409)
    │                     the volunteer to restore is active
    ├── InvalidReference  a unit, team or volunteer named does not fit    (HTTP 422; ``field`` names it)
    └── Forbidden         outside the administrator's unit scope          (HTTP 403)

Every change takes the ``actor`` (:class:`services.roster.admins.Admin`; :data:`~services.roster.admins.SYSTEM`
for the CLI and consumers), checks its unit scope, and appends an ``audit_log`` row in its transaction.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any
from uuid import UUID

import asyncpg

from services.roster.adapters import aeds as aed_repo
from services.roster.adapters import repository as repo
from services.roster.admins import SYSTEM, Admin, audit
from services.roster.domain.aeds import Aed, AedImportPlan, AedRow, aed_event, validate_aed_sheet
from services.roster.domain.importing import ImportPlan, ImportReport, RowError, merge_into
from services.roster.domain.model import Team, Volunteer, contact_event, profile_event, team_event
from services.roster.domain.positions import placed
from services.roster.domain.units import Unit, UnitDirectory
from shared import outbox
from shared.events import Event, TeamUpdated
from shared.logging import get_logger
from shared.privacy import mask_openid, mask_text
from shared.topics import ROSTER_AED, ROSTER_CONTACT, ROSTER_PROFILE, ROSTER_TEAM, TopicSpec
from shared.vocabulary import SKILLS, Level

__all__ = [
    "Conflict",
    "Forbidden",
    "InvalidReference",
    "NotFound",
    "RosterError",
    "add_aed",
    "create_team",
    "create_volunteer",
    "import_aed_file",
    "import_aeds",
    "import_register",
    "load_divisions",
    "republish",
    "recent_retirements",
    "restore_team",
    "restore_volunteer",
    "retire_team",
    "retire_volunteer",
    "update_team",
    "update_volunteer",
]

log = get_logger(__name__)
BULK_ROWS = 1000  # a bulk write this large is followed by VACUUM ANALYZE of the search table
_SKILL_CODES = {s.code for s in SKILLS}


class RosterError(Exception):
    """Base of the roster's command errors."""


class NotFound(RosterError):
    pass


class Conflict(RosterError):
    pass


class Forbidden(RosterError):
    """The unit lies outside the acting administrator's scope; ``actor`` is who tried."""

    def __init__(self, message: str, actor: Admin | None = None) -> None:
        super().__init__(message)
        self.actor = actor


def _require_scope(actor: Admin, unit_code: str) -> None:
    if not actor.covers(unit_code):
        raise Forbidden(f"{actor.name} ({actor.role} of {actor.unit_code}) may not change unit {unit_code}", actor)


_AUDITED = ("name", "mobile", "unit_code", "lat", "lon", "skills", "availability", "wechat_openid",
            "preferred_channel", "consent", "sms_consent", "active", "cardiac_alerts")


def _snapshot(v: Volunteer, fields: Iterable[str] = _AUDITED) -> dict[str, Any]:
    out = {}
    for f in fields:
        x = getattr(v, f)
        out[f] = list(x) if isinstance(x, tuple) else (x.value if hasattr(x, "value") else x)
    return out


def _team_snapshot(t: Team) -> dict[str, Any]:
    return {"name": t.name, "team_type": t.team_type.value, "unit_code": t.unit_code, "leader_id": t.leader_id,
            "member_ids": list(t.member_ids), "active": t.active}


class InvalidReference(RosterError):
    """A value that names something that does not exist or does not fit; ``field`` is its path."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def volunteer_events(v: Volunteer) -> list[tuple[TopicSpec, str, Event]]:
    """The outbox items of a volunteer's snapshot: profile and contact, keyed by volunteer id."""
    key = str(v.id)
    return [(ROSTER_PROFILE, key, profile_event(v)), (ROSTER_CONTACT, key, contact_event(v))]


async def _tombstone_volunteer(conn: asyncpg.Connection, volunteer_id: UUID) -> None:
    for topic, etype in ((ROSTER_PROFILE, "VolunteerProfileUpdated"), (ROSTER_CONTACT, "VolunteerContactUpdated")):
        await outbox.add_tombstone(conn, topic, str(volunteer_id), event_id=uuid.uuid4(), event_type=etype,
                                   producer="roster")


# --------------------------------------------------------------------------- units


async def load_divisions(conn: asyncpg.Connection, units: Sequence[Unit]) -> int:
    """Insert or update the organisation units (from :func:`services.roster.domain.units.parse_divisions`)."""
    async with conn.transaction():
        n = await repo.insert_units(conn, units)
    log.info("roster.units_loaded", count=n)
    return n


async def _check_unit(conn: asyncpg.Connection, code: str, *, field: str, village: bool) -> None:
    level = await conn.fetchval("SELECT level FROM units WHERE code = $1", code)
    if level is None:
        raise InvalidReference(field, f"no unit with code {code}")
    if village and level != Level.VILLAGE.value:
        raise InvalidReference(field, f"{code} is a {level}; a volunteer's home unit is a village/community")


async def _check_point(conn: asyncpg.Connection, lat: float | None, lon: float | None) -> None:
    """Refuse a point outside the city's box (:class:`services.roster.domain.positions.CityBox`), as imports do."""
    if lat is None or lon is None:
        return
    box = await repo.city_box(conn)
    if box is not None and not box.contains(lat, lon):
        raise InvalidReference("lon", f"point ({lat}, {lon}) is outside the city (latitude and longitude swapped "
                                      "or mistyped?)")


async def _check_contacts(conn: asyncpg.Connection, v: Volunteer, *, old: Volunteer | None = None) -> None:
    """Refuse a mobile or WeChat openid another volunteer holds, naming that volunteer (409).

    The mobile is unique among all volunteers (retired ones too); the openid among active volunteers
    (constraints ``volunteers_mobile_key`` and ``volunteers_active_openid``).
    """
    if old is None or v.mobile != old.mobile:
        holder = await conn.fetchval("SELECT id FROM volunteers WHERE mobile = $1 AND id <> $2", v.mobile, v.id)
        if holder is not None:
            raise Conflict(f"mobile {mask_text(v.mobile)} already belongs to volunteer {holder}")
    if v.wechat_openid and v.active and (old is None or v.wechat_openid != old.wechat_openid or not old.active):
        holder = await conn.fetchval("SELECT id FROM volunteers WHERE wechat_openid = $1 AND active AND id <> $2",
                                     v.wechat_openid, v.id)
        if holder is not None:
            raise Conflict(f"WeChat openid {mask_openid(v.wechat_openid)} already belongs to volunteer {holder}")


def _check_skills(v: Volunteer) -> None:
    for i, s in enumerate(v.skills):
        if s not in _SKILL_CODES:
            raise InvalidReference(f"skills.{i}", f"unknown skill {s!r}")
    for i, c in enumerate(v.certificates):
        if c.kind not in _SKILL_CODES:
            raise InvalidReference(f"certificates.{i}.kind", f"unknown skill {c.kind!r}")


# --------------------------------------------------------------------------- volunteers


async def create_volunteer(conn: asyncpg.Connection, v: Volunteer, *, actor: Admin = SYSTEM) -> Volunteer:
    """Add a volunteer (revision 1) and publish its profile and contact.

    Raises:
        Conflict: the mobile belongs to another volunteer.
        InvalidReference: unknown unit (or not a village), unknown skill.
        Forbidden: the unit is outside ``actor``'s scope.

    """
    v = replace(v, revision=1, team_ids=(), position_approximate=False)
    _check_skills(v)
    _require_scope(actor, v.unit_code)
    async with conn.transaction():
        await _check_unit(conn, v.unit_code, field="unit_code", village=True)
        await _check_point(conn, v.lat, v.lon)
        v = placed(v, await repo.unit_centre(conn, v.unit_code))
        await _check_contacts(conn, v)
        await repo.insert_volunteers(conn, [v])
        await outbox.add_many(conn, volunteer_events(v))
        await audit(conn, actor, "volunteer.create", str(v.id), None, _snapshot(v))
    log.info("roster.volunteer_created", volunteer_id=str(v.id), unit_code=v.unit_code)
    return v


async def update_volunteer(conn: asyncpg.Connection, volunteer_id: UUID, changes: dict[str, Any], *,
                           actor: Admin = SYSTEM) -> Volunteer:
    """Apply ``changes`` (fields of :class:`Volunteer`) and publish the new snapshot if anything changed.

    Raises:
        NotFound: no such volunteer, or retired.
        Conflict: the new mobile belongs to another volunteer.
        InvalidReference: unknown unit or skill.
        Forbidden: the volunteer's unit (old or new) is outside ``actor``'s scope.

    """
    async with conn.transaction():
        old = await repo.get_volunteer(conn, volunteer_id, for_update=True)
        if old is None or not old.active:
            raise NotFound(f"no active volunteer {volunteer_id}")
        _require_scope(actor, old.unit_code)
        _require_scope(actor, changes.get("unit_code", old.unit_code))
        if "lat" in changes or "lon" in changes:
            await _check_point(conn, changes.get("lat", old.lat), changes.get("lon", old.lon))
            changes = {**changes, "position_approximate": False}  # a point given is the volunteer's own
        new = replace(old, **changes)
        if new.lat is None or new.lon is None or (new.position_approximate and new.unit_code != old.unit_code):
            # no own point: the (new) unit's centre, approximate
            new = placed(replace(new, lat=None, lon=None, position_approximate=False),
                         await repo.unit_centre(conn, new.unit_code))
        if new.same_content(old):
            return old
        _check_skills(new)
        if new.unit_code != old.unit_code:
            await _check_unit(conn, new.unit_code, field="unit_code", village=True)
        await _check_contacts(conn, new, old=old)
        new = replace(new, revision=old.revision + 1)
        await repo.update_volunteers(conn, [new])
        await outbox.add_many(conn, volunteer_events(new))
        changed = [f for f in _AUDITED if getattr(new, f) != getattr(old, f)]
        await audit(conn, actor, "volunteer.update", str(volunteer_id), _snapshot(old, changed), _snapshot(new, changed))
    log.info("roster.volunteer_updated", volunteer_id=str(volunteer_id), revision=new.revision)
    return new


async def retire_volunteer(conn: asyncpg.Connection, volunteer_id: UUID, *, actor: Admin = SYSTEM) -> Volunteer:
    """Retire a volunteer: inactive, removed from their teams, tombstones on profile and contact.

    Teams the volunteer led keep no leader; their snapshots are republished.

    Raises:
        NotFound: no such volunteer, or already retired.
        Forbidden: the volunteer's unit is outside ``actor``'s scope.

    """
    async with conn.transaction():
        old = await repo.get_volunteer(conn, volunteer_id, for_update=True)
        if old is None or not old.active:
            raise NotFound(f"no active volunteer {volunteer_id}")
        _require_scope(actor, old.unit_code)
        retired = replace(old, active=False, revision=old.revision + 1, team_ids=())
        team_ids = [r["team_id"] for r in await conn.fetch(
            "SELECT team_id FROM team_members WHERE volunteer_id = $1", volunteer_id)]
        await conn.execute("DELETE FROM team_members WHERE volunteer_id = $1", volunteer_id)
        led = await conn.fetch("SELECT id FROM teams WHERE leader_id = $1", volunteer_id)
        team_ids.extend(r["id"] for r in led)
        await conn.execute("UPDATE teams SET leader_id = NULL WHERE leader_id = $1", volunteer_id)
        await repo.update_volunteers(conn, [retired])
        await _tombstone_volunteer(conn, volunteer_id)
        await _bump_teams(conn, set(team_ids))
        await audit(conn, actor, "volunteer.retire", str(volunteer_id), _snapshot(old), {"active": False})
    log.info("roster.volunteer_retired", volunteer_id=str(volunteer_id))
    return retired


async def restore_volunteer(conn: asyncpg.Connection, volunteer_id: UUID, *, actor: Admin = SYSTEM) -> Volunteer:
    """Make a retired volunteer active again (no teams; they are added back one by one) and publish them.

    Raises:
        NotFound: no such volunteer.
        Conflict: the volunteer is active.
        Forbidden: the volunteer's unit is outside ``actor``'s scope.

    """
    async with conn.transaction():
        old = await repo.get_volunteer(conn, volunteer_id, for_update=True)
        if old is None:
            raise NotFound(f"no volunteer {volunteer_id}")
        _require_scope(actor, old.unit_code)
        if old.active:
            raise Conflict(f"volunteer {volunteer_id} is active")
        restored = replace(old, active=True, revision=old.revision + 1)
        await _check_contacts(conn, restored, old=old)
        await repo.update_volunteers(conn, [restored])
        await outbox.add_many(conn, volunteer_events(restored))
        await audit(conn, actor, "volunteer.restore", str(volunteer_id), {"active": False}, _snapshot(restored))
    log.info("roster.volunteer_restored", volunteer_id=str(volunteer_id), revision=restored.revision)
    return restored


async def _bump_teams(conn: asyncpg.Connection, team_ids: Iterable[UUID]) -> None:
    """Raise the revision of teams whose members changed and publish their snapshots."""
    ids = sorted(set(team_ids))
    if not ids:
        return
    await conn.execute("UPDATE teams SET revision = revision + 1, updated_at = now() WHERE id = ANY($1::uuid[])", ids)
    teams = [t for t in await repo.get_teams(conn, ids) if t.active]
    await outbox.add_many(conn, [(ROSTER_TEAM, str(t.id), team_event(t)) for t in teams])


async def _bump_volunteers(conn: asyncpg.Connection, volunteer_ids: Iterable[UUID]) -> None:
    """Raise the revision of volunteers whose teams changed and publish their profiles."""
    ids = sorted(set(volunteer_ids))
    if not ids:
        return
    await conn.execute(
        "UPDATE volunteers SET revision = revision + 1, updated_at = now() WHERE id = ANY($1::uuid[]) AND active", ids
    )
    vols = [v for v in await repo.get_volunteers(conn, ids) if v.active]
    await outbox.add_many(conn, [(ROSTER_PROFILE, str(v.id), profile_event(v)) for v in vols])


# --------------------------------------------------------------------------- teams


async def _check_team(conn: asyncpg.Connection, t: Team) -> None:
    await _check_unit(conn, t.unit_code, field="unit_code", village=False)
    await _check_point(conn, t.lat, t.lon)
    if t.leader_id is not None and t.leader_id not in t.member_ids:
        raise InvalidReference("leader_id", "the leader must be one of the members")
    if t.member_ids:
        found = {r["id"] for r in await conn.fetch(
            "SELECT id FROM volunteers WHERE id = ANY($1::uuid[]) AND active", list(t.member_ids))}
        for i, m in enumerate(t.member_ids):
            if m not in found:
                raise InvalidReference(f"member_ids.{i}", f"no active volunteer {m}")
    if await conn.fetchval("SELECT 1 FROM teams WHERE name = $1 AND active AND id <> $2", t.name, t.id):
        raise Conflict(f"an active team is called {t.name!r}")


async def create_team(conn: asyncpg.Connection, t: Team, *, actor: Admin = SYSTEM) -> Team:
    """Add a team (revision 1), publish it, and republish its members' profiles (their team ids).

    Raises:
        Conflict: an active team has this name.
        InvalidReference: unknown unit, unknown member, or a leader who is not a member.

    """
    t = replace(t, revision=1, member_ids=tuple(dict.fromkeys(t.member_ids)))
    _require_scope(actor, t.unit_code)
    async with conn.transaction():
        await _check_team(conn, t)
        await repo.insert_teams(conn, [t])
        await outbox.add(conn, ROSTER_TEAM, str(t.id), team_event(t))
        await _bump_volunteers(conn, t.member_ids)
        await audit(conn, actor, "team.create", str(t.id), None, _team_snapshot(t))
    log.info("roster.team_created", team_id=str(t.id), members=len(t.member_ids))
    return t


async def update_team(conn: asyncpg.Connection, team_id: UUID, changes: dict[str, Any], *,
                      actor: Admin = SYSTEM) -> Team:
    """Apply ``changes`` (fields of :class:`Team`); members added or removed get new profiles.

    Raises:
        NotFound | Conflict | InvalidReference | Forbidden: as for :func:`create_team`.

    """
    async with conn.transaction():
        old = await repo.get_team(conn, team_id, for_update=True)
        if old is None or not old.active:
            raise NotFound(f"no active team {team_id}")
        _require_scope(actor, old.unit_code)
        _require_scope(actor, changes.get("unit_code", old.unit_code))
        new = replace(old, **changes)
        new = replace(new, member_ids=tuple(dict.fromkeys(new.member_ids)))
        if new == old:
            return old
        await _check_team(conn, new)
        new = replace(new, revision=old.revision + 1)
        await repo.save_team(conn, new)
        await outbox.add(conn, ROSTER_TEAM, str(new.id), team_event(new))
        await _bump_volunteers(conn, set(old.member_ids) ^ set(new.member_ids))
        await audit(conn, actor, "team.update", str(team_id), _team_snapshot(old), _team_snapshot(new))
    log.info("roster.team_updated", team_id=str(team_id), revision=new.revision)
    return new


async def retire_team(conn: asyncpg.Connection, team_id: UUID, *, actor: Admin = SYSTEM) -> None:
    """Retire a team: inactive, tombstone on the team topic, members' profiles republished without it.

    Raises:
        NotFound: no such team, or already retired.
        Forbidden: the team's unit is outside ``actor``'s scope.

    """
    async with conn.transaction():
        old = await repo.get_team(conn, team_id, for_update=True)
        if old is None or not old.active:
            raise NotFound(f"no active team {team_id}")
        _require_scope(actor, old.unit_code)
        await conn.execute("UPDATE teams SET active = false, revision = revision + 1, updated_at = now() WHERE id = $1",
                           team_id)
        await outbox.add_tombstone(conn, ROSTER_TEAM, str(team_id), event_id=uuid.uuid4(), event_type="TeamUpdated",
                                   producer="roster")
        await _bump_volunteers(conn, old.member_ids)
        await audit(conn, actor, "team.retire", str(team_id), _team_snapshot(old), {"active": False})
    log.info("roster.team_retired", team_id=str(team_id))


async def restore_team(conn: asyncpg.Connection, team_id: UUID, *, actor: Admin = SYSTEM) -> Team:
    """Make a retired team active again with its id, its members still on the roster and its leader if still one.

    The team's snapshot and its members' profiles are published again (dispatch and notify see it back).

    Raises:
        NotFound: no such team.
        Conflict: the team is active, or an active team has its name now.
        Forbidden: the team's unit is outside ``actor``'s scope.

    """
    async with conn.transaction():
        old = await repo.get_team(conn, team_id, for_update=True)
        if old is None:
            raise NotFound(f"no team {team_id}")
        _require_scope(actor, old.unit_code)
        if old.active:
            raise Conflict(f"team {team_id} is active")
        holder = await conn.fetchval("SELECT id FROM teams WHERE name = $1 AND active", old.name)
        if holder is not None:
            raise Conflict(f"an active team {holder} is called {old.name!r} now; rename one of them first")
        await conn.execute("UPDATE teams SET active = true, revision = revision + 1, updated_at = now() WHERE id = $1",
                           team_id)
        restored = await repo.get_team(conn, team_id)
        assert restored is not None
        await outbox.add(conn, ROSTER_TEAM, str(team_id), team_event(restored))
        await _bump_volunteers(conn, restored.member_ids)
        await audit(conn, actor, "team.restore", str(team_id), {"active": False}, _team_snapshot(restored))
    log.info("roster.team_restored", team_id=str(team_id), revision=restored.revision)
    return restored


async def recent_retirements(conn: asyncpg.Connection, actor: Admin, *, seconds: float) -> int:
    """How many volunteers and teams ``actor`` retired in the last ``seconds`` (from the audit log)."""
    n = await conn.fetchval(
        "SELECT count(*) FROM audit_log WHERE actor = $1 AND action IN ('volunteer.retire', 'team.retire') "
        "AND at > now() - make_interval(secs => $2)", actor.name, seconds)
    return int(n)


# --------------------------------------------------------------------------- import


async def load_directory(conn: asyncpg.Connection) -> UnitDirectory:
    return UnitDirectory(await repo.load_units(conn))


async def import_register(conn: asyncpg.Connection, plan: ImportPlan, *, dry_run: bool = False,
                          actor: Admin = SYSTEM, source: str = "") -> ImportReport:
    """Apply a validated register: upsert by mobile, all or nothing.

    Nothing is written when the plan has errors or ``dry_run`` is set (the counts are still
    computed). A row for a stored volunteer changes only what the sheet has columns for
    (:func:`services.roster.domain.importing.merge_into`: certificates are upserted, never dropped);
    a row equal to the stored volunteer changes nothing (no revision, no event). A row naming a
    retired volunteer is an error (an import never re-activates anyone; restore them with
    ``POST /volunteers/{id}/restore``). Team memberships listed are added.

    A row whose unit (or, for a stored volunteer, whose current unit) is outside ``actor``'s scope is an
    error on its row. A committed import is audited (``roster.import``: file name and counts).

    Returns:
        The plan's report with ``created``, ``updated``, ``unchanged`` and ``committed`` filled in.

    """
    report = plan.report
    report.dry_run = dry_run
    for row in plan.rows:
        if not actor.covers(row.unit_code):
            report.errors.append(RowError(row.row, plan.columns.get("unit_code", plan.columns.get("village", "-")),
                                          f"unit {row.unit_code} is outside your scope ({actor.unit_code})"))
    async with conn.transaction():
        existing = await repo.volunteers_by_mobile(conn, [r.mobile for r in plan.rows])
        openids = [r.wechat_openid for r in plan.rows if r.wechat_openid]
        holders = {r["wechat_openid"]: (r["id"], r["mobile"]) for r in await conn.fetch(
            "SELECT id, mobile, wechat_openid FROM volunteers WHERE active AND wechat_openid = ANY($1::text[])",
            openids)} if openids else {}
        for row in plan.rows:
            holder = holders.get(row.wechat_openid) if row.wechat_openid else None
            if holder is not None and holder[1] != row.mobile:
                report.errors.append(RowError(
                    row.row, plan.columns.get("openid", "openid"),
                    f"this WeChat openid already belongs to volunteer {holder[0]}",
                    value=mask_openid(row.wechat_openid or "")))
        new: list[Volunteer] = []
        changed: list[Volunteer] = []
        memberships: list[tuple[UUID, UUID]] = []
        for row in plan.rows:
            old = existing.get(row.mobile)
            if old is None:
                v = Volunteer(id=uuid.uuid4(), revision=1, name=row.name, mobile=row.mobile, unit_code=row.unit_code,
                              lat=row.lat, lon=row.lon, position_approximate=row.position_approximate,
                              skills=row.skills, certificates=row.certificates, team_ids=row.team_ids,
                              wechat_openid=row.wechat_openid)
                new.append(v)
                memberships.extend((t, v.id) for t in row.team_ids)
                continue
            if not actor.covers(old.unit_code):
                report.errors.append(RowError(
                    row.row, plan.columns.get("mobile", "mobile"),
                    f"volunteer {old.id} belongs to unit {old.unit_code}, outside your scope ({actor.unit_code})",
                    value=mask_text(row.mobile)))
                continue
            if not old.active:
                report.errors.append(RowError(
                    row.row, plan.columns.get("mobile", "mobile"),
                    f"retired volunteer {old.id}; restore them in the API first (POST /volunteers/{{id}}/restore)",
                    value=mask_text(row.mobile)))
                continue
            candidate = merge_into(old, row, plan.columns)
            memberships.extend((t, old.id) for t in row.team_ids if t not in old.team_ids)
            if candidate.same_content(old):
                report.unchanged += 1
            else:
                changed.append(replace(candidate, revision=old.revision + 1))
        report.created, report.updated = len(new), len(changed)
        if not report.ok or dry_run:
            return report
        await repo.insert_volunteers(conn, new)
        await repo.update_volunteers(conn, changed)
        await repo.add_memberships(conn, memberships)
        items = [item for v in (*new, *changed) for item in volunteer_events(v)]
        await outbox.add_many(conn, items)
        await _bump_teams(conn, {t for t, _ in memberships})
        await audit(conn, actor, "roster.import", source or None, None,
                    {"rows": report.rows, "created": report.created, "updated": report.updated,
                     "unchanged": report.unchanged, "created_ids": [str(v.id) for v in new],
                     "updated_ids": [str(v.id) for v in changed]})
        report.committed = True
    log.info("roster.imported", created=report.created, updated=report.updated, unchanged=report.unchanged)
    return report


# --------------------------------------------------------------------------- republish


async def republish(conn: asyncpg.Connection, *, batch: int = 5000) -> dict[str, int]:
    """Re-emit every snapshot (profiles and contacts of active volunteers, active teams, AEDs) at its current revision.

    Retired volunteers and teams get their tombstones again, so a consumer rebuilding its projection
    from scratch ends with the roster's state. Returns counts by kind.
    """
    counts = {"volunteers": 0, "teams": 0, "aeds": 0, "tombstones": 0}
    async with conn.transaction():
        ids = await repo.all_volunteer_ids(conn)
        for i in range(0, len(ids), batch):
            vols = await repo.get_volunteers(conn, ids[i:i + batch])
            await outbox.add_many(conn, [item for v in vols for item in volunteer_events(v)])
            counts["volunteers"] += len(vols)
        teams = await repo.get_teams(conn, await repo.all_team_ids(conn))
        await outbox.add_many(conn, [(ROSTER_TEAM, str(t.id), team_event(t)) for t in teams])
        counts["teams"] = len(teams)
        aeds = await aed_repo.all_aeds(conn)
        await outbox.add_many(conn, [(ROSTER_AED, str(a.id), aed_event(a)) for a in aeds])
        counts["aeds"] = len(aeds)
        for r in await conn.fetch("SELECT id FROM volunteers WHERE NOT active"):
            await _tombstone_volunteer(conn, r["id"])
            counts["tombstones"] += 1
        for r in await conn.fetch("SELECT id FROM teams WHERE NOT active"):
            await outbox.add_tombstone(conn, ROSTER_TEAM, str(r["id"]), event_id=uuid.uuid4(),
                                       event_type=TeamUpdated.__name__, producer="roster")
            counts["tombstones"] += 1
    log.info("roster.republished", **counts)
    return counts




# --------------------------------------------------------------------------- seed


async def seed_roster(conn: asyncpg.Connection, volunteers: Sequence[Volunteer], teams: Sequence[Team],
                      *, mobile_prefix: str, replace_existing: bool = False) -> dict[str, int]:
    """Write a synthetic roster (from :func:`services.roster.domain.seed.synthesize`) with COPY, and its events.

    With ``replace_existing``, volunteers whose mobile starts with ``mobile_prefix`` (and the teams
    they belong to) are first deleted, with tombstones, so a seed can be run again.

    Raises:
        Conflict: such volunteers exist and ``replace_existing`` is not set.

    """
    removed = 0
    async with conn.transaction():
        old_ids = [r["id"] for r in await conn.fetch(
            "SELECT id FROM volunteers WHERE starts_with(mobile, $1)", mobile_prefix)]
        if old_ids and not replace_existing:
            raise Conflict(f"{len(old_ids)} volunteers with mobiles {mobile_prefix}… exist; use --replace")
        if old_ids:
            old_teams = [r["id"] for r in await conn.fetch(
                "SELECT DISTINCT t.id FROM teams t LEFT JOIN team_members m ON m.team_id = t.id "
                "WHERE m.volunteer_id = ANY($1::uuid[]) OR t.leader_id = ANY($1::uuid[])", old_ids)]
            await conn.execute("DELETE FROM team_members WHERE team_id = ANY($1::uuid[]) "
                               "OR volunteer_id = ANY($2::uuid[])", old_teams, old_ids)
            await conn.execute("DELETE FROM teams WHERE id = ANY($1::uuid[])", old_teams)
            await repo.delete_volunteers(conn, old_ids)
            for tid in old_teams:
                await outbox.add_tombstone(conn, ROSTER_TEAM, str(tid), event_id=uuid.uuid4(),
                                           event_type="TeamUpdated", producer="roster")
            for vid in old_ids:
                await _tombstone_volunteer(conn, vid)
            removed = len(old_ids)
        await repo.insert_volunteers(conn, volunteers)
        await repo.insert_teams(conn, teams)
        await outbox.add_many(conn, [item for v in volunteers for item in volunteer_events(v)])
        await outbox.add_many(conn, [(ROSTER_TEAM, str(t.id), team_event(t)) for t in teams])
    if len(volunteers) >= BULK_ROWS:
        await repo.vacuum_search(conn)
    log.info("roster.seeded", volunteers=len(volunteers), teams=len(teams), removed=removed)
    return {"volunteers": len(volunteers), "teams": len(teams), "removed": removed}


async def import_file(conn: asyncpg.Connection, data: bytes, filename: str, *, dry_run: bool = False,
                      actor: Admin = SYSTEM) -> ImportReport:
    """Read, validate and apply a register file (CSV or XLSX); see :func:`import_register`.

    Raises:
        services.roster.adapters.spreadsheet.SpreadsheetError: the bytes are not a readable register.

    """
    from services.roster.adapters.spreadsheet import read_table
    from services.roster.domain.importing import validate_register

    table = await asyncio.to_thread(read_table, data, filename)
    units = await load_directory(conn)
    teams = await repo.active_team_names(conn)
    plan = await asyncio.to_thread(validate_register, table, units, teams)
    report = await import_register(conn, plan, dry_run=dry_run, actor=actor, source=filename)
    if report.committed and report.created + report.updated >= BULK_ROWS:
        await repo.vacuum_search(conn)
    return report


# --------------------------------------------------------------------------- AEDs


async def import_aeds(conn: asyncpg.Connection, plan: AedImportPlan, *, dry_run: bool = False,
                      actor: Admin = SYSTEM, source: str = "") -> ImportReport:
    """Apply a validated AED sheet: upsert by serial number, all or nothing, ``AedUpdated`` for each change.

    A row equal to the stored device changes nothing (no revision, no event); a row whose owner unit (or the
    stored device's) is outside ``actor``'s scope is an error on its row. Nothing is written when the plan
    has errors or ``dry_run`` is set (the counts are still computed). Audited (``aed.import``).

    Returns:
        The plan's report with ``created``, ``updated``, ``unchanged`` and ``committed`` filled in.

    """
    report = plan.report
    report.dry_run = dry_run
    for row in plan.rows:
        if not actor.covers(row.unit_code):
            report.errors.append(RowError(row.row, "unit_code", f"unit {row.unit_code} is outside your scope "
                                          f"({actor.unit_code})"))
    async with conn.transaction():
        existing = await aed_repo.aeds_by_serial(conn, [r.serial for r in plan.rows])
        new: list[Aed] = []
        changed: list[Aed] = []
        for row in plan.rows:
            old = existing.get(row.serial)
            if old is None:
                new.append(row.as_aed(uuid.uuid4(), 1))
                continue
            if not actor.covers(old.unit_code):
                report.errors.append(RowError(row.row, "serial", f"AED {row.serial} belongs to unit {old.unit_code}, "
                                              f"outside your scope ({actor.unit_code})"))
                continue
            candidate = row.as_aed(old.id, old.revision)
            if candidate.same_content(old):
                report.unchanged += 1
            else:
                changed.append(replace(candidate, revision=old.revision + 1))
        report.created, report.updated = len(new), len(changed)
        if not report.ok or dry_run:
            return report
        await aed_repo.insert_aeds(conn, new)
        await aed_repo.update_aeds(conn, changed)
        await outbox.add_many(conn, [(ROSTER_AED, str(a.id), aed_event(a)) for a in (*new, *changed)])
        await audit(conn, actor, "aed.import", source or None, None,
                    {"rows": report.rows, "created": report.created, "updated": report.updated,
                     "unchanged": report.unchanged})
        report.committed = True
    log.info("roster.aeds_imported", created=report.created, updated=report.updated, unchanged=report.unchanged)
    return report


async def import_aed_file(conn: asyncpg.Connection, data: bytes, filename: str, *, dry_run: bool = False,
                          actor: Admin = SYSTEM) -> ImportReport:
    """Read, validate and apply an AED sheet (CSV or XLSX); see :func:`import_aeds`.

    Raises:
        services.roster.adapters.spreadsheet.SpreadsheetError: the bytes are not a readable sheet.

    """
    from services.roster.adapters.spreadsheet import read_table

    # read off the event loop, as a register is (``/health/live`` never waits behind a parse)
    plan = validate_aed_sheet(await asyncio.to_thread(read_table, data, filename), await load_directory(conn))
    return await import_aeds(conn, plan, dry_run=dry_run, actor=actor, source=filename)


async def add_aed(conn: asyncpg.Connection, row: AedRow, *, actor: Admin = SYSTEM) -> Aed:
    """Add one device (revision 1) and publish it.

    Raises:
        Conflict: the serial number is registered. InvalidReference: unknown owner unit.
        Forbidden: the unit is outside ``actor``'s scope.

    """
    _require_scope(actor, row.unit_code)
    async with conn.transaction():
        if not await conn.fetchval("SELECT 1 FROM units WHERE code = $1", row.unit_code):
            raise InvalidReference("unit_code", f"no unit with code {row.unit_code}")
        if await conn.fetchval("SELECT 1 FROM aeds WHERE serial = $1", row.serial):
            raise Conflict(f"an AED with serial number {row.serial} is registered")
        a = row.as_aed(uuid.uuid4(), 1)
        await aed_repo.insert_aeds(conn, [a])
        await outbox.add(conn, ROSTER_AED, str(a.id), aed_event(a))
        await audit(conn, actor, "aed.create", str(a.id), None, {"serial": a.serial, "unit_code": a.unit_code,
                                                                  "address": a.address})
    log.info("roster.aed_created", aed_id=str(a.id), unit_code=a.unit_code)
    return a
