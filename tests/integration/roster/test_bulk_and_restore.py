"""Issue #20, finding 1: bulk retirements need a confirmation step, and retired teams come back with their ids."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from services.roster import admins
from services.roster.handlers.bulk import CONFIRM_HEADER, THRESHOLD
from tests.integration.roster.test_admins import _client, app
from tests.integration.roster.test_api import body, client

__all__ = ["app", "client"]


def _team(**over: Any) -> dict[str, Any]:
    return {"name": f"恢复队{uuid.uuid4().hex[:6]}", "team_type": "water", "unit_code": "330603", **over}


async def test_a_retired_team_is_restored_with_its_id_and_members(client: httpx.AsyncClient) -> None:
    v = (await client.post("/volunteers", json=body())).json()
    r = await client.post("/teams", json=_team(member_ids=[v["id"]], leader_id=v["id"]))
    assert r.status_code == 201, r.text
    team = r.json()
    assert (await client.delete(f"/teams/{team['id']}")).status_code == 204
    assert (await client.get(f"/teams/{team['id']}")).status_code == 404
    r = await client.post(f"/teams/{team['id']}/restore")
    assert r.status_code == 200, r.text
    back = r.json()
    assert back["id"] == team["id"] and back["active"] and back["member_ids"] == [v["id"]]
    assert back["leader_id"] == v["id"] and back["revision"] > team["revision"]
    assert (await client.get(f"/volunteers/{v['id']}")).json()["team_ids"] == [team["id"]]
    assert (await client.post(f"/teams/{team['id']}/restore")).status_code == 409  # active
    assert (await client.post(f"/teams/{uuid.uuid4()}/restore")).status_code == 404
    assert (await client.delete(f"/teams/{team['id']}")).status_code == 204


async def test_a_restored_teams_name_must_be_free(client: httpx.AsyncClient) -> None:
    t = _team()
    first = (await client.post("/teams", json=t)).json()
    assert (await client.delete(f"/teams/{first['id']}")).status_code == 204
    second = (await client.post("/teams", json=t)).json()
    r = await client.post(f"/teams/{first['id']}/restore")
    assert r.status_code == 409 and second["id"] in r.json()["detail"], r.text
    assert (await client.delete(f"/teams/{second['id']}")).status_code == 204  # no leaderless team left behind


async def test_retirements_past_the_threshold_wait_for_a_confirmation(app: Any, roster_pool: Any) -> None:
    name = f"bulk-{uuid.uuid4().hex[:6]}"
    async with roster_pool.acquire() as conn:
        token = await admins.create_token(conn, name=name, role="city_admin", unit_code="330600")
    async with _client(app, token) as c:
        ids = []
        for _ in range(THRESHOLD + 2):
            r = await c.post("/volunteers", json=body())
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        for vid in ids[:THRESHOLD]:
            assert (await c.delete(f"/volunteers/{vid}")).status_code == 200
        r = await c.delete(f"/volunteers/{ids[THRESHOLD]}")
        assert r.status_code == 428, r.text
        code = r.json()["confirm"]
        assert (await c.get(f"/volunteers/{ids[THRESHOLD]}")).json()["active"]  # nothing retired
        wrong = await c.delete(f"/volunteers/{ids[THRESHOLD]}", headers={CONFIRM_HEADER: "0000"})
        assert wrong.status_code == 428 and wrong.json()["confirm"] == code
        ok = await c.delete(f"/volunteers/{ids[THRESHOLD]}", headers={CONFIRM_HEADER: code})
        assert ok.status_code == 200, ok.text
        assert (await c.delete(f"/volunteers/{ids[THRESHOLD + 1]}")).status_code == 200  # confirmed for the window
    async with roster_pool.acquire() as conn:
        refused = await conn.fetch("SELECT after FROM audit_log WHERE actor = $1 AND action = 'access.refused'", name)
    assert [r["after"]["status"] for r in refused] == [428, 428]


async def test_changes_past_the_rate_limit_are_429_and_audited(app: Any, roster_pool: Any,
                                                              monkeypatch: Any) -> None:
    from services.roster.handlers import auth

    monkeypatch.setattr(auth, "WRITES_PER_MINUTE", 3)
    monkeypatch.setattr(auth, "_clock", lambda: 6000.0)  # one minute for the whole test
    name = f"rate-{uuid.uuid4().hex[:6]}"
    async with roster_pool.acquire() as conn:
        token = await admins.create_token(conn, name=name, role="city_admin", unit_code="330600")
    async with _client(app, token) as c:
        statuses = [(await c.post("/volunteers", json=body())).status_code for _ in range(5)]
        assert (await c.get("/volunteers", params={"page_size": 1})).status_code == 200  # reads are not limited
    assert statuses == [201, 201, 201, 429, 429], statuses
    async with roster_pool.acquire() as conn:
        refused = await conn.fetch("SELECT after FROM audit_log WHERE actor = $1 AND action = 'access.refused'", name)
    assert [r["after"]["status"] for r in refused] == [429, 429]
