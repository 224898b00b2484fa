"""Issue #20, finding 2 on dispatch: refused operator calls are audited (who, route, why) and logged as warnings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import httpx
import pytest

from services.dispatch.auth import create_token, revoke_tokens
from shared.refusals import ANONYMOUS_PER_MINUTE

from .conftest import DispatchDb, a_town_with_villages, running_app, token
from .test_input_limits import body


@pytest.fixture
async def client(dispatch_db: DispatchDb) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(dispatch_db, consumers=(), tick=0.2) as c:
        yield c


async def _last_id(db: DispatchDb) -> int:
    async with db.pool.acquire() as conn:
        return int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM audit_log"))


async def _refusals(db: DispatchDb, since: int) -> list[Any]:
    async with db.pool.acquire() as conn:
        return list(await conn.fetch("SELECT operator, role, action, incident_id, after FROM audit_log "
                                     "WHERE id > $1 AND action LIKE 'access.%' ORDER BY id", since))


async def test_refused_calls_are_audited_with_who_route_and_why(
    dispatch_db: DispatchDb, client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    _, villages = a_town_with_villages(1, index=15)
    since = await _last_id(dispatch_db)
    viewer = await token(dispatch_db, role="viewer", unit="330603")
    other_county = await token(dispatch_db, role="county", unit="330602")
    gone = f"gone-{uuid4().hex[:6]}"
    async with dispatch_db.pool.acquire() as conn:
        revoked = await create_token(conn, name=gone, role="city", unit_code="330600")
        await revoke_tokens(conn, name=gone)
    assert (await client.get("/incidents")).status_code == 401
    assert (await client.get("/incidents", headers={"Authorization": "Bearer guessed"})).status_code == 401
    assert (await client.get("/incidents", headers={"Authorization": f"Bearer {revoked}"})).status_code == 401
    assert (await client.post("/incidents", headers=viewer, json=body(villages[0]))).status_code == 403
    assert (await client.post("/incidents", headers=other_county, json=body(villages[0]))).status_code == 403
    rows = await _refusals(dispatch_db, since)
    got = [(r["operator"], r["after"]["route"], r["after"]["status"]) for r in rows]
    assert got[:3] == [("anonymous", "GET /incidents", 401), ("anonymous", "GET /incidents", 401),
                       (gone, "GET /incidents", 401)]
    assert [g[1:] for g in got[3:]] == [("POST /incidents", 403)] * 2
    assert rows[3]["role"] == "viewer" and "viewer" in rows[3]["after"]["reason"]
    assert rows[4]["role"] == "county" and "330602" in rows[4]["after"]["reason"]
    assert rows[1]["after"]["token"] and "guessed" not in str(rows[1]["after"])
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert out.count("access.refused") >= 5 and "warning" in out.lower()


async def test_an_unauthenticated_flood_adds_a_bounded_number_of_rows(
    dispatch_db: DispatchDb, client: httpx.AsyncClient
) -> None:
    since = await _last_id(dispatch_db)
    for _ in range(3 * ANONYMOUS_PER_MINUTE):
        assert (await client.get("/incidents", headers={"Authorization": "Bearer flood"})).status_code == 401
    rows = await _refusals(dispatch_db, since)
    # one minute: the cap's rows; a minute boundary inside the flood: the cap again and one summary row
    assert ANONYMOUS_PER_MINUTE <= len(rows) <= 2 * ANONYMOUS_PER_MINUTE + 1 < 3 * ANONYMOUS_PER_MINUTE
