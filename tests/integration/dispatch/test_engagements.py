"""No double booking on the real database (issue #14): one volunteer, two open incidents, simultaneous accepts.

Exactly one acceptance is assigned; the other call-out is declined ``engaged_elsewhere`` and its
volunteer is answered with the incident they are on (``CallOutCancelled`` reason ``engaged_elsewhere``
in the outbox). The one-by-one path (:func:`apply_reply_event`) and the batch path
(:func:`apply_reply_batch`) race each other, as two consumer replicas would. Releasing (a withdrawal,
a close) frees the person again; an operator moves them explicitly, audited.
"""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.dispatch import usecases
from services.dispatch.errors import AccessDenied, InvalidInput
from services.dispatch.units import units
from shared.events import (
    CallOutCancelled,
    CancelReason,
    IncidentMode,
    ReplyIntent,
    ReplyReceived,
    parse_event,
)
from shared.outbox import event_headers
from shared.topics import CALLOUT, REPLY
from shared.vocabulary import Channel

from .conftest import DispatchDb, a_town_with_villages, add_volunteers, now, running_app, token, wait_for

SKILL = "water_rescue"
ACTOR = usecases.Actor("t", "city", "330600")


async def two_incidents(db: DispatchDb, index: int) -> tuple[UUID, list[UUID], list[UUID]]:
    """One volunteer with a skill nobody near has, and two incidents at the same spot calling them."""
    town, villages = a_town_with_villages(1, index=index)
    skill = SKILL
    [vid] = await add_volunteers(db, villages[0], 1, skill=skill)
    lat, lon = units().centres[town]
    incidents, calls = [], []
    async with db.pool.acquire() as conn:
        for title in ("鉴湖溺水", "平水山体滑坡"):
            iid = await usecases.open_incident(conn, usecases.IncidentInput(
                kind="t", title=title, lat=lat, lon=lon, unit_code=villages[0], mode=IncidentMode.DRILL,
                requirements=[usecases.RequirementInput(skill, None, 1)], max_level=None,
                wave_deadline_seconds=600,
            ), ACTOR, place="x")
            cid = await conn.fetchval("SELECT callout_id FROM callouts WHERE incident_id = $1 AND volunteer_id = $2",
                                      iid, vid)
            assert cid is not None
            incidents.append(iid)
            calls.append(cid)
    return vid, incidents, calls


def reply(vid: UUID, cid: UUID, intent: ReplyIntent = ReplyIntent.ACCEPT) -> ReplyReceived:
    return ReplyReceived(reply_id=uuid4(), volunteer_id=vid, callout_id=cid, intent=intent, text="1",
                         channel=Channel.SMS, received_at=now(), producer="test")


async def one_by_one(db: DispatchDb, ev: ReplyReceived) -> None:
    async with db.pool.acquire() as conn, conn.transaction():
        await usecases.apply_reply_event(conn, ev)


async def batch(db: DispatchDb, ev: ReplyReceived) -> None:
    async with db.pool.acquire() as conn, conn.transaction():
        await usecases.apply_reply_batch(conn, [ev])


async def states(conn: asyncpg.Connection, calls: list[UUID]) -> list[tuple[str, str | None]]:
    rows = {r["callout_id"]: (r["state"], r["cancel_reason"]) for r in await conn.fetch(
        "SELECT callout_id, state, cancel_reason FROM callouts WHERE callout_id = ANY($1::uuid[])", calls)}
    return [rows[c] for c in calls]


