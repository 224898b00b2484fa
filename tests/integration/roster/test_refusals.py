"""Issue #20, finding 2 on the roster: every refused call is audited (who, route, why) and logged as a warning."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from services.roster import admins
from shared.refusals import ANONYMOUS_PER_MINUTE
from tests.integration.roster.test_admins import OTHER_COUNTY_VILLAGE, _client, app
from tests.integration.roster.test_api import body

__all__ = ["app"]


async def _refusals(pool: Any, since: int) -> list[Any]:
    async with pool.acquire() as conn:
        return list(await conn.fetch("SELECT actor, role, action, subject, after FROM audit_log "
                                     "WHERE id > $1 AND action LIKE 'access.%' ORDER BY id", since))


async def _last_id(pool: Any) -> int:
    async with pool.acquire() as conn:
        return int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM audit_log"))


async def test_no_wrong_revoked_and_out_of_scope_calls_are_audited_and_logged(
    app: Any, roster_pool: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    since = await _last_id(roster_pool)
    name = f"refused-registrar-{uuid.uuid4().hex[:6]}"
    gone = f"revoked-{uuid.uuid4().hex[:6]}"
    async with roster_pool.acquire() as conn:
        token = await admins.create_token(conn, name=name, role="registrar", unit_code="330603")
        revoked = await admins.create_token(conn, name=gone, role="registrar", unit_code="330603")
        await admins.revoke_token(conn, gone)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://roster") as anon:
        assert (await anon.get("/volunteers")).status_code == 401
    async with _client(app, "not-the-token-at-all") as wrong:
        assert (await wrong.delete(f"/teams/{uuid.uuid4()}")).status_code == 401
    async with _client(app, revoked) as c:
        assert (await c.post("/volunteers", json=body())).status_code == 401
    async with _client(app, token) as c:
        assert (await c.post("/volunteers", json=body(unit_code=OTHER_COUNTY_VILLAGE))).status_code == 403
    rows = await _refusals(roster_pool, since)
    assert [(r["actor"], r["subject"], r["after"]["status"]) for r in rows] == [
        ("anonymous", "GET /volunteers", 401),
        ("anonymous", "DELETE /teams/{team_id}", 401),
        (gone, "POST /volunteers", 401),
        (name, "POST /volunteers", 403),
    ]
    assert "revoked" in rows[2]["after"]["reason"] and OTHER_COUNTY_VILLAGE in rows[3]["after"]["reason"]
    assert rows[1]["after"]["token"] and "not-the-token" not in str(rows[1]["after"])
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert out.count("access.refused") >= 4 and "warning" in out.lower()


async def test_an_unauthenticated_flood_adds_a_bounded_number_of_rows(app: Any, roster_pool: Any) -> None:
    since = await _last_id(roster_pool)
    async with _client(app, "flooding-the-roster") as c:
        for _ in range(3 * ANONYMOUS_PER_MINUTE):
            assert (await c.get("/volunteers")).status_code == 401
    rows = await _refusals(roster_pool, since)
    # one minute: the cap's rows; a minute boundary inside the flood: the cap again and one summary row
    assert ANONYMOUS_PER_MINUTE <= len(rows) <= 2 * ANONYMOUS_PER_MINUTE + 1 < 3 * ANONYMOUS_PER_MINUTE
