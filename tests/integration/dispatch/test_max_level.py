"""``policy.max_level`` on the real database: by default the operator's own scope, never above it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.dispatch.units import units
from tests.conftest import StackAddresses

from .conftest import DispatchDb, add_volunteers, dispatch_schema, running_app, token

TABLES = ("incidents", "requirements", "callouts", "outbox", "audit_log", "timeline")
SKILL = "psych_support"  # no other dispatch test uses it: the only holders are this file's
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


def body(village: str, **policy: Any) -> dict[str, Any]:
    lat, lon = units().centres[village[:9]]
    return {"kind": "fall", "title": "升级上限测试", "lat": lat, "lon": lon, "unit_code": village, "mode": "emergency",
            "requirements": [{"skill": SKILL, "count": 1}], "policy": policy}


async def test_a_county_operator_escalates_to_the_county_by_default(
    dispatch_db: DispatchDb, client: httpx.AsyncClient
) -> None:
    db = dispatch_db
    village = village_of(XINCHANG, 7)
    await add_volunteers(db, village_of(SHANGYU, 7), 1, skill=SKILL)  # someone in the city, none in the county
    county_op = await token(db, "county", XINCHANG)
    r = await client.post("/incidents", headers=county_op, json=body(village))
    assert r.status_code == 201, r.text
    board = r.json()
    assert board["incident"]["max_level"] == "county"
    [req] = board["requirements"]
    assert (req["status"], req["level"]) == ("unfilled", "county")  # the 上虞区 volunteer was not called
    assert board["callouts_by_state"] == {}

    city_op = await token(db)
    r = await client.post("/incidents", headers=city_op, json=body(village))
    assert r.status_code == 201, r.text
    board = r.json()
    assert board["incident"]["max_level"] == "city"
    assert board["requirements"][0]["level"] == "city" and board["callouts_by_state"] == {"requested": 1}


@pytest.mark.parametrize(("role", "unit", "default"), [("town", "town", "town"), ("county", XINCHANG, "county")])
async def test_default_is_the_operator_scope_level(
    dispatch_db: DispatchDb, client: httpx.AsyncClient, role: str, unit: str, default: str
) -> None:
    village = village_of(XINCHANG, 8)
    headers = await token(dispatch_db, role, village[:9] if unit == "town" else unit)
    r = await client.post("/incidents", headers=headers, json=body(village))
    assert r.status_code == 201, r.text
    assert r.json()["incident"]["max_level"] == default


@pytest.mark.parametrize(
    ("role", "max_level"), [("county", "city"), ("town", "county"), ("town", "city")],
)
async def test_max_level_above_the_operator_scope_is_refused(
    dispatch_db: DispatchDb, client: httpx.AsyncClient, role: str, max_level: str
) -> None:
    village = village_of(XINCHANG, 9)
    headers = await token(dispatch_db, role, XINCHANG if role == "county" else village[:9])
    before = await counts(dispatch_db)
    r = await client.post("/incidents", headers=headers, json=body(village, max_level=max_level))
    assert r.status_code == 403 and "scope" in r.json()["detail"], r.text
    assert await counts(dispatch_db) == before
    r = await client.post("/incidents", headers=headers, json=body(village, max_level="village"))
    assert r.status_code == 201 and r.json()["incident"]["max_level"] == "village", r.text


async def test_a_village_operator_acts_only_in_its_own_village(
    dispatch_db: DispatchDb, client: httpx.AsyncClient
) -> None:
    own, neighbour = village_of(XINCHANG, 10), village_of(XINCHANG, 11)
    assert own[:9] == neighbour[:9]  # two villages of one town: the neighbour is as close as it gets
    headers = await token(dispatch_db, "village", own)
    r = await client.post("/incidents", headers=headers, json=body(own))
    assert r.status_code == 201, r.text
    assert r.json()["incident"]["max_level"] == "village"  # its search stays in the village
    iid = r.json()["incident"]["incident_id"]
    assert (await client.get(f"/incidents/{iid}", headers=headers)).status_code == 200
    assert [i["incident_id"] for i in (await client.get("/incidents", headers=headers)).json()] == [iid]

    before = await counts(dispatch_db)
    r = await client.post("/incidents", headers=headers, json=body(neighbour))
    assert r.status_code == 403 and own in r.json()["detail"], r.text
    assert await counts(dispatch_db) == before
    r = await client.post("/incidents", headers=headers, json=body(own, max_level="town"))
    assert r.status_code == 403 and "scope" in r.json()["detail"], r.text

    town_op = await token(dispatch_db, "town", own[:9])
    r = await client.post("/incidents", headers=town_op, json=body(neighbour))
    assert r.status_code == 201, r.text
    other = r.json()["incident"]["incident_id"]
    assert (await client.get(f"/incidents/{other}", headers=headers)).status_code == 403
    assert (await client.post(f"/incidents/{other}/stand-down", headers=headers)).status_code == 403
    assert (await client.post(f"/incidents/{iid}/stand-down", headers=headers)).status_code == 200