@pytest.mark.parametrize("paths", [(one_by_one, one_by_one), (batch, batch), (one_by_one, batch)])
@pytest.mark.parametrize("rnd", range(3))
async def test_simultaneous_accepts_in_two_incidents_assign_once(
    dispatch_db: DispatchDb, paths: tuple[Any, Any], rnd: int
) -> None:
    db = dispatch_db
    vid, incidents, calls = await two_incidents(db, index=60 + rnd + 3 * [one_by_one, batch].index(paths[1]))
    await asyncio.gather(*(path(db, reply(vid, cid)) for path, cid in zip(paths, calls, strict=True)))

    async with db.pool.acquire() as conn:
        got = await states(conn, calls)
        assert sorted(got) == [("assigned", None), ("declined", "engaged_elsewhere")], got
        won = calls[[s for s, _ in got].index("assigned")]
        lost_incident = incidents[[s for s, _ in got].index("declined")]
        won_incident = incidents[calls.index(won)]
        assert dict(await conn.fetchrow("SELECT incident_id, callout_id FROM engagements WHERE volunteer_id = $1",
                                        vid)) == {"incident_id": won_incident, "callout_id": won}
        filled = {r["incident_id"]: r["filled"] for r in await conn.fetch(
            "SELECT incident_id, filled FROM requirements WHERE incident_id = ANY($1::uuid[])", incidents)}
        assert filled == {won_incident: 1, lost_incident: 0}
        notes = sorted(r["note"] for r in await conn.fetch(
            "SELECT note FROM replies WHERE volunteer_id = $1", vid))
        assert notes == ["assigned", "engaged_elsewhere"]
        answer = await conn.fetchrow(
            "SELECT payload FROM outbox WHERE headers->>'event_type' = 'CallOutCancelled' "
            "AND headers->>'correlation_id' = $1", str(lost_incident))
        won_title = await conn.fetchval("SELECT title FROM incidents WHERE incident_id = $1", won_incident)
    assert answer is not None
    payload = orjson.loads(answer["payload"])
    assert payload["reason"] == "engaged_elsewhere" and payload["engaged_incident_title"] == won_title


async def test_released_person_can_accept_again_and_the_database_refuses_a_double_booking(
    dispatch_db: DispatchDb,
) -> None:
    db = dispatch_db
    vid, incidents, calls = await two_incidents(db, index=70)
    await one_by_one(db, reply(vid, calls[0]))
    await one_by_one(db, reply(vid, calls[1]))
    async with db.pool.acquire() as conn:
        assert await states(conn, calls) == [("assigned", None), ("declined", "engaged_elsewhere")]
        # a writer that skips the claim is refused by PostgreSQL itself (the trigger's insert hits the key)
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute("UPDATE callouts SET state = 'assigned' WHERE callout_id = $1", calls[1])
    await one_by_one(db, reply(vid, calls[0], ReplyIntent.DECLINE))  # withdraws: free again
    await one_by_one(db, reply(vid, calls[1]))
    async with db.pool.acquire() as conn:
        assert [s for s, _ in await states(conn, calls)] == ["declined", "assigned"]
        assert await conn.fetchval("SELECT incident_id FROM engagements WHERE volunteer_id = $1", vid) == incidents[1]
        await usecases.close_incident(conn, incidents[1], "done", ACTOR)
        assert await conn.fetchval("SELECT count(*) FROM engagements WHERE volunteer_id = $1", vid) == 0


async def test_an_operator_moves_a_person_between_incidents(dispatch_db: DispatchDb) -> None:
    db = dispatch_db
    vid, incidents, calls = await two_incidents(db, index=71)
    await one_by_one(db, reply(vid, calls[0]))
    await one_by_one(db, reply(vid, calls[1]))
    async with db.pool.acquire() as conn:
        rid = await conn.fetchval("SELECT requirement_id FROM requirements WHERE incident_id = $1", incidents[1])
    async with running_app(db, consumers=(), tick=0.2) as client:
        client: httpx.AsyncClient  # type: ignore[no-redef]
        headers = await token(db)
        r = await client.post(f"/incidents/{incidents[1]}/moves", headers=headers,
                              json={"volunteer_id": str(vid), "requirement_id": str(rid)})
        assert r.status_code == 201, r.text
        assert r.json() == {"volunteer_id": str(vid), "from_incident_id": str(incidents[0]),
                            "from_callout_id": str(calls[0]), "to_incident_id": str(incidents[1]),
                            "to_callout_id": str(calls[1])}
        again = await client.post(f"/incidents/{incidents[1]}/moves", headers=headers,
                                  json={"volunteer_id": str(vid), "requirement_id": str(rid)})
        assert again.status_code == 409, again.text
    async with db.pool.acquire() as conn:
        assert await states(conn, calls) == [("cancelled", "removed"), ("assigned", None)]
        assert await conn.fetchval("SELECT incident_id FROM engagements WHERE volunteer_id = $1", vid) == incidents[1]
        filled = [await conn.fetchval("SELECT filled FROM requirements WHERE incident_id = $1", i) for i in incidents]
        assert filled == [0, 1]
        audit = await conn.fetchrow("SELECT before, after FROM audit_log WHERE action = 'volunteer.move' "
                                    "AND incident_id = $1", incidents[1])
    assert audit["before"]["incident_id"] == str(incidents[0]) and audit["after"]["callout_id"] == str(calls[1])


