"""Operator API on the real database: bad input writes nothing, scopes and roles, operator actions, audit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from services.dispatch import usecases
from services.dispatch.adapters import projection
from services.dispatch.units import units
from shared.events import (
    MessageDelivered,
    MessageFailed,
    MessageKind,
    MessageSent,
    ReplyIntent,
    ReplyReceived,
    TeamUpdated,
)
from shared.vocabulary import Channel, TeamType
from tests.conftest import StackAddresses

from .conftest import (
    DispatchDb,
    a_town_with_villages,
    add_volunteers,
    dispatch_schema,
    now,
    running_app,
    token,
    wait_for,
)

TABLES = ("incidents", "requirements", "callouts", "outbox", "audit_log", "timeline")


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


def incident_body(village: str, **over: Any) -> dict[str, Any]:
    lat, lon = units().centres[village[:9]]
    body: dict[str, Any] = {
        "kind": "fall", "title": "测试坠落", "lat": lat, "lon": lon, "unit_code": village, "mode": "emergency",
        "requirements": [{"skill": "first_aid", "count": 1}],
    }
    body.update(over)
    return body


@pytest.mark.parametrize(
    ("change", "status", "detail"),
    [
        ({"requirements": [{"skill": "juggling", "count": 1}]}, 422, "unknown skill"),
        ({"requirements": [{"skill": "first_aid", "count": 0}]}, 422, "at least 1"),
        ({"requirements": [{"skill": "first_aid", "count": 10**6}]}, 422, "more than"),
        ({"requirements": []}, 422, "at least one requirement"),
        ({"lat": 31.23, "lon": 121.47}, 422, "outside the city"),
        ({"unit_code": "330683999999"}, 422, "not in Shaoxing"),
        ({"mode": "drill"}, 422, "drill must give"),
        ({"start_level": "city", "policy": {"max_level": "town"}}, 422, "above max level"),
    ],
)
async def test_bad_input_is_refused_and_writes_nothing(
    dispatch_db: DispatchDb, client: httpx.AsyncClient, change: dict[str, Any], status: int, detail: str
) -> None:
    _, villages = a_town_with_villages(1, index=3)
    headers = await token(dispatch_db)
    before = await counts(dispatch_db)
    r = await client.post("/incidents", headers=headers, json=incident_body(villages[0], **change))
    assert r.status_code == status and detail in r.json()["detail"], r.text
    assert await counts(dispatch_db) == before


async def test_point_in_another_county_is_refused(dispatch_db: DispatchDb, client: httpx.AsyncClient) -> None:
    u = units()
    keqiao = next(c for c in u.names if len(c) == 12 and c.startswith("330603") and c[:9] in u.centres)
    shengzhou_town = next(c for c in u.centres if len(c) == 9 and c.startswith("330683"))
    lat, lon = u.centres[shengzhou_town]
    headers = await token(dispatch_db)
    before = await counts(dispatch_db)
    r = await client.post("/incidents", headers=headers, json=incident_body(keqiao, lat=lat, lon=lon))
    assert r.status_code == 422 and "is not in" in r.json()["detail"]
    assert await counts(dispatch_db) == before


async def test_tokens_roles_and_scope(dispatch_db: DispatchDb, client: httpx.AsyncClient) -> None:
    town, villages = a_town_with_villages(1, index=4)
    other_county = "330683" if not town.startswith("330683") else "330602"
    body = incident_body(villages[0])
    viewer = await token(dispatch_db, "viewer", town[:6])
    outsider = await token(dispatch_db, "county", other_county)
    before = await counts(dispatch_db)
    assert (await client.post("/incidents", json=body)).status_code == 401
    assert (await client.post("/incidents", json=body, headers={"Authorization": "Bearer nope"})).status_code == 401
    assert (await client.post("/incidents", json=body, headers=viewer)).status_code == 403
    assert (await client.post("/incidents", json=body, headers=outsider)).status_code == 403
    assert await counts(dispatch_db) == before

    town_op = await token(dispatch_db, "town", town)
    r = await client.post("/incidents", json=body, headers=town_op)
    assert r.status_code == 201, r.text
    iid = r.json()["incident"]["incident_id"]
    assert (await client.get(f"/incidents/{iid}", headers=viewer)).status_code == 200
    assert (await client.get(f"/incidents/{iid}", headers=outsider)).status_code == 403
    assert (await client.post(f"/incidents/{iid}/stand-down", headers=viewer)).status_code == 403
    assert (await client.post(f"/incidents/{iid}/close", json={"outcome": "x"}, headers=outsider)).status_code == 403
    listed = (await client.get("/incidents", headers=viewer)).json()
    assert iid in [i["incident_id"] for i in listed]
    assert iid not in [i["incident_id"] for i in (await client.get("/incidents", headers=outsider)).json()]
    assert (await client.get(f"/incidents/{uuid4()}", headers=town_op)).status_code == 404


async def test_operator_actions_replies_and_audit(dispatch_db: DispatchDb, client: httpx.AsyncClient) -> None:
    db = dispatch_db
    town, villages = a_town_with_villages(2, index=5)
    village = villages[0]
    called = await add_volunteers(db, village, 2)
    spare = (await add_volunteers(db, villages[1], 1))[0]
    op = await token(db, "county", town[:6])
    r = await client.post("/incidents", headers=op, json=incident_body(
        village, requirements=[{"skill": "first_aid", "count": 2}], policy={"over_call_factor": 1, "max_level": "village"}))
    assert r.status_code == 201, r.text
    board = r.json()
    iid = UUID(board["incident"]["incident_id"])
    rid = board["requirements"][0]["requirement_id"]
    assert board["callouts_by_state"] == {"requested": 2}

    # add the spare by hand; adding them twice is a conflict
    r = await client.post(f"/incidents/{iid}/callouts", headers=op, json={"volunteer_id": str(spare), "requirement_id": rid})
    assert r.status_code == 201
    spare_call = UUID(r.json()["callout_id"])
    r2 = await client.post(f"/incidents/{iid}/callouts", headers=op, json={"volunteer_id": str(spare), "requirement_id": rid})
    assert r2.status_code == 409

    calls = {c["volunteer_id"]: c for c in (await client.get(f"/incidents/{iid}/callouts", headers=op)).json()}
    codes = {c["reply_code"] for c in calls.values()}
    assert all(len(c) == 2 for c in codes)

    def reply(vid: UUID, cid: UUID | None, intent: ReplyIntent) -> ReplyReceived:
        return ReplyReceived(reply_id=uuid4(), volunteer_id=vid, callout_id=cid, intent=intent, text=intent.value,
                             channel=Channel.WECHAT, received_at=now(), producer="test")

    async with db.pool.acquire() as conn:  # the consumer's handler, in a transaction as the consumer runs it
        for vid in called:
            async with conn.transaction():
                await usecases.apply_reply_event(conn, reply(vid, UUID(calls[str(vid)]["callout_id"]), ReplyIntent.ACCEPT))
        async with conn.transaction():  # filled: the spare was stood down already; their accept changes nothing
            await usecases.apply_reply_event(conn, reply(spare, spare_call, ReplyIntent.ACCEPT))
        async with conn.transaction():
            await usecases.apply_reply_event(conn, reply(spare, None, ReplyIntent.UNRECOGNISED))

    board = (await client.get(f"/incidents/{iid}", headers=op)).json()
    assert board["requirements"][0]["status"] == "filled" and board["requirements"][0]["filled"] == 2
    assert board["callouts_by_state"] == {"assigned": 2, "cancelled": 1}

    # remove an assigned volunteer by hand: the need reopens with its deadline due now; the ticker finds no
    # one left in the village (the highest level allowed here) and flags it unfilled
    one = UUID(calls[str(called[0])]["callout_id"])
    assert (await client.delete(f"/incidents/{iid}/callouts/{one}", headers=op)).status_code == 200

    async def unfilled() -> dict[str, Any] | None:
        b = (await client.get(f"/incidents/{iid}", headers=op)).json()
        return b if b["requirements"][0]["status"] == "unfilled" else None

    board = await wait_for(unfilled, timeout=10)
    assert board["requirements"][0]["outstanding"] == 1
    kinds = [t["kind"] for t in board["timeline"]]
    assert kinds.index("removed_by_hand") > kinds.index("filled") and kinds[-1] == "unfilled" and "reopened" in kinds

    assert (await client.post(f"/incidents/{iid}/stand-down", headers=op)).json()["stood_down"] >= 1
    r = await client.post(f"/incidents/{iid}/close", headers=op, json={"outcome": "resolved"})
    assert r.status_code == 200 and r.json()["incident"]["status"] == "closed"
    assert (await client.post(f"/incidents/{iid}/close", headers=op, json={"outcome": "again"})).status_code == 409

    async with db.pool.acquire() as conn:  # a reply after closing is recorded, not applied
        async with conn.transaction():
            await usecases.apply_reply_event(conn, reply(called[1], UUID(calls[str(called[1])]["callout_id"]),
                                                         ReplyIntent.ARRIVED))
    final = {c["volunteer_id"]: c for c in (await client.get(f"/incidents/{iid}/callouts", headers=op)).json()}
    assert [(x["note"], x["applied"]) for x in final[str(called[1])]["replies"]] == [("assigned", True), ("late", False)]
    assert [x["note"] for x in final[str(spare)]["replies"]] == ["after_stand_down"]
    assert final[str(spare)]["cancel_reason"] == "filled"

    city = await token(db)
    unmatched = (await client.get("/replies/unmatched", headers=city)).json()
    assert any(u["volunteer_id"] == str(spare) and u["intent"] == "unrecognised" for u in unmatched)

    audit = (await client.get(f"/audit?incident_id={iid}", headers=op)).json()
    assert [a["action"] for a in reversed(audit)] == [
        "incident.open", "callout.add", "callout.remove", "incident.stand_down", "incident.close"]
    async with db.pool.acquire() as conn:
        with pytest.raises(Exception, match="append-only"):
            await conn.execute("DELETE FROM audit_log WHERE incident_id = $1", iid)


async def test_team_requirement_called_through_leader(dispatch_db: DispatchDb, client: httpx.AsyncClient) -> None:
    db = dispatch_db
    town, villages = a_town_with_villages(1, index=6)
    [leader] = await add_volunteers(db, villages[0], 1, skill="search_rescue")
    [member] = await add_volunteers(db, villages[0], 1, skill="search_rescue")
    team_id = uuid4()
    async with db.pool.acquire() as conn:
        await projection.apply_team(conn, TeamUpdated(
            team_id=team_id, revision=1, name="测试水上救援队", team_type=TeamType.WATER, unit_code=town[:6],
            leader_id=leader, member_ids=(leader, member)))
    op = await token(db, "county", town[:6])
    r = await client.post("/incidents", headers=op, json=incident_body(
        villages[0], requirements=[{"team_type": "water", "count": 1}], policy={"max_level": "county"}))
    assert r.status_code == 201, r.text
    board = r.json()
    iid = UUID(board["incident"]["incident_id"])
    assert board["requirements"][0]["level"] == "county"  # a county team: escalated from village and town at once
    [call] = (await client.get(f"/incidents/{iid}/callouts", headers=op)).json()
    assert (call["volunteer_id"], call["team_id"]) == (str(leader), str(team_id))
    async with db.pool.acquire() as conn, conn.transaction():
        await usecases.apply_reply_event(conn, ReplyReceived(
            reply_id=uuid4(), volunteer_id=leader, callout_id=UUID(call["callout_id"]), intent=ReplyIntent.ETA,
            eta_minutes=25, text="25分钟到", channel=Channel.SMS, received_at=now(), producer="test"))
    board = (await client.get(f"/incidents/{iid}", headers=op)).json()
    assert board["requirements"][0]["status"] == "filled" and board["requirements"][0]["filled"] == 1
    assert [t["kind"] for t in board["timeline"]].count("escalated") == 2


@pytest.mark.parametrize("batched", [False, True], ids=["one-by-one", "batch"])
async def test_delivery_reports_on_board_and_report(dispatch_db: DispatchDb, client: httpx.AsyncClient,
                                                    batched: bool) -> None:
    """Delivery events reach the board and the report once each, by the per-event and the batch handler."""
    db = dispatch_db
    town, villages = a_town_with_villages(1, index=61 if batched else 60)
    await add_volunteers(db, villages[0], 2)
    op = await token(db, "county", town[:6])
    r = await client.post("/incidents", headers=op, json=incident_body(villages[0]))
    iid = r.json()["incident"]["incident_id"]
    c1, c2 = (await client.get(f"/incidents/{iid}/callouts", headers=op)).json()
    m1, m2 = uuid4(), uuid4()

    def msg(kind: type, mid: UUID, call: dict[str, Any], channel: Channel, **extra: Any) -> Any:
        return kind(message_id=mid, callout_id=UUID(call["callout_id"]), volunteer_id=UUID(call["volunteer_id"]),
                    kind=MessageKind.CALLOUT, channel=channel, provider="test", **extra)

    events = [msg(MessageSent, m1, c1, Channel.SMS), msg(MessageDelivered, m1, c1, Channel.SMS),
              msg(MessageFailed, m2, c2, Channel.WECHAT, error_code="43004", fallback=True)]
    foreign = MessageSent(message_id=uuid4(), callout_id=uuid4(), volunteer_id=uuid4(),
                          kind=MessageKind.CALLOUT, channel=Channel.SMS, provider="t")
    async with db.pool.acquire() as conn:
        if batched:  # one batch, with a redelivered event and one about someone else's call-out
            async with conn.transaction():
                await usecases.record_deliveries(conn, [*events, events[0], foreign])
        else:
            for ev in [*events, events[0]]:  # the last one again: recorded once
                async with conn.transaction():
                    await usecases.record_delivery(conn, ev)
    board = (await client.get(f"/incidents/{iid}", headers=op)).json()
    assert board["messages_by_channel"] == {"sms": 1, "wechat": 1} and board["delivery_failures"] == 1
    figures = (await client.get(f"/incidents/{iid}/report", headers=op)).json()["figures"]
    assert figures["messages_by_channel"] == {"sms": 1, "wechat": 1} and figures["delivery_failures"] == 1
    assert figures["messages_by_status"] == {"sent": 1, "delivered": 1, "failed": 1}
    async with db.pool.acquire() as conn, conn.transaction():  # a message about someone else's call-out
        await usecases.record_delivery(conn, MessageSent(message_id=uuid4(), callout_id=uuid4(), volunteer_id=uuid4(),
                                                         kind=MessageKind.CALLOUT, channel=Channel.SMS, provider="t"))
        assert await conn.fetchval("SELECT count(*) FROM messages WHERE incident_id IS NULL") == 0
