"""Service hours on the real database (issue #19): arrival to release, set by triggers; the record and roll-up."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import timedelta
from uuid import UUID, uuid4

import openpyxl
import pytest

from services.dispatch import usecases
from services.dispatch.units import units
from shared.events import IncidentMode, ReplyIntent, ReplyReceived
from shared.vocabulary import Channel
from tests.conftest import StackAddresses

from .conftest import (
    DispatchDb,
    a_town_with_villages,
    add_volunteers,
    dispatch_schema,
    now,
    running_app,
    token,
)

ACTOR = usecases.Actor("t", "city", "330600")


@pytest.fixture(scope="module")
async def dispatch_db(stack: StackAddresses) -> AsyncIterator[DispatchDb]:
    async with dispatch_schema(stack) as db:
        yield db


async def _arrive(db: DispatchDb, vid: UUID, cid: UUID) -> None:
    for intent in (ReplyIntent.ACCEPT, ReplyIntent.ARRIVED):
        ev = ReplyReceived(reply_id=uuid4(), volunteer_id=vid, callout_id=cid, intent=intent, text="1",
                           channel=Channel.SMS, received_at=now(), producer="test")
        async with db.pool.acquire() as conn, conn.transaction():
            await usecases.apply_reply_batch(conn, [ev])


async def test_service_runs_from_arrival_to_release_and_rolls_up(dispatch_db: DispatchDb) -> None:
    db = dispatch_db
    town, villages = a_town_with_villages(1, index=17)
    vids = await add_volunteers(db, villages[0], 2, skill="water_rescue")
    lat, lon = units().centres[town]
    async with db.pool.acquire() as conn:
        iid = await usecases.open_incident(conn, usecases.IncidentInput(
            kind="drowning", title="鉴湖溺水", lat=lat, lon=lon, unit_code=villages[0], mode=IncidentMode.EMERGENCY,
            requirements=[usecases.RequirementInput("water_rescue", None, 2)], max_level=None,
            wave_deadline_seconds=600), ACTOR, place="x")
        calls = {r["volunteer_id"]: r["callout_id"] for r in await conn.fetch(
            "SELECT volunteer_id, callout_id FROM callouts WHERE incident_id = $1", iid)}
    assert set(calls) == set(vids)
    for v in vids:
        await _arrive(db, v, calls[v])
    async with db.pool.acquire() as conn:
        # an hour on scene for the first (arrived an hour ago), then removed by hand: released at that moment
        await conn.execute("UPDATE callouts SET arrived_at = now() - interval '1 hour' WHERE callout_id = $1",
                           calls[vids[0]])
        await usecases.remove_callout(conn, iid, calls[vids[0]], ACTOR)
        first = await conn.fetchrow("SELECT state, released_at, arrived_at FROM callouts WHERE callout_id = $1",
                                    calls[vids[0]])
        assert first["state"] == "cancelled" and first["released_at"] is not None
        assert timedelta(minutes=59) < first["released_at"] - first["arrived_at"] < timedelta(minutes=61)
        second = await conn.fetchval("SELECT released_at FROM callouts WHERE callout_id = $1", calls[vids[1]])
        assert second is None  # still on scene
        await conn.execute("UPDATE callouts SET arrived_at = now() - interval '2 hours' WHERE callout_id = $1",
                           calls[vids[1]])
        await usecases.close_incident(conn, iid, "救起", ACTOR)
        second_row = await conn.fetchrow("SELECT state, released_at, arrived_at FROM callouts WHERE callout_id = $1",
                                         calls[vids[1]])
        assert second_row["state"] == "arrived" and second_row["released_at"] is not None  # released by the close

    headers = await token(db)
    async with running_app(db, consumers=()) as client:
        r = await client.get(f"/volunteers/{vids[1]}/service", headers=headers)
        assert r.status_code == 200, r.text
        record = r.json()
        assert record["deployments"] == 1 and 1.95 < record["hours"] < 2.05 and record["drill_hours"] == 0
        assert record["spells"][0]["title"] == "鉴湖溺水"
        town_figures = (await client.get("/service-hours", headers=headers, params={"unit_code": town})).json()
        [village] = [u for u in town_figures["units"] if u["unit_code"] == villages[0]]
        assert village["volunteers"] == 2 and village["deployments"] == 2 and 2.9 < village["hours"] < 3.1
        other_county = await token(db, role="county", unit="330681" if not town.startswith("330681") else "330602")
        refused = await client.get(f"/volunteers/{vids[1]}/service", headers=other_county)
        assert refused.status_code == 403
        assert (await client.get(f"/volunteers/{uuid4()}/service", headers=headers)).status_code == 404
        assert (await client.get("/service-hours", headers=headers, params={"year": 448})).status_code == 422

        # the star ratings of the village, explained, and the annual review's workbook
        stars = (await client.get("/service-hours/stars", headers=headers, params={"unit_code": villages[0]})).json()
        mine = {v["volunteer_id"]: v for v in stars["volunteers"]}
        assert set(mine) == {str(v) for v in vids}
        assert mine[str(vids[1])]["stars"] == 0 and "累计服务 2.0 小时" in mine[str(vids[1])]["explanation"]
        assert mine[str(vids[1])]["next_level_needs"].startswith("距一星还差 98.0 小时")
        x = await client.get("/service-hours/stars.xlsx", headers=headers, params={"unit_code": villages[0]})
        assert x.status_code == 200 and x.headers["content-type"].startswith("application/vnd.openxmlformats")
    ws = openpyxl.load_workbook(io.BytesIO(x.content)).active
    assert ws is not None
    rows = list(ws.iter_rows(values_only=True))
    assert rows[0] == ("姓名", "单位", "单位代码", "本年服务小时", "星级", "说明", "下一级")
    assert len(rows) == 3 and {r[2] for r in rows[1:]} == {villages[0]}
    assert sorted(round(r[3]) for r in rows[1:]) == [1, 2] and {r[4] for r in rows[1:]} == {0}
