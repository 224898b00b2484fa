"""Meeting point and callback number (issue 14) on the real database: given, defaulted, changed, checked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import httpx
import pytest

from services.dispatch.units import units
from shared.events import CallOutRequested, parse_event
from shared.maps import amap_marker_url
from tests.conftest import StackAddresses

from .conftest import DispatchDb, add_volunteers, dispatch_schema, running_app, token


@pytest.fixture(scope="module")
async def dispatch_db(stack: StackAddresses) -> AsyncIterator[DispatchDb]:
    async with dispatch_schema(stack) as db:
        yield db


@pytest.fixture
async def client(dispatch_db: DispatchDb) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(dispatch_db, consumers=(), tick=0.2) as c:
        yield c


def _village(index: int) -> str:
    u = units()
    return sorted(c for c in u.names if len(c) == 12 and c[:9] in u.centres)[index]


async def _callout_events(db: DispatchDb, incident_id: UUID) -> list[CallOutRequested]:
    async with db.pool.acquire() as conn:
        rows = await conn.fetch("SELECT payload FROM outbox WHERE topic = 'dispatch.callout.v1'")
    events = [parse_event(r["payload"]) for r in rows]
    return [e for e in events if isinstance(e, CallOutRequested) and e.incident_id == incident_id]


def _body(village: str, **extra: Any) -> dict[str, Any]:
    lat, lon = units().centres[village[:9]]
    return {"kind": "drowning", "title": "集合点测试", "lat": lat, "lon": lon, "unit_code": village,
            "mode": "emergency", "requirements": [{"skill": "first_aid", "count": 1}], **extra}


async def test_callouts_carry_the_meeting_point_map_link_and_callback(
    dispatch_db: DispatchDb, client: httpx.AsyncClient
) -> None:
    village = _village(3)
    await add_volunteers(dispatch_db, village, 2)
    h = await token(dispatch_db)
    lat, lon = units().centres[village[:9]]
    r = await client.post("/incidents", headers=h, json=_body(
        village, meeting_point="鉴湖  南门停车场", meeting_lat=lat + 0.01, meeting_lon=lon,
        callback_phone="0575-85123456"))
    assert r.status_code == 201, r.text
    inc = r.json()["incident"]
    assert (inc["meeting_point"], inc["callback_phone"]) == ("鉴湖 南门停车场", "0575-85123456")
    events = await _callout_events(dispatch_db, UUID(inc["incident_id"]))
    assert events, "no call-out written"
    for e in events:
        assert e.meeting_point == "鉴湖 南门停车场" and e.callback_phone == "0575-85123456"
        assert (e.meeting_lat, e.meeting_lon) == (lat + 0.01, lon)
        assert e.map_url == amap_marker_url(lat + 0.01, lon, "鉴湖 南门停车场")

    # changed later: audited, on the timeline, and the next call-out carries it
    r = await client.put(f"/incidents/{inc['incident_id']}/meeting-point", headers=h,
                         json={"meeting_point": "集合点改到南门", "callback_phone": "95119"})
    assert r.status_code == 200, r.text
    assert r.json()["incident"]["meeting_point"] == "集合点改到南门"
    assert any(t["kind"] == "meeting_point_changed" for t in r.json()["timeline"])
    audit = (await client.get("/audit", headers=h, params={"incident_id": inc["incident_id"]})).json()
    assert [a["action"] for a in audit if a["action"] == "incident.meeting_point"] == ["incident.meeting_point"]
    [vid] = [v for v in await add_volunteers(dispatch_db, village, 1)]
    req = r.json()["requirements"][0]["requirement_id"]
    added = await client.post(f"/incidents/{inc['incident_id']}/callouts", headers=h,
                              json={"volunteer_id": str(vid), "requirement_id": req})
    assert added.status_code == 201, added.text
    [late] = [e for e in await _callout_events(dispatch_db, UUID(inc["incident_id"])) if e.volunteer_id == vid]
    assert (late.meeting_point, late.callback_phone) == ("集合点改到南门", "95119")
    assert late.map_url == amap_marker_url(lat + 0.01, lon, "集合点改到南门")


async def test_without_a_meeting_point_the_incidents_place_and_point_are_used(
    dispatch_db: DispatchDb, client: httpx.AsyncClient
) -> None:
    village = _village(5)
    await add_volunteers(dispatch_db, village, 1)
    h = await token(dispatch_db)
    r = await client.post("/incidents", headers=h, json=_body(village))
    assert r.status_code == 201, r.text
    inc = r.json()["incident"]
    [e, *_] = await _callout_events(dispatch_db, UUID(inc["incident_id"]))
    assert e.meeting_point == inc["place"] == e.place and e.callback_phone is None
    assert e.map_url == amap_marker_url(inc["lat"], inc["lon"], inc["place"])


@pytest.mark.parametrize("extra", [
    {"callback_phone": "13800138000"},  # a mobile: not allowed in a notification template
    {"callback_phone": "12345"},
    {"meeting_point": "   "},
    {"meeting_lat": 30.0},  # without its longitude
    {"meeting_point": "https://surl.amap.com/1a2b3c"},  # break-it review: a link in an SMS template variable
    {"meeting_point": "南门 bit.ly/x"},
])
async def test_bad_meeting_point_or_callback_is_refused_and_writes_nothing(
    dispatch_db: DispatchDb, client: httpx.AsyncClient, extra: dict[str, Any]
) -> None:
    h = await token(dispatch_db)
    async with dispatch_db.pool.acquire() as conn:
        before = await conn.fetchval("SELECT count(*) FROM incidents")
    r = await client.post("/incidents", headers=h, json=_body(_village(7), **extra))
    assert r.status_code == 422, r.text
    assert r.json()["detail"]
    async with dispatch_db.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM incidents") == before
