"""Lengths of the operator API's free text on the real database: over the limit is 422 and writes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.dispatch.auth import create_token
from services.dispatch.errors import InvalidInput
from services.dispatch.units import units

from .conftest import DispatchDb, a_town_with_villages, add_volunteers, running_app, token

TABLES = ("incidents", "requirements", "callouts", "outbox", "audit_log", "timeline", "operators")


@pytest.fixture
async def client(dispatch_db: DispatchDb) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(dispatch_db, consumers=(), tick=0.2) as c:
        yield c


async def counts(db: DispatchDb) -> dict[str, int]:
    async with db.pool.acquire() as conn:
        # a refusal's own audit row (access.refused) is what a refusal writes on purpose; nothing else is
        return {t: await conn.fetchval(f"SELECT count(*) FROM {t}" + (" WHERE action NOT LIKE 'access.%'"
                                                                       if t == "audit_log" else "")) for t in TABLES}


def body(village: str, **over: Any) -> dict[str, Any]:
    lat, lon = units().centres[village[:9]]
    b: dict[str, Any] = {"kind": "fall", "title": "长度测试", "lat": lat, "lon": lon, "unit_code": village,
                         "mode": "emergency", "requirements": [{"skill": "first_aid", "count": 1}],
                         "policy": {"max_level": "village"}}
    b.update(over)
    return b


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"title": "溺" * 101}, "title"),
        ({"kind": "k" * 41}, "kind"),
        ({"unit_code": "3" * 41}, "unit_code"),
        ({"requirements": [{"skill": "s" * 41, "count": 1}]}, "skill"),
        ({"requirements": [{"team_type": "t" * 41, "count": 1}]}, "team_type"),
        ({"requirements": [{"skill": "first_aid", "count": 1}] * 21}, "requirements"),
    ],
)
async def test_oversized_incident_fields_are_refused(
    dispatch_db: DispatchDb, client: httpx.AsyncClient, change: dict[str, Any], field: str
) -> None:
    _, villages = a_town_with_villages(1, index=11)
    headers = await token(dispatch_db)
    before = await counts(dispatch_db)
    r = await client.post("/incidents", headers=headers, json=body(villages[0], **change))
    assert r.status_code == 422, r.text
    assert field in r.text
    assert await counts(dispatch_db) == before


async def test_text_at_the_limit_is_accepted_and_an_oversized_outcome_refused(
    dispatch_db: DispatchDb, client: httpx.AsyncClient
) -> None:
    _, villages = a_town_with_villages(1, index=12)
    await add_volunteers(dispatch_db, villages[0], 1)
    headers = await token(dispatch_db)
    r = await client.post("/incidents", headers=headers, json=body(villages[0], title="溺" * 100, kind="k" * 40))
    assert r.status_code == 201, r.text
    iid = r.json()["incident"]["incident_id"]
    before = await counts(dispatch_db)
    r = await client.post(f"/incidents/{iid}/close", headers=headers, json={"outcome": "救" * 501})
    assert r.status_code == 422 and "outcome" in r.text, r.text
    assert await counts(dispatch_db) == before
    r = await client.post(f"/incidents/{iid}/close", headers=headers, json={"outcome": "救" * 500})
    assert r.status_code == 200 and r.json()["incident"]["status"] == "closed", r.text


async def test_operator_name_is_limited(dispatch_db: DispatchDb) -> None:
    before = await counts(dispatch_db)
    async with dispatch_db.pool.acquire() as conn:
        with pytest.raises(InvalidInput, match="at most 64"):
            await create_token(conn, name="王" * 65, role="city", unit_code="330600")
    assert await counts(dispatch_db) == before
