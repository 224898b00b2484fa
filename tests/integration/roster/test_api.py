"""The roster's HTTP API over real HTTP semantics (httpx ASGI transport) on the real PostgreSQL and Kafka."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from services.roster.app import create_app
from services.roster.consumers import handle_replies, handle_reply
from shared.events import ReplyIntent, ReplyReceived, VolunteerContactUpdated, parse_event
from shared.settings import RosterSettings
from shared.topics import ROSTER_CONTACT, ROSTER_PROFILE, ROSTER_TEAM
from shared.vocabulary import Channel
from tests.integration.roster.conftest import consume, headers_of

VILLAGE = "330603105209"  # 王化村委会, 平水镇, 柯桥区
TOKEN = f"roster-it-{uuid.uuid4().hex}"


@pytest.fixture
async def client(roster_pool: Any, stack: Any) -> AsyncIterator[httpx.AsyncClient]:
    settings = RosterSettings(database_url=stack.test_dsn, kafka_bootstrap_servers=stack.bootstrap,  # type: ignore[call-arg]
                              admin_token=SecretStr(TOKEN))
    app = create_app(settings)
    app.state.runtime.pool = roster_pool  # the lifespan is not run: the scratch schema's pool stands in
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://roster",
                                 headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        yield c


def mobile() -> str:
    return f"19992{uuid.uuid4().int % 10**6:06d}"


def body(**over: Any) -> dict[str, Any]:
    b: dict[str, Any] = {
        "name": "王小明", "mobile": mobile(), "unit_code": VILLAGE, "skills": ["first_aid"],
        "certificates": [{"kind": "first_aid", "number": "N1", "issued_on": "2024-03-01", "expires_on": "2027-02-28"}],
    }
    b.update(over)
    return b


async def test_create_update_and_conflicts(client: httpx.AsyncClient) -> None:
    b = body()
    r = await client.post("/volunteers", json={**b, "mobile": f"+86 {b['mobile'][:3]}-{b['mobile'][3:]}"})
    assert r.status_code == 201, r.text
    v = r.json()
    assert v["mobile"] == "+86" + b["mobile"] and v["revision"] == 1
    dup = await client.post("/volunteers", json=b)
    assert dup.status_code == 409
    r = await client.patch(f"/volunteers/{v['id']}", json={"availability": "unavailable",
                                                           "unavailable_until": "2030-01-01T00:00:00+08:00"})
    assert r.status_code == 200, r.text
    assert r.json()["revision"] == 2 and r.json()["unavailable_until"].startswith("2029-12-31T16:00:00")
    same = await client.patch(f"/volunteers/{v['id']}", json={"name": "王小明"})
    assert same.json()["revision"] == 2  # nothing changed, no new revision
    assert (await client.get(f"/volunteers/{uuid.uuid4()}")).status_code == 404


async def test_invalid_input_is_422_with_field_paths(client: httpx.AsyncClient) -> None:
    r = await client.post("/volunteers", json=body(name="", mobile="12345", unit_code="3306", skills=["swim"],
                                                   certificates=[{"kind": "first_aid", "issued_on": "2024-05-01",
                                                                  "expires_on": "2023-01-01"}]))
    assert r.status_code == 422
    locs = {tuple(e["loc"]) for e in r.json()["detail"]}
    assert {("body", "name"), ("body", "mobile"), ("body", "unit_code"), ("body", "skills", 0),
            ("body", "certificates", 0)} <= locs
    r = await client.post("/volunteers", json=body(unit_code="330603999999"))
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "unit_code"]
    r = await client.post("/volunteers", json=body(unit_code="330603105"))  # a town, not a village
    assert r.status_code == 422
    r = await client.get("/volunteers", params={"skill": "swim"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "skill"]


async def test_search_by_subtree_skill_certificate_and_availability(client: httpx.AsyncClient) -> None:
    tag = uuid.uuid4().hex[:6]
    made = []
    for i, (skill, expires, availability) in enumerate([
        ("water_rescue", "2027-01-01", "available"),
        ("water_rescue", "2020-01-01", "available"),  # expired
        ("water_rescue", "2027-01-01", "off_duty"),
        ("driver", None, "available"),
    ]):
        certs = [{"kind": skill, "issued_on": "2019-01-01", "expires_on": expires}] if expires else []
        r = await client.post("/volunteers", json=body(name=f"搜{tag}{i}", skills=[skill], certificates=certs,
                                                        availability=availability))
        assert r.status_code == 201, r.text
        made.append(r.json()["id"])
    q = {"unit": "330603105", "name": tag, "page_size": 10}
    r = await client.get("/volunteers", params={**q, "skill": "water_rescue"})
    assert r.json()["total"] == 3
    r = await client.get("/volunteers", params={**q, "skill": "water_rescue", "certified_on": "2026-11-29"})
    assert {v["id"] for v in r.json()["items"]} == {made[0], made[2]}
    r = await client.get("/volunteers", params={**q, "skill": "water_rescue", "certified_on": "2026-11-29",
                                                "availability": "available"})
    assert [v["id"] for v in r.json()["items"]] == [made[0]]
    item = r.json()["items"][0]
    assert {"id", "name", "mobile", "unit_code", "skills", "availability", "team_ids"} <= set(item)
    assert (await client.get("/volunteers", params={**q, "unit": "330602"})).json()["total"] == 0
    p1 = (await client.get("/volunteers", params={**q, "page_size": 3, "page": 1})).json()
    p2 = (await client.get("/volunteers", params={**q, "page_size": 3, "page": 2})).json()
    assert p1["total"] == p2["total"] == 4
    assert len(p1["items"]) == 3 and len(p2["items"]) == 1
    assert {v["id"] for v in p1["items"] + p2["items"]} == set(made)


async def test_teams_and_retirement_publish_snapshots_and_tombstones(
    client: httpx.AsyncClient, relay: Any, stack: Any
) -> None:
    a = (await client.post("/volunteers", json=body())).json()
    b = (await client.post("/volunteers", json=body(skills=["water_rescue"], certificates=[]))).json()
    name = f"平水水上救援队{uuid.uuid4().hex[:4]}"
    bad = await client.post("/teams", json={"name": name, "team_type": "water", "unit_code": "330603105",
                                            "leader_id": a["id"], "member_ids": [b["id"]]})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "leader_id"]
    r = await client.post("/teams", json={"name": name, "team_type": "water", "unit_code": "330603105",
                                          "leader_id": a["id"], "member_ids": [a["id"], b["id"]]})
    assert r.status_code == 201, r.text
    team = r.json()
    va = (await client.get(f"/volunteers/{a['id']}")).json()
    assert va["team_ids"] == [team["id"]] and va["revision"] == 2
    listed = (await client.get("/teams", params={"unit": "330603", "team_type": "water", "page_size": 1000})).json()
    assert team["id"] in {t["id"] for t in listed["items"]}

    r = await client.delete(f"/volunteers/{b['id']}")
    assert r.status_code == 200 and r.json()["active"] is False
    assert (await client.delete(f"/volunteers/{b['id']}")).status_code == 404
    t = (await client.get(f"/teams/{team['id']}")).json()
    assert t["member_ids"] == [a["id"]] and t["revision"] == 2

    await relay.publish_pending()
    profile = await consume(stack.bootstrap, ROSTER_PROFILE.name, {b["id"]}, expect=3)
    contact = await consume(stack.bootstrap, ROSTER_CONTACT.name, {b["id"]}, expect=2)
    teams = await consume(stack.bootstrap, ROSTER_TEAM.name, {team["id"]}, expect=2)
    # profile: created, joined the team (revision 2), tombstone; contact: created, tombstone
    assert [r.value is None for r in profile] == [False, False, True]
    assert [parse_event(r.value).revision for r in profile[:2]] == [1, 2]  # type: ignore[attr-defined]
    assert [r.value is None for r in contact] == [False, True]
    assert headers_of(profile[-1])["event_id"] and headers_of(contact[-1])["event_type"] == "VolunteerContactUpdated"
    revisions = [parse_event(r.value).revision for r in teams]  # type: ignore[attr-defined]
    assert revisions == [1, 2]

    assert (await client.delete(f"/teams/{team['id']}")).status_code == 204
    va = (await client.get(f"/volunteers/{a['id']}")).json()
    assert va["team_ids"] == [] and va["revision"] == 3


async def test_import_endpoint_reports_every_bad_row(client: httpx.AsyncClient) -> None:
    csv = ("姓名,手机号码,区县,乡镇(街道),村(社区),技能\n"
           f"甲,{mobile()},柯桥区,平水镇,王化,救护员\n"
           "乙,123,柯桥区,平水镇,王化,救护员\n"
           f"丙,{mobile()},柯桥区,平水镇,王化,开飞机\n")
    r = await client.post("/imports", files={"file": ("r.csv", csv.encode("gbk"), "text/csv")})
    assert r.status_code == 422
    report = r.json()
    assert not report["committed"]
    assert [(e["row"], e["column"]) for e in report["errors"]] == [(3, "手机号码"), (4, "技能")]
    ok = csv.splitlines()[:2]
    r = await client.post("/imports", params={"dry_run": "true"},
                          files={"file": ("r.csv", ("\n".join(ok) + "\n").encode(), "text/csv")})
    assert r.status_code == 200 and r.json()["created"] == 1 and not r.json()["committed"]
    r = await client.post("/imports", files={"file": ("r.csv", ("\n".join(ok) + "\n").encode(), "text/csv")})
    assert r.status_code == 200 and r.json()["committed"]
    r = await client.post("/imports", files={"file": ("x.xlsx", b"PK\x03\x04garbage", "application/octet-stream")})
    assert r.status_code == 400


async def test_unsubscribe_reply_withdraws_sms_consent(client: httpx.AsyncClient, roster_pool: Any) -> None:
    v = (await client.post("/volunteers", json=body())).json()
    reply = ReplyReceived(reply_id=uuid.uuid4(), volunteer_id=uuid.UUID(v["id"]), callout_id=None,
                          intent=ReplyIntent.UNSUBSCRIBE, text="TD", channel=Channel.SMS,
                          received_at=datetime.now(UTC) - timedelta(seconds=1))
    async with roster_pool.acquire() as conn, conn.transaction():
        await handle_reply(conn, reply)
        row = await conn.fetchrow(
            "SELECT payload FROM outbox WHERE key = $1 AND topic = $2 ORDER BY id DESC LIMIT 1", v["id"],
            ROSTER_CONTACT.name)
    after = (await client.get(f"/volunteers/{v['id']}")).json()
    assert after["sms_consent"] is False and after["revision"] == 2
    event = parse_event(row["payload"])
    assert isinstance(event, VolunteerContactUpdated) and event.sms_consent is False and event.revision == 2
    accept = reply.model_copy(update={"intent": ReplyIntent.ACCEPT, "reply_id": uuid.uuid4()})
    async with roster_pool.acquire() as conn, conn.transaction():
        await handle_reply(conn, accept)
    assert (await client.get(f"/volunteers/{v['id']}")).json()["revision"] == 2


async def test_a_batch_of_replies_withdraws_consent_only_for_the_unsubscribe(client: httpx.AsyncClient,
                                                                              roster_pool: Any) -> None:
    a, b = [(await client.post("/volunteers", json=body())).json() for _ in range(2)]

    def reply(v: dict[str, Any], intent: ReplyIntent, text: str) -> ReplyReceived:
        return ReplyReceived(reply_id=uuid.uuid4(), volunteer_id=uuid.UUID(v["id"]), callout_id=None, intent=intent,
                             text=text, channel=Channel.SMS, received_at=datetime.now(UTC) - timedelta(seconds=1))

    async with roster_pool.acquire() as conn, conn.transaction():
        await handle_replies(conn, [reply(a, ReplyIntent.ACCEPT, "1"), reply(b, ReplyIntent.UNSUBSCRIBE, "TD"),
                                    reply(a, ReplyIntent.DECLINE, "2")])
    after_a, after_b = [(await client.get(f"/volunteers/{v['id']}")).json() for v in (a, b)]
    assert (after_a["sms_consent"], after_a["revision"]) == (True, 1)
    assert (after_b["sms_consent"], after_b["revision"]) == (False, 2)


async def test_subtree_search_index_agrees_with_the_volunteers_table(client: httpx.AsyncClient, roster_pool: Any) -> None:
    made = []
    for _ in range(3):
        r = await client.post("/volunteers", json=body(skills=["rope_rescue", "driver"], certificates=[]))
        made.append(r.json()["id"])
    moved = made[2]
    await client.patch(f"/volunteers/{moved}", json={"unit_code": "330602001004"})  # to 越城区 塔山街道
    await client.delete(f"/volunteers/{made[1]}")
    for unit in ("3306", "330600", "330603", "330603105", "330602001"):
        got: list[str] = []
        page = 1
        while True:
            r = (await client.get("/volunteers", params={"unit": unit, "skill": "rope_rescue", "page": page,
                                                         "page_size": 2})).json()
            got += [v["id"] for v in r["items"]]
            if len(r["items"]) < 2:
                break
            page += 1
        prefix = "3306" if unit == "330600" else unit
        async with roster_pool.acquire() as conn:
            expected = [str(x["id"]) for x in await conn.fetch(
                "SELECT id FROM volunteers WHERE active AND starts_with(unit_code, $1) AND 'rope_rescue' = ANY(skills) "
                "ORDER BY unit_code, id", prefix)]
        assert got == expected and r["total"] == len(expected)
    in_town = (await client.get("/volunteers", params={"unit": "330603105", "skill": "rope_rescue",
                                                        "page_size": 1000})).json()
    ids = {v["id"] for v in in_town["items"]}
    assert made[0] in ids and made[1] not in ids and moved not in ids
    in_tashan = (await client.get("/volunteers", params={"unit": "330602001", "page_size": 1000})).json()
    assert moved in {v["id"] for v in in_tashan["items"]}


async def test_import_adds_team_memberships_and_republishes_the_team(client: httpx.AsyncClient,
                                                                     roster_pool: Any) -> None:
    leader = (await client.post("/volunteers", json=body())).json()
    name = f"平水救护队{uuid.uuid4().hex[:4]}"
    team = (await client.post("/teams", json={"name": name, "team_type": "first_aid", "unit_code": "330603105",
                                              "leader_id": leader["id"], "member_ids": [leader["id"]]})).json()
    m = mobile()
    csv = f"姓名,手机号码,区县,乡镇(街道),村(社区),技能,所属队伍\n新队员,{m},柯桥区,平水镇,王化村,救护员,{name}\n"
    r = await client.post("/imports", files={"file": ("r.csv", csv.encode(), "text/csv")})
    assert r.status_code == 200, r.text
    t = (await client.get(f"/teams/{team['id']}")).json()
    assert t["revision"] == 2 and len(t["member_ids"]) == 2
    async with roster_pool.acquire() as conn:
        vid = await conn.fetchval("SELECT id FROM volunteers WHERE mobile = $1", "+86" + m)
        payloads = [r["payload"] for r in await conn.fetch(
            "SELECT payload FROM outbox WHERE key = $1 AND topic = 'roster.team.v1' ORDER BY id", team["id"])]
    assert str(vid) in t["member_ids"]
    assert [parse_event(p).revision for p in payloads] == [1, 2]  # type: ignore[attr-defined]
    v = (await client.get(f"/volunteers/{vid}")).json()
    assert v["team_ids"] == [team["id"]]
    again = await client.post("/imports", files={"file": ("r.csv", csv.encode(), "text/csv")})
    assert again.json()["unchanged"] == 1
    assert (await client.get(f"/teams/{team['id']}")).json()["revision"] == 2


async def test_contact_data_needs_the_bearer_token(client: httpx.AsyncClient) -> None:
    r = await client.post("/volunteers", json=body())
    assert r.status_code == 201, r.text
    vid = r.json()["id"]
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer not-the-token-0123456789"}):
        for method, path in (("GET", "/volunteers"), ("GET", f"/volunteers/{vid}"), ("DELETE", f"/volunteers/{vid}")):
            refused = await client.request(method, path, headers=headers)
            assert refused.status_code == 401, (method, path, refused.text)
            assert "mobile" not in refused.text
    still = await client.get(f"/volunteers/{vid}")  # the client's own header: the right token
    assert still.status_code == 200 and still.json()["active"] is True
    assert (await client.get("/health/live", headers={"Authorization": ""})).status_code == 200


async def test_a_retired_volunteer_is_restored_through_the_api(client: httpx.AsyncClient) -> None:
    r = await client.post("/volunteers", json=body())
    vid = r.json()["id"]
    assert (await client.post(f"/volunteers/{vid}/restore")).status_code == 409  # active
    assert (await client.delete(f"/volunteers/{vid}")).status_code == 200
    back = await client.post(f"/volunteers/{vid}/restore")
    assert back.status_code == 200, back.text
    assert back.json()["active"] is True and back.json()["revision"] == 3
    assert (await client.get(f"/volunteers/{vid}")).json()["active"] is True
    assert (await client.post(f"/volunteers/{uuid.uuid4()}/restore")).status_code == 404


@pytest.mark.parametrize("path", ["/teams", "/volunteers"])
@pytest.mark.parametrize("page", ["9223372036854775807", "9223372036854775808", "99999999999999999999"])
async def test_a_page_number_beyond_what_postgresql_stores_is_422_with_the_field(
    client: httpx.AsyncClient, path: str, page: str
) -> None:
    r = await client.get(path, params={"page": page})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["query", "page"]


async def test_a_retired_team_is_not_found_unless_asked_for(client: httpx.AsyncClient) -> None:
    r = await client.post("/teams", json={"name": f"退役队{uuid.uuid4().hex[:6]}", "team_type": "water",
                                          "unit_code": "330603105"})
    assert r.status_code == 201, r.text
    team_id = r.json()["id"]
    assert (await client.get(f"/teams/{team_id}")).status_code == 200
    assert (await client.delete(f"/teams/{team_id}")).status_code == 204
    gone = await client.get(f"/teams/{team_id}")
    assert gone.status_code == 404 and "retired" in gone.json()["detail"]
    kept = await client.get(f"/teams/{team_id}", params={"include_retired": "true"})
    assert kept.status_code == 200 and kept.json()["active"] is False
    assert (await client.patch(f"/teams/{team_id}", json={"name": "x"})).status_code == 404
    assert (await client.delete(f"/teams/{team_id}")).status_code == 404


async def test_imported_volunteers_get_a_position_their_profile_carries(
    client: httpx.AsyncClient, roster_pool: Any
) -> None:
    from shared.divisions import gcj02_to_wgs84

    own, rough, bad = mobile(), mobile(), mobile()
    header = "姓名,手机号码,区县,乡镇(街道),村(社区),经度,纬度,坐标系\n"
    good = (header + f"有坐标,{own},柯桥区,平水镇,王化,120.6401,29.8961,GCJ-02\n"
            f"无坐标,{rough},柯桥区,平水镇,王化,,,\n")
    r = await client.post("/imports", files={"file": ("r.csv", (good + f"坏坐标,{bad},柯桥区,平水镇,王化,120.64,291,WGS-84\n")
                                                       .encode(), "text/csv")})
    assert r.status_code == 422
    assert [(e["row"], e["column"]) for e in r.json()["errors"]] == [(4, "纬度")]
    async with roster_pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM volunteers WHERE mobile = ANY($1::text[])",
                                   ["+86" + own, "+86" + rough]) == 0  # nothing imported
    r = await client.post("/imports", files={"file": ("r.csv", good.encode(), "text/csv")})
    assert r.status_code == 200, r.text
    async with roster_pool.acquire() as conn:
        ids = {m: await conn.fetchval("SELECT id FROM volunteers WHERE mobile = $1", "+86" + m) for m in (own, rough)}
        # the smallest division with a centre: the village's town here (the divisions file has no village centres)
        village = await conn.fetchrow("SELECT lat, lon FROM units WHERE code = ANY($1::text[]) AND lat IS NOT NULL "
                                      "ORDER BY length(code) DESC LIMIT 1", [VILLAGE, VILLAGE[:9], VILLAGE[:6]])
        payload = await conn.fetchval("SELECT payload FROM outbox WHERE key = $1 AND topic = 'roster.volunteer-profile.v1' "
                                      "ORDER BY id DESC LIMIT 1", str(ids[rough]))
    a = (await client.get(f"/volunteers/{ids[own]}")).json()
    lat, lon = gcj02_to_wgs84(29.8961, 120.6401)
    assert (a["lat"], a["lon"], a["position_approximate"]) == (pytest.approx(lat), pytest.approx(lon), False)
    b = (await client.get(f"/volunteers/{ids[rough]}")).json()
    assert b["position_approximate"] is True and (b["lat"], b["lon"]) == (village["lat"], village["lon"])
    profile = parse_event(payload)
    assert (profile.lat, profile.lon, profile.position_approximate) == (village["lat"], village["lon"], True)  # type: ignore[attr-defined]


async def test_a_volunteer_created_without_a_point_is_placed_at_their_unit_centre(client: httpx.AsyncClient) -> None:
    r = await client.post("/volunteers", json=body())
    assert r.status_code == 201, r.text
    v = r.json()
    assert v["position_approximate"] is True and v["lat"] is not None
    moved = (await client.patch(f"/volunteers/{v['id']}", json={"lat": 29.9, "lon": 120.6})).json()
    assert (moved["lat"], moved["lon"], moved["position_approximate"]) == (29.9, 120.6, False)
