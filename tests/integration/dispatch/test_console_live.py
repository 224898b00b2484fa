"""The console's live board on the real database: NOTIFY at commit, one read fanned out, the SSE stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest

from services.dispatch.adapters.board_feed import CHANNEL, board_changed
from services.dispatch.console.live import BoardHub
from services.dispatch.units import units
from tests.conftest import StackAddresses

from .conftest import DispatchDb, add_volunteers, dispatch_schema, running_app, served_app, token, wait_for


@pytest.fixture(scope="module")
async def dispatch_db(stack: StackAddresses) -> AsyncIterator[DispatchDb]:
    async with dispatch_schema(stack) as db:
        yield db


def _village() -> str:
    u = units()
    return sorted(c for c in u.names if len(c) == 12 and c.startswith("330602") and c[:9] in u.centres)[0]


async def _open(client: httpx.AsyncClient, headers: dict[str, str], village: str) -> tuple[str, str]:
    lat, lon = units().centres[village[:9]]
    r = await client.post("/incidents", headers=headers, json={
        "kind": "fall", "title": "看板推送测试", "lat": lat, "lon": lon, "unit_code": village, "mode": "emergency",
        "requirements": [{"skill": "first_aid", "count": 1}], "policy": {"max_level": "village"}})
    assert r.status_code == 201, r.text
    board = r.json()
    return board["incident"]["incident_id"], board["requirements"][0]["requirement_id"]


async def test_a_notify_reaches_listeners_at_commit_and_never_on_rollback(dispatch_db: DispatchDb) -> None:
    got: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(dispatch_db.dsn)
    await listener.add_listener(CHANNEL, lambda *args: got.put_nowait(args[3]))
    rolled_back, committed = uuid4(), uuid4()
    try:
        async with dispatch_db.pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            await board_changed(conn, [rolled_back])
            await tx.rollback()
            async with conn.transaction():
                await board_changed(conn, [committed, committed])
                assert got.empty()  # nothing before the commit
        first = await asyncio.wait_for(got.get(), 20)  # notifications arrive in commit order
        assert first == str(committed)
        assert got.empty()  # the duplicate in one transaction is delivered once
    finally:
        await listener.close()


async def test_ten_viewers_get_the_same_frame_from_one_read_with_only_the_changed_rows(dispatch_db: DispatchDb) -> None:
    village = _village()
    vids = await add_volunteers(dispatch_db, village, 3)
    headers = await token(dispatch_db)
    async with running_app(dispatch_db, consumers=()) as client:
        incident_id, requirement_id = await _open(client, headers, village)
        hub = BoardHub(dispatch_db.pool, dispatch_db.dsn)
        try:
            queues = [hub.subscribe(UUID(incident_id)) for _ in range(10)]
            firsts = [json.loads((await asyncio.wait_for(q.get(), 20)).data) for q in queues]
            assert all(f["full"] and len(f["responders"]) == 2 for f in firsts)  # the wave called 2 of 3
            await asyncio.wait_for(hub.listening.wait(), 20)
            # on connecting, the listener re-reads every watched board once (what a lost NOTIFY would have said)
            await wait_for(lambda: all(q.qsize() == 1 for q in queues), timeout=20)
            for q in queues:
                assert json.loads(q.get_nowait().data)["responders"] == []  # nothing changed since the first
            reads = hub.reads
            called = {x["volunteer_id"] for x in firsts[0]["responders"]}
            extra = next(str(v) for v in vids if str(v) not in called)
            r = await client.post(f"/incidents/{incident_id}/callouts", headers=headers,
                                  json={"volunteer_id": extra, "requirement_id": requirement_id})
            assert r.status_code == 201, r.text
            frames = [await asyncio.wait_for(q.get(), 20) for q in queues]
            assert hub.reads == reads + 1  # one read for ten viewers
            assert len({f.seq for f in frames}) == 1
            delta = json.loads(frames[0].data)
            assert not delta["full"]
            assert [x["volunteer_id"] for x in delta["responders"]] == [extra]  # only the changed row
            assert delta["board"]["timeline"][-1]["kind"] == "added_by_hand"
        finally:
            await hub.stop()


async def _frames(resp: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    buf = ""
    async for chunk in resp.aiter_text():
        buf += chunk
        while "\n\n" in buf:
            raw, buf = buf.split("\n\n", 1)
            fields = dict(line.split(": ", 1) for line in raw.splitlines() if ": " in line)
            if "data" in fields:
                yield {"id": fields.get("id"), "event": fields.get("event"), "data": json.loads(fields["data"])}


async def test_the_stream_sends_the_snapshot_then_each_change_and_refuses_other_units(dispatch_db: DispatchDb) -> None:
    village = _village()
    vids = await add_volunteers(dispatch_db, village, 3)
    headers = await token(dispatch_db)
    async with served_app(dispatch_db) as base, httpx.AsyncClient(base_url=base, timeout=30) as client:
        incident_id, requirement_id = await _open(client, headers, village)
        assert (await client.get(f"/incidents/{incident_id}/stream")).status_code == 401
        other = await token(dispatch_db, role="county", unit="330603")
        r = await client.get(f"/incidents/{incident_id}/stream", headers=other)
        assert r.status_code == 403 and "outside" in r.json()["detail"]

        # a reconnect (Last-Event-ID) starts with the whole current board: what it missed
        async with client.stream("GET", f"/incidents/{incident_id}/stream",
                                 headers={**headers, "Last-Event-ID": "7"}) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            frames = _frames(resp)
            first = await asyncio.wait_for(anext(frames), 20)
            assert first["event"] == "board" and first["data"]["board"]["incident"]["incident_id"] == incident_id
            called = {x["volunteer_id"] for x in first["data"]["responders"]}
            extra = next(str(v) for v in vids if str(v) not in called)
            r = await client.post(f"/incidents/{incident_id}/callouts", headers=headers,
                                  json={"volunteer_id": extra, "requirement_id": requirement_id})
            assert r.status_code == 201, r.text

            async def shows_extra() -> Any:
                f = await asyncio.wait_for(anext(frames), 20)
                assert int(f["id"]) > int(first["id"])
                return extra in {x["volunteer_id"] for x in f["data"]["responders"]}

            await wait_for(shows_extra, timeout=30)


async def test_the_live_board_carries_the_latest_timeline_entries_and_the_report_all(
        dispatch_db: DispatchDb, monkeypatch: pytest.MonkeyPatch) -> None:
    """A big call-out has a timeline entry per acceptance: each frame carried (and the page redrew) all of them."""
    from services.dispatch.console import repository

    monkeypatch.setattr(repository, "BOARD_TIMELINE", 3)
    village = _village()
    await add_volunteers(dispatch_db, village, 2)
    headers = await token(dispatch_db)
    async with running_app(dispatch_db, consumers=()) as client:
        incident_id, _ = await _open(client, headers, village)
        async with dispatch_db.pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO timeline (incident_id, at, kind, detail) "
                "SELECT $1, now() + make_interval(secs => n), 'escalated', jsonb_build_object('n', n) "
                "FROM generate_series(1, 5) AS n", UUID(incident_id))
            snap = await repository.snapshot(conn, UUID(incident_id))
        assert [t["detail"].get("n") for t in snap["board"]["timeline"]] == [3, 4, 5]  # the latest, oldest first
        report = (await client.get(f"/incidents/{incident_id}/report", headers=headers)).json()
        assert len(report["timeline"]) >= 7  # opened, the wave, and the five


async def test_the_volunteer_search_says_who_is_already_on_another_incident(dispatch_db: DispatchDb) -> None:
    """Break-it review: a manual add gave no sign that the person was assigned elsewhere."""
    from services.dispatch import usecases
    from services.dispatch.console import repository
    from shared.events import ReplyIntent, ReplyReceived
    from shared.vocabulary import Channel

    from .conftest import now

    village = _village()
    vids = await add_volunteers(dispatch_db, village, 2, skill="water_rescue")
    headers = await token(dispatch_db)
    async with running_app(dispatch_db, consumers=()) as client:
        r = await client.post("/incidents", headers=headers, json={
            "kind": "drowning", "title": "搜索提示测试", "lat": units().centres[village[:9]][0],
            "lon": units().centres[village[:9]][1], "unit_code": village, "mode": "emergency",
            "requirements": [{"skill": "water_rescue", "count": 2}], "policy": {"max_level": "village"}})
        assert r.status_code == 201, r.text
        incident_id = UUID(r.json()["incident"]["incident_id"])
    async with dispatch_db.pool.acquire() as conn:
        cid = await conn.fetchval("SELECT callout_id FROM callouts WHERE incident_id = $1 AND volunteer_id = $2",
                                  incident_id, vids[0])
        async with conn.transaction():
            await usecases.apply_reply_batch(conn, [ReplyReceived(
                reply_id=uuid4(), volunteer_id=vids[0], callout_id=cid, intent=ReplyIntent.ACCEPT, text="1",
                channel=Channel.SMS, received_at=now(), producer="test")])
        found = await repository.search_volunteers(conn, unit_prefix=village, text="", skill="water_rescue", limit=50)
    by_id = {f["volunteer_id"]: f for f in found}
    assert by_id[str(vids[0])]["engaged_in"] == "搜索提示测试" and by_id[str(vids[1])]["engaged_in"] is None