async def test_a_move_into_an_incident_that_never_called_them_tells_them_where_to_go_once(
        dispatch_db: DispatchDb) -> None:
    """Regression (break-it review): the move's confirmation had no meeting point, an empty map position and no
    callback number, and a move into an incident that had not called them sent a "回复1接受" call-out first."""
    db = dispatch_db
    vid, incidents, calls = await two_incidents(db, index=73)
    await one_by_one(db, reply(vid, calls[0]))
    town, villages = a_town_with_villages(1, index=74)
    lat, lon = units().centres[town]
    async with db.pool.acquire() as conn:
        third = await usecases.open_incident(conn, usecases.IncidentInput(
            kind="t", title="柯岩山体滑坡", lat=lat, lon=lon, unit_code=villages[0], mode=IncidentMode.DRILL,
            requirements=[usecases.RequirementInput("first_aid", None, 1)], max_level=None,
            wave_deadline_seconds=600, meeting_point="柯岩景区东门", callback_phone="0575-84123456",
        ), ACTOR, place="x")
        rid = await conn.fetchval("SELECT requirement_id FROM requirements WHERE incident_id = $1", third)
        assert await conn.fetchval("SELECT 1 FROM callouts WHERE incident_id = $1 AND volunteer_id = $2",
                                   third, vid) is None
        async with conn.transaction():
            mark = await conn.fetchval("SELECT coalesce(max(id), 0) FROM outbox")
            moved = await usecases.move_volunteer(conn, vid, third, rid, ACTOR)
            events = [parse_event(bytes(r["payload"], "utf-8") if isinstance(r["payload"], str) else r["payload"])
                      for r in await conn.fetch("SELECT payload FROM outbox WHERE id > $1 ORDER BY id", mark)]
    mine = [e for e in events if getattr(e, "callout_id", None) == moved.to_callout_id]
    assert [type(e).__name__ for e in mine] == ["CallOutAssigned"]  # told, not asked first
    [assigned] = mine
    assert assigned.meeting_point == "柯岩景区东门" and assigned.callback_phone == "0575-84123456"
    assert assigned.map_url and "position=," not in assigned.map_url and assigned.reply_code


