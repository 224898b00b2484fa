"""Adding a volunteer by hand (``POST /incidents/{id}/callouts``) on the real database: scope, state, audit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from services.dispatch.adapters import projection
from services.dispatch.units import units
from shared.consumer import Tombstone
from shared.events import VolunteerProfileUpdated
from shared.topics import ROSTER_PROFILE
from tests.conftest import StackAddresses

from .conftest import DispatchDb, add_volunteers, dispatch_schema, running_app, token

TABLES = ("callouts", "outbox", "audit_log", "timeline")
XINCHANG, SHANGYU = "330624", "330604"  # 新昌县, 上虞区


@pytest.fixture(scope="module")
async def dispatch_db(stack: StackAddresses) -> AsyncIterator[DispatchDb]:
    """A schema of this module's own: it counts whole tables, and no other test's incident falls due in it."""
    async with dispatch_schema(stack) as db:
        yield db


@pytest.fixture
async def client(dispatch_db: DispatchDb) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(dispatch_db, consumers=(), tick=0.2) as c:
        yield c


async def counts(db: DispatchDb) -> dict[str, int]:
    async with db.pool.acquire() as conn:
        # a refusal's own audit row (access.refused) is what a refusal writes on purpose; nothing else is
        return {t: await conn.fetchval(f"SELECT count(*) FROM {t}" + (" WHERE action NOT LIKE 'access.%'"
                                                                       if t == "audit_log" else "")) for t in TABLES}


def village_of(county: str, index: int = 0) -> str:
    u = units()
    return sorted(c for c in u.names if len(c) == 12 and c.startswith(county) and c[:9] in u.centres)[index]


async def open_incident(client: httpx.AsyncClient, headers: dict[str, str], village: str) -> tuple[UUID, str]:
    lat, lon = units().centres[village[:9]]
    r = await client.post("/incidents", headers=headers, json={
        "kind": "fall", "title": "手动加人测试", "lat": lat, "lon": lon, "unit_code": village, "mode": "emergency",
        "requirements": [{"skill": "first_aid", "count": 1}], "policy": {"max_level": "village"}})
    assert r.status_code == 201, r.text
    board = r.json()
    return UUID(board["incident"]["incident_id"]), board["requirements"][0]["requirement_id"]


async def test_county_operator_cannot_call_a_volunteer_of_another_county(
    dispatch_db: DispatchDb, client: httpx.AsyncClient
) -> None:
    db = dispatch_db
    home = village_of(XINCHANG, 3)
    [outsider] = await add_volunteers(db, village_of(SHANGYU, 3), 1)
    [insider] = await add_volunteers(db, village_of(XINCHANG, 4), 1)
    op = await token(db, "county", XINCHANG)
    iid, rid = await open_incident(client, op, home)
    before = await counts(db)

    r = await client.post(f"/incidents/{iid}/callouts", headers=op,
                          json={"volunteer_id": str(outsider), "requirement_id": rid})
    assert r.status_code == 403, r.text
    assert SHANGYU in r.json()["detail"] and XINCHANG in r.json()["detail"]
    assert await counts(db) == before
    async with db.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM callouts WHERE volunteer_id = $1", outsider) == 0

    # a volunteer of the operator's own county (another town) is called; a city operator may add the outsider
    r = await client.post(f"/incidents/{iid}/callouts", headers=op,
                          json={"volunteer_id": str(insider), "requirement_id": rid})
    assert r.status_code == 201, r.text
    city = await token(db)
    r = await client.post(f"/incidents/{iid}/callouts", headers=city,
                          json={"volunteer_id": str(outsider), "requirement_id": rid})
    assert r.status_code == 201, r.text


async def _profile(db: DispatchDb, village: str, **over: Any) -> UUID:
    vid = uuid4()
    lat, lon = units().centres[village[:9]]
    fields: dict[str, Any] = {"volunteer_id": vid, "revision": 1, "display_name": "测试", "unit_code": village,
                              "lat": lat, "lon": lon, "skills": ("first_aid",), "consent": True}
    fields.update(over)
    async with db.pool.acquire() as conn:
        await projection.upsert_profile(conn, VolunteerProfileUpdated(**fields))
    return vid


async def test_inactive_retired_or_unconsenting_volunteers_are_refused_with_the_reason(
    dispatch_db: DispatchDb, client: httpx.AsyncClient
) -> None:
    db = dispatch_db
    village = village_of(XINCHANG, 5)
    op = await token(db, "county", XINCHANG)
    iid, rid = await open_incident(client, op, village)
    inactive = await _profile(db, village, active=False)
    no_consent = await _profile(db, village, consent=False)
    retired = await _profile(db, village)
    async with db.pool.acquire() as conn:
        await projection.apply_profile(conn, Tombstone(topic=ROSTER_PROFILE.name, key=str(retired), event_id=uuid4(),
                                                       event_type="Tombstone"))
    before = await counts(db)
    for vid, reason in [(inactive, "inactive"), (no_consent, "consent"), (retired, "retired")]:
        r = await client.post(f"/incidents/{iid}/callouts", headers=op,
                              json={"volunteer_id": str(vid), "requirement_id": rid})
        assert r.status_code == 422, r.text
        assert reason in r.json()["detail"], r.text
    assert await counts(db) == before


async def test_manual_add_skips_the_skill_check_and_audits_it(dispatch_db: DispatchDb, client: httpx.AsyncClient) -> None:
    db = dispatch_db
    village = village_of(XINCHANG, 6)
    op = await token(db, "county", XINCHANG)
    iid, rid = await open_incident(client, op, village)
    unskilled = await _profile(db, village, skills=("driving",))
    r = await client.post(f"/incidents/{iid}/callouts", headers=op,
                          json={"volunteer_id": str(unskilled), "requirement_id": rid})
    assert r.status_code == 201, r.text
    audit = (await client.get(f"/audit?incident_id={iid}", headers=op)).json()
    [add] = [a for a in audit if a["action"] == "callout.add"]
    assert add["after"]["volunteer_id"] == str(unskilled)
    assert add["after"]["skill_check"].startswith("skipped")
    assert add["after"]["holds_skill"] is False
