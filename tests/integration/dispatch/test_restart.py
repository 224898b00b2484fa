"""Dispatch restarted in the middle of a wave resumes its deadline and escalates on time."""

from __future__ import annotations

import asyncio
from datetime import datetime
from uuid import UUID, uuid4

from services.dispatch import usecases
from services.dispatch.units import units
from shared.events import ReplyIntent, ReplyReceived
from shared.vocabulary import Channel

from .conftest import DispatchDb, a_town_with_villages, add_volunteers, now, running_app, token, wait_for


async def test_restart_mid_wave_resumes_deadline_and_escalates_on_time(dispatch_db: DispatchDb) -> None:
    db = dispatch_db
    town, villages = a_town_with_villages(2, index=2)
    village, neighbour = villages[0], villages[1]
    await add_volunteers(db, village, 1)
    await add_volunteers(db, neighbour, 3)
    lat, lon = units().centres[town]
    headers = await token(db, "town", town)
    deadline_s = 3

    async with running_app(db, tick=0.2) as client:
        r = await client.post("/incidents", headers=headers, json={
            "kind": "missing_person", "title": "测试走失", "lat": lat, "lon": lon, "unit_code": village,
            "mode": "drill", "requirements": [{"skill": "first_aid", "count": 1}],
            "policy": {"wave_deadline_seconds": deadline_s},
        })
        assert r.status_code == 201, r.text
        board = r.json()
    # the service is down now, mid-wave; its deadline is in PostgreSQL
    incident_id = UUID(board["incident"]["incident_id"])
    deadline = datetime.fromisoformat(board["next_deadline"])
    assert board["requirements"][0]["level"] == "village"
    async with db.pool.acquire() as conn:
        assert await conn.fetchval("SELECT deadline_at FROM requirements WHERE incident_id = $1", incident_id) == deadline

    await asyncio.sleep(max((deadline - now()).total_seconds(), 0) + 1.0)  # the deadline passes while it is down
    async with db.pool.acquire() as conn:
        assert await conn.fetchval("SELECT level FROM requirements WHERE incident_id = $1", incident_id) == "village"

    # An hourly ticker ticks once, at start: the escalation awaited below can only be its first tick's.
    async with running_app(db, tick=3600) as client:
        async def escalated() -> dict[str, object] | None:
            b = (await client.get(f"/incidents/{incident_id}", headers=headers)).json()
            return b if b["requirements"][0]["level"] == "town" and b["requirements"][0]["wave"] == 2 else None

        board = await wait_for(escalated, timeout=10)

    esc = next(t for t in board["timeline"] if t["kind"] == "escalated")
    esc_at = datetime.fromisoformat(esc["at"])
    assert esc_at >= deadline  # never early
    assert board["callouts_by_state"] == {"timed_out": 1, "requested": 2}  # 1 × factor 2 in the town
    new_deadline = datetime.fromisoformat(board["next_deadline"])
    assert abs((new_deadline - esc_at).total_seconds() - deadline_s) < 1  # next wave armed with its own deadline

    # and, still down-and-up safe: while the service is stopped again the second deadline passes too
    await asyncio.sleep(max((new_deadline - now()).total_seconds(), 0) + 0.5)
    async with running_app(db, tick=0.2) as client:
        async def county() -> dict[str, object] | None:
            b = (await client.get(f"/incidents/{incident_id}", headers=headers)).json()
            return b if b["requirements"][0]["level"] != "town" or b["requirements"][0]["wave"] > 2 else None

        board = await wait_for(county, timeout=10)
    # one volunteer left in the town: the next wave stays in the town before any escalation
    assert board["requirements"][0]["level"] == "town" and board["requirements"][0]["wave"] == 3

    # the villager, timed out since the first deadline, accepts late: it still counts while the need is open
    async with db.pool.acquire() as conn:
        first = await conn.fetchrow("SELECT callout_id, volunteer_id, state FROM callouts WHERE incident_id = $1 "
                                    "AND wave = 1", incident_id)
        assert first["state"] == "timed_out"
        async with conn.transaction():
            await usecases.apply_reply_event(conn, ReplyReceived(
                reply_id=uuid4(), volunteer_id=first["volunteer_id"], callout_id=first["callout_id"],
                intent=ReplyIntent.ACCEPT, text="1", channel=Channel.SMS, received_at=now(), producer="test"))
        states = dict(await conn.fetch("SELECT state, count(*) FROM callouts WHERE incident_id = $1 GROUP BY state",
                                       incident_id))
        req = await conn.fetchrow("SELECT status, filled, deadline_at FROM requirements WHERE incident_id = $1",
                                  incident_id)
    assert (req["status"], req["filled"], req["deadline_at"]) == ("filled", 1, None)
    # every other open call-out was stood down (how many depends on whether one more 3-s wave fired
    # before the late accept landed, on a busy machine: the invariant is that none is left open)
    assert states.get("assigned") == 1 and states.get("cancelled", 0) >= 3
    assert set(states) <= {"assigned", "cancelled", "declined"}