async def test_two_accepts_over_kafka_assign_once_and_the_answer_is_published(dispatch_db: DispatchDb) -> None:
    """The same race end to end on the real broker: both accepts published at once to ``notify.reply.v1``,
    applied by the running consumer, and the answer relayed to ``dispatch.callout.v1``."""
    db = dispatch_db
    vid, incidents, calls = await two_incidents(db, index=72)
    consumer = AIOKafkaConsumer(bootstrap_servers=db.bootstrap, enable_auto_commit=False)
    await consumer.start()
    producer = AIOKafkaProducer(bootstrap_servers=db.bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        parts = [TopicPartition(CALLOUT.name, p) for p in range(CALLOUT.partitions)]
        start = dict(await consumer.end_offsets(parts))
        async with running_app(db, consumers=("replies",), tick=0.2):

            async def publish(ev: ReplyReceived) -> None:
                headers = [(k, v.encode()) for k, v in event_headers(ev).items()]
                await producer.send_and_wait(REPLY.name, ev.to_bytes(), key=str(vid).encode(), headers=headers)

            await asyncio.gather(*(publish(reply(vid, cid)) for cid in calls))

            async def settled() -> list[tuple[str, str | None]] | None:
                async with db.pool.acquire() as conn:
                    got = await states(conn, calls)
                return got if all(s != "requested" for s, _ in got) else None

            got = await wait_for(settled)
            assert sorted(got) == [("assigned", None), ("declined", "engaged_elsewhere")], got
            lost = calls[[s for s, _ in got].index("declined")]
            won_title = ["鉴湖溺水", "平水山体滑坡"][[s for s, _ in got].index("assigned")]

            consumer.assign(parts)
            for tp, offset in start.items():
                consumer.seek(tp, offset)

            async def answer() -> Any:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for rec in records:
                        ev = parse_event(rec.value)
                        if isinstance(ev, CallOutCancelled) and ev.callout_id == lost:
                            return ev
                return None

            ev = await wait_for(answer)
    finally:
        await producer.stop()
        await consumer.stop()
    assert ev.reason is CancelReason.ENGAGED_ELSEWHERE and ev.engaged_incident_title == won_title
    assert ev.volunteer_id == vid


async def test_a_move_refuses_a_person_who_withdrew_consent(dispatch_db: DispatchDb) -> None:
    """Regression (break-it review): a move skipped the consent, retired and home-unit checks of a manual add."""
    db = dispatch_db
    vid, incidents, calls = await two_incidents(db, index=75)
    await one_by_one(db, reply(vid, calls[0]))
    async with db.pool.acquire() as conn:
        rid = await conn.fetchval("SELECT requirement_id FROM requirements WHERE incident_id = $1", incidents[1])
        await conn.execute("UPDATE volunteers SET consent = false WHERE volunteer_id = $1", vid)
        with pytest.raises(InvalidInput, match="consent"):
            await usecases.move_volunteer(conn, vid, incidents[1], rid, ACTOR)
        assert await conn.fetchval("SELECT incident_id FROM engagements WHERE volunteer_id = $1", vid) == incidents[0]
        town = usecases.Actor("t", "town", "330602001")  # another unit than the incidents'
        await conn.execute("UPDATE volunteers SET consent = true WHERE volunteer_id = $1", vid)
        with pytest.raises(AccessDenied):
            await usecases.move_volunteer(conn, vid, incidents[1], rid, town)


async def test_a_team_on_its_way_books_its_members_too(dispatch_db: DispatchDb) -> None:
    """Regression (break-it review): only the team's leader was engaged, so a member of a team assigned in one
    incident accepted another incident's call-out and was booked twice; selection called them too."""
    from services.dispatch.adapters import projection
    from shared.events import TeamUpdated
    from shared.vocabulary import TeamType

    db = dispatch_db
    town, villages = a_town_with_villages(1, index=76)
    leader, member = await add_volunteers(db, villages[0], 2, skill=SKILL)
    team_id = uuid4()
    lat, lon = units().centres[town]
    async with db.pool.acquire() as conn:
        await projection.apply_team(conn, TeamUpdated(
            team_id=team_id, revision=1, name="测试水上救援队", team_type=TeamType.WATER, unit_code=villages[0],
            leader_id=leader, member_ids=(leader, member)))
        team_incident = await usecases.open_incident(conn, usecases.IncidentInput(
            kind="t", title="鉴湖溺水（队伍）", lat=lat, lon=lon, unit_code=villages[0], mode=IncidentMode.DRILL,
            requirements=[usecases.RequirementInput(None, "water", 1)], max_level=None, wave_deadline_seconds=600,
        ), ACTOR, place="x")
        team_call = await conn.fetchval("SELECT callout_id FROM callouts WHERE incident_id = $1 AND team_id = $2",
                                        team_incident, team_id)
    assert team_call is not None
    await one_by_one(db, reply(leader, team_call))
    async with db.pool.acquire() as conn:
        booked = {r["volunteer_id"]: r["incident_id"] for r in await conn.fetch(
            "SELECT volunteer_id, incident_id FROM engagements WHERE callout_id = $1", team_call)}
        assert booked == {leader: team_incident, member: team_incident}
        # another incident at the same spot: its wave leaves the member out (engaged with their team) ...
        other = await usecases.open_incident(conn, usecases.IncidentInput(
            kind="t", title="平水溺水（个人）", lat=lat, lon=lon, unit_code=villages[0], mode=IncidentMode.DRILL,
            requirements=[usecases.RequirementInput(SKILL, None, 1)], max_level=None, wave_deadline_seconds=600,
        ), ACTOR, place="x")
        called = {r["volunteer_id"] for r in await conn.fetch(
            "SELECT volunteer_id FROM callouts WHERE incident_id = $1", other)}
        assert member not in called and leader not in called
        # ... and when an operator adds them by hand, their acceptance is answered "engaged elsewhere"
        rid = await conn.fetchval("SELECT requirement_id FROM requirements WHERE incident_id = $1", other)
        cid = await usecases.add_volunteer(conn, other, rid, member, ACTOR)
    await one_by_one(db, reply(member, cid))
    async with db.pool.acquire() as conn:
        assert await states(conn, [cid]) == [("declined", "engaged_elsewhere")]
        await usecases.close_incident(conn, team_incident, "完成", ACTOR)
        assert await conn.fetchval("SELECT count(*) FROM engagements WHERE callout_id = $1", team_call) == 0
