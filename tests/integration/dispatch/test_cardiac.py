"""The cardiac-arrest circle on the real database (issue #17): rings, roles and AED runs, scene safety.

The use cases are driven directly with explicit times (``now``), the deadline ticker's step
(:func:`usecases.process_due`) standing in for the ticker, so each ring is checked at its moment without
waiting. The module has its own schema: nothing else's deadlines fall due here.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import date, timedelta
from uuid import UUID, uuid4

import pytest

from services.dispatch import queries, usecases
from services.dispatch.adapters.projection import apply_aed, upsert_profile
from shared.divisions import distance_m
from shared.events import (
    AedStatus,
    AedUpdated,
    CallOutAssigned,
    CallOutRequested,
    CardiacRole,
    CertificateInfo,
    IncidentMode,
    ReplyIntent,
    ReplyReceived,
    VolunteerProfileUpdated,
    parse_event,
)
from shared.vocabulary import CARDIAC_ARREST, Channel
from tests.conftest import StackAddresses

from .conftest import DispatchDb, dispatch_schema, now

ACTOR = usecases.Actor("t", "city", "330600")
LAT, LON = 29.9960, 120.5800  # 鲁迅故里, 越城区 (WGS84, approximately)
VILLAGE = "330602001015"  # 鲁迅故里社区
OTHER_COUNTY = "330603001201"  # 柯桥区: across a division border


@pytest.fixture(scope="module")
async def dispatch_db(stack: StackAddresses) -> AsyncIterator[DispatchDb]:
    async with dispatch_schema(stack) as db:
        yield db


def north(m: float, east: float = 0.0) -> tuple[float, float]:
    return LAT + m / 111_195.0, LON + east / (111_195.0 * math.cos(math.radians(LAT)))


async def person(db: DispatchDb, m: float, *, certified: bool = True, unit: str = VILLAGE,
                 cardiac_alerts: bool = True, east: float = 0.0) -> UUID:
    vid = uuid4()
    lat, lon = north(m, east)
    async with db.pool.acquire() as conn:
        await upsert_profile(conn, VolunteerProfileUpdated(
            volunteer_id=vid, revision=1, display_name=f"志愿者{int(m)}", unit_code=unit, lat=lat, lon=lon,
            skills=("cpr_aed",), consent=True, cardiac_alerts=cardiac_alerts,
            certificates=(CertificateInfo(skill="cpr_aed", expires_on=date(2099, 1, 1)),) if certified else (),
        ))
    return vid


async def aed(db: DispatchDb, m: float, east: float = 0.0, **kw: object) -> UUID:
    aid = uuid4()
    lat, lon = north(m, east)
    async with db.pool.acquire() as conn:
        await apply_aed(conn, AedUpdated(aed_id=aid, revision=1, lat=lat, lon=lon, address=f"鲁迅中路{int(m)}号",
                                         location="一楼服务台旁", unit_code="330602001", **kw))  # type: ignore[arg-type]
    return aid


async def open_cardiac(db: DispatchDb, at: object, **kw: object) -> UUID:
    async with db.pool.acquire() as conn:
        return await usecases.open_incident(conn, usecases.IncidentInput(
            kind=CARDIAC_ARREST, title="鲁迅故里心脏骤停", lat=LAT, lon=LON, unit_code=VILLAGE, mode=IncidentMode.DRILL,
            requirements=[], wave_deadline_seconds=120, **kw), ACTOR, place="鲁迅故里", now=at)  # type: ignore[arg-type]


async def called(db: DispatchDb, incident_id: UUID) -> dict[UUID, tuple[int, float]]:
    async with db.pool.acquire() as conn:
        rows = await conn.fetch("SELECT volunteer_id, wave, distance_m FROM callouts WHERE incident_id = $1",
                                incident_id)
    return {r["volunteer_id"]: (r["wave"], r["distance_m"]) for r in rows}


async def accept(db: DispatchDb, incident_id: UUID, vid: UUID) -> None:
    async with db.pool.acquire() as conn:
        cid = await conn.fetchval("SELECT callout_id FROM callouts WHERE incident_id = $1 AND volunteer_id = $2",
                                  incident_id, vid)
        async with conn.transaction():
            await usecases.apply_reply_batch(conn, [ReplyReceived(
                reply_id=uuid4(), volunteer_id=vid, callout_id=cid, intent=ReplyIntent.ACCEPT, text="1",
                channel=Channel.SMS, received_at=now(), producer="test")])


async def outbox_events(db: DispatchDb, incident_id: UUID) -> list[object]:
    async with db.pool.acquire() as conn:
        rows = await conn.fetch("SELECT payload FROM outbox WHERE topic = 'dispatch.callout.v1' ORDER BY id")
    return [e for e in (parse_event(r["payload"]) for r in rows) if getattr(e, "incident_id", None) == incident_id]


async def test_rings_widen_certified_only_across_borders_and_roles_fetch_distinct_aeds(dispatch_db: DispatchDb) -> None:
    db = dispatch_db
    p100 = await person(db, 100)
    p150 = await person(db, 150, unit=OTHER_COUNTY)  # another county, 150 m away: called
    p200 = await person(db, 200)
    p300, p500, p800 = await person(db, 300), await person(db, 500), await person(db, 800)
    p1000, p1200, p1500 = await person(db, 1000), await person(db, 1200), await person(db, 1500)
    uncertified = await person(db, 50, certified=False)
    opted_out = await person(db, 60, cardiac_alerts=False)
    a_near = await aed(db, 250)  # on the way from 300 m
    a_broken = await aed(db, 120, status=AedStatus.OUT_OF_SERVICE)
    a_expired = await aed(db, 130, pads_expire_on=date(2020, 1, 1))
    a_closed = await aed(db, 140, access_hours="Mo-Su 03:00-03:01")
    a_far = await aed(db, 0, east=300)

    t0 = now()
    iid = await open_cardiac(db, t0)
    first = await called(db, iid)
    assert set(first) == {p100, p150, p200}  # the 3 nearest certified, whatever their division
    assert uncertified not in first and opted_out not in first

    # step 1 (40 s later): ring 900 m, up to 12 called in all
    assert await usecases.process_due(db.pool, now=t0 + timedelta(seconds=41)) is not None
    second = await called(db, iid)
    assert set(second) - set(first) == {p300, p500, p800}
    assert all(d <= 900 for _, d in second.values())
    # step 2 (80 s): ring 1,100 m
    await usecases.process_due(db.pool, now=t0 + timedelta(seconds=81))
    third = await called(db, iid)
    assert set(third) - set(second) == {p1000}
    assert p1200 not in third and p1500 not in third

    # roles: the first to accept goes to the patient; the next ones each fetch a usable AED, never the same one
    await accept(db, iid, p200)
    await accept(db, iid, p300)
    await accept(db, iid, p100)
    async with db.pool.acquire() as conn:
        roles = {r["volunteer_id"]: (r["role"], r["aed_id"]) for r in await conn.fetch(
            "SELECT volunteer_id, role, aed_id FROM cardiac_roles WHERE incident_id = $1", iid)}
        req = await conn.fetchrow("SELECT status, filled FROM requirements WHERE incident_id = $1", iid)
    assert roles[p200] == ("cpr", None)
    assert roles[p300] == ("fetch_aed", a_near)  # 50 m off their way to the patient
    assert roles[p100] == ("fetch_aed", a_far)  # a_near is being fetched; broken/expired/closed ones never
    assert not {a_broken, a_expired, a_closed} & {a for _, a in roles.values()}
    assert (req["status"], req["filled"]) == ("filled", 3)  # enough accepted: the rest stood down

    events = await outbox_events(db, iid)
    assigned = {e.volunteer_id: e for e in events if isinstance(e, CallOutAssigned)}  # type: ignore[attr-defined]
    assert assigned[p200].cardiac_role is CardiacRole.CPR
    aed_msg = assigned[p300]
    assert aed_msg.cardiac_role is CardiacRole.FETCH_AED
    assert aed_msg.aed_place == "鲁迅中路250号 一楼服务台旁"
    assert aed_msg.aed_map_url and aed_msg.aed_map_url.startswith("https://uri.amap.com/marker?position=")
    requested = [e for e in events if isinstance(e, CallOutRequested)]
    assert {e.incident_kind for e in requested} == {CARDIAC_ARREST}

    # the circle stops: no more steps once enough accepted
    await usecases.process_due(db.pool, now=t0 + timedelta(seconds=200))
    assert set(await called(db, iid)) == set(third)

    async with db.pool.acquire() as conn:
        report = await queries.report(conn, iid)
    circle = report["figures"]["circle"]
    assert circle["aed_runs"] == 2 and circle["seconds_to_first_acceptance"] is not None
    assert [(r["step"], r["ring_m"], r["alerted"]) for r in circle["rings"]] == [(1, 700.0, 3), (2, 900.0, 3),
                                                                                  (3, 1100.0, 1)]

    # another incident next door while these AEDs are being fetched: nobody is sent to them
    t1 = now()
    other = await open_cardiac(db, t1)
    await usecases.process_due(db.pool, now=t1 + timedelta(seconds=41))
    others = await called(db, other)
    p_a, p_b = [v for v, _ in sorted(others.items(), key=lambda kv: kv[1][1])][:2]
    await accept(db, other, p_a)
    await accept(db, other, p_b)
    async with db.pool.acquire() as conn:
        held = await conn.fetch("SELECT aed_id FROM cardiac_roles WHERE aed_id IS NOT NULL AND released_at IS NULL")
    assert len(held) == len({r["aed_id"] for r in held})  # no AED assigned twice, across incidents

    # closing releases the runs
    async with db.pool.acquire() as conn:
        await usecases.close_incident(conn, iid, "ROSC, handed to 120", ACTOR)
        assert not await conn.fetchval(
            "SELECT count(*) FROM cardiac_roles WHERE incident_id = $1 AND released_at IS NULL", iid)
        await usecases.close_incident(conn, other, "drill over", ACTOR)


async def test_unsafe_scene_alerts_nobody_until_marked_safe(dispatch_db: DispatchDb) -> None:
    db = dispatch_db
    near = [await person(db, 20 + i, east=500) for i in range(3)]
    t0 = now()
    iid = await open_cardiac(db, t0, scene_unsafe=True, meeting_lat=LAT, meeting_lon=LON + 0.0052)
    assert await called(db, iid) == {}
    async with db.pool.acquire() as conn:
        kinds = [r["kind"] for r in await conn.fetch("SELECT kind FROM timeline WHERE incident_id = $1", iid)]
    assert "circle_held" in kinds
    async with db.pool.acquire() as conn:
        assert await usecases.set_scene_safety(conn, iid, ACTOR, unsafe=False, reason="警方已控制现场") == 0
    await usecases.process_due(db.pool, now=t0 + timedelta(seconds=1))
    got = await called(db, iid)
    assert len(got) == 3 and all(d <= 700 for _, d in got.values())
    # unsafe again: everyone called is stood down, nobody more is called
    async with db.pool.acquire() as conn:
        assert await usecases.set_scene_safety(conn, iid, ACTOR, unsafe=True, reason="火势蔓延") == 3
        states = {r["state"] for r in await conn.fetch("SELECT state FROM callouts WHERE incident_id = $1", iid)}
    assert states == {"cancelled"}
    assert await usecases.process_due(db.pool, now=t0 + timedelta(seconds=300)) is None
    del near
    async with db.pool.acquire() as conn:
        await usecases.close_incident(conn, iid, "scene unsafe", ACTOR)


async def test_scene_safety_is_for_cardiac_incidents_only(dispatch_db: DispatchDb) -> None:
    async with dispatch_db.pool.acquire() as conn:
        iid = await usecases.open_incident(conn, usecases.IncidentInput(
            kind="drowning", title="t", lat=LAT, lon=LON, unit_code=VILLAGE, mode=IncidentMode.DRILL,
            requirements=[usecases.RequirementInput("first_aid", None, 1)], wave_deadline_seconds=60), ACTOR, place="x")
        with pytest.raises(usecases.InvalidInput):
            await usecases.set_scene_safety(conn, iid, ACTOR, unsafe=True)
        await usecases.close_incident(conn, iid, "t", ACTOR)


def test_distances_of_the_fixture_points() -> None:
    assert distance_m(LAT, LON, *north(700)) == pytest.approx(700, rel=1e-3)


async def test_aed_projection_follows_the_roster_topic(dispatch_db: DispatchDb) -> None:
    """dispatch's ``roster-aeds`` consumer on the real topic: a snapshot is projected, an older one ignored."""
    from aiokafka import AIOKafkaProducer

    from shared.outbox import event_headers
    from shared.topics import ROSTER_AED

    from .conftest import running_app, wait_for

    aid = uuid4()
    newer = AedUpdated(aed_id=aid, revision=2, lat=LAT, lon=LON, address="鲁迅中路241号", location="二楼",
                       unit_code="330602001", access_hours="24/7")
    older = newer.model_copy(update={"event_id": uuid4(), "revision": 1, "location": "一楼"})
    async with running_app(dispatch_db, consumers=("roster-aeds",)):
        producer = AIOKafkaProducer(bootstrap_servers=dispatch_db.bootstrap)
        await producer.start()
        try:
            for e in (newer, older):
                await producer.send_and_wait(ROSTER_AED.name, e.to_bytes(), key=str(aid).encode(),
                                             headers=[(k, v.encode()) for k, v in event_headers(e).items()])
        finally:
            await producer.stop()

        async def projected() -> object:
            async with dispatch_db.pool.acquire() as conn:
                return await conn.fetchrow("SELECT revision, location FROM aeds WHERE aed_id = $1", aid)

        row = await wait_for(projected)
        async def both_seen() -> bool:
            async with dispatch_db.pool.acquire() as conn:
                return bool(await conn.fetchval(
                    "SELECT count(*) = 2 FROM processed_events WHERE event_id = ANY($1::uuid[])",
                    [newer.event_id, older.event_id]))
        await wait_for(both_seen)
        row = await projected()
    assert (row["revision"], row["location"]) == (2, "二楼")  # type: ignore[index]


async def test_the_circle_does_not_wait_for_a_fanout_holding_the_codes_lock(dispatch_db: DispatchDb) -> None:
    """A fan-out's opening transaction holds the call-out codes lock while it writes thousands of call-outs;
    the circle's call-outs are written meanwhile, with three-character codes (fails if the circle waits)."""
    import asyncio

    from .conftest import wait_for

    db = dispatch_db
    await person(db, 30, east=-200)
    await person(db, 40, east=-200)
    blocker = await db.pool.acquire()
    tr = blocker.transaction()
    await tr.start()
    await blocker.execute("SELECT pg_advisory_xact_lock($1)", usecases.CODES_LOCK)
    try:
        task = asyncio.create_task(open_cardiac(db, now(), meeting_lat=LAT, meeting_lon=LON))
        await wait_for(task.done, timeout=20)
        iid = task.result()
    finally:
        await tr.rollback()
        await db.pool.release(blocker)
    async with db.pool.acquire() as conn:
        codes = [r["reply_code"] for r in await conn.fetch("SELECT reply_code FROM callouts WHERE incident_id = $1",
                                                          iid)]
        assert codes and all(len(c) == 3 for c in codes)
        await usecases.close_incident(conn, iid, "t", ACTOR)
