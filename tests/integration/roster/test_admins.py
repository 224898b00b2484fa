"""Named roster administrator tokens: role and unit scope enforced, every change audited under the name."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from services.roster import admins
from services.roster.app import create_app
from shared.settings import RosterSettings
from tests.integration.roster.test_api import TOKEN, VILLAGE, body

OTHER_COUNTY_VILLAGE = "330602001004"  # 花园社区, 塔山街道, 越城区


@pytest.fixture
async def app(roster_pool: Any, stack: Any) -> Any:
    settings = RosterSettings(database_url=stack.test_dsn, kafka_bootstrap_servers=stack.bootstrap,  # type: ignore[call-arg]
                              admin_token=SecretStr(TOKEN))
    a = create_app(settings)
    a.state.runtime.pool = roster_pool
    return a


def _client(app: Any, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://roster",
                             headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
async def registrar(app: Any, roster_pool: Any) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    """A registrar of 柯桥区 (330603) with a token of their own."""
    name = f"keqiao-registrar-{uuid.uuid4().hex[:6]}"
    async with roster_pool.acquire() as conn:
        token = await admins.create_token(conn, name=name, role="registrar", unit_code="330603")
    async with _client(app, token) as c:
        yield name, c


async def _audit(pool: Any, subject: str) -> list[Any]:
    async with pool.acquire() as conn:
        return list(await conn.fetch("SELECT actor, role, action, before, after FROM audit_log WHERE subject = $1 "
                                     "ORDER BY id", subject))


async def test_a_registrar_changes_only_their_units_and_each_change_names_them(
    registrar: tuple[str, httpx.AsyncClient], roster_pool: Any
) -> None:
    name, c = registrar
    r = await c.post("/volunteers", json=body())
    assert r.status_code == 201, r.text
    vid = r.json()["id"]
    outside = await c.post("/volunteers", json=body(unit_code=OTHER_COUNTY_VILLAGE))
    assert outside.status_code == 403 and "330602001004" in outside.json()["detail"]
    moved_out = await c.patch(f"/volunteers/{vid}", json={"unit_code": OTHER_COUNTY_VILLAGE})
    assert moved_out.status_code == 403
    assert (await c.patch(f"/volunteers/{vid}", json={"name": "王大明"})).status_code == 200
    assert (await c.delete(f"/volunteers/{vid}")).status_code == 200
    rows = await _audit(roster_pool, vid)
    assert [(r["actor"], r["role"], r["action"]) for r in rows] == [
        (name, "registrar", "volunteer.create"), (name, "registrar", "volunteer.update"),
        (name, "registrar", "volunteer.retire")]
    assert rows[1]["before"] == {"name": "王小明"} and rows[1]["after"] == {"name": "王大明"}
    assert "****" in rows[0]["after"]["mobile"]  # masked in the audit log
    assert (await c.get("/volunteers", params={"unit": "330602"})).status_code == 200  # reads are city-wide


async def test_an_import_outside_the_registrars_units_imports_nothing_and_one_inside_is_audited(
    registrar: tuple[str, httpx.AsyncClient], roster_pool: Any
) -> None:
    name, c = registrar
    m1, m2 = (f"19993{uuid.uuid4().int % 10**6:06d}" for _ in range(2))
    csv = f"姓名,手机号码,区划代码\n甲,{m1},{VILLAGE}\n乙,{m2},{OTHER_COUNTY_VILLAGE}\n"
    r = await c.post("/imports", files={"file": ("scope.csv", csv.encode(), "text/csv")})
    assert r.status_code == 422
    assert [(e["row"], e["column"]) for e in r.json()["errors"]] == [(3, "区划代码")]
    async with roster_pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM volunteers WHERE mobile = $1", "+86" + m1) == 0
    ok = "\n".join(csv.splitlines()[:2]) + "\n"
    r = await c.post("/imports", files={"file": ("scope.csv", ok.encode(), "text/csv")})
    assert r.status_code == 200, r.text
    [entry] = [e for e in await _audit(roster_pool, "scope.csv") if e["actor"] == name]
    assert entry["action"] == "roster.import" and entry["after"]["created"] == 1


async def test_the_shared_token_is_a_city_admin_and_a_revoked_token_is_refused(app: Any, roster_pool: Any) -> None:
    async with _client(app, TOKEN) as shared:
        r = await shared.post("/volunteers", json=body(unit_code=OTHER_COUNTY_VILLAGE))
        assert r.status_code == 201, r.text
        [entry] = await _audit(roster_pool, r.json()["id"])
        assert (entry["actor"], entry["role"]) == ("ROSTER_ADMIN_TOKEN", "city_admin")
    name = f"gone-{uuid.uuid4().hex[:6]}"
    async with roster_pool.acquire() as conn:
        token = await admins.create_token(conn, name=name, role="city_admin", unit_code="330600")
        assert await admins.revoke_token(conn, name)
        assert [t["name"] for t in await admins.list_tokens(conn) if t["revoked_at"]].count(name) == 1
    async with _client(app, token) as revoked:
        assert (await revoked.get("/units")).status_code == 401
    async with _client(app, admins.TOKEN_PREFIX + "not-a-token") as forged:
        assert (await forged.get("/units")).status_code == 401


@pytest.mark.parametrize(("role", "unit", "problem"), [
    ("city_admin", "330603", "city"), ("mayor", "330600", "role"), ("registrar", "33060", "unit_code"),
    ("registrar", "339999", "no unit"),
])
async def test_bad_tokens_are_not_created(roster_pool: Any, role: str, unit: str, problem: str) -> None:
    async with roster_pool.acquire() as conn:
        with pytest.raises(ValueError, match=problem):
            await admins.create_token(conn, name="x", role=role, unit_code=unit)
