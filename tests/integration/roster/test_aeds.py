"""The AED registry on the real PostgreSQL and Kafka (issue #17): API, sheet import all or nothing, events."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from shared.events import AedUpdated, parse_event
from shared.topics import ROSTER_AED
from tests.integration.roster.conftest import consume
from tests.integration.roster.test_api import client  # noqa: F401  (the fixture)

HEADER = "设备编号,安装地址,具体位置,区划代码,所属单位,经度,纬度,坐标系,开放时间,状态,电极片有效期,电池有效期,检查人\n"


def _serial() -> str:
    return f"AED-{uuid.uuid4().hex[:8]}"


async def test_import_sheet_publishes_each_device_and_a_bad_row_imports_nothing(
    client: httpx.AsyncClient, relay: Any, stack: Any,  # noqa: F811
) -> None:
    a, b = _serial(), _serial()
    good = (HEADER + f"{a},鲁迅中路241号,游客中心一楼服务台旁,330602001015,鲁迅故里景区管理处,120.5862,29.9931,GCJ-02,"
            "每天8:00-17:30,在用,2027-06-30,2028-01-31,李明\n"
            f"{b},鲁迅中路235号,三味书屋门厅,330602001015,鲁迅故里景区管理处,120.5878,29.9937,GCJ-02,24小时,正常,,,\n")
    bad = good + f"{_serial()},咸亨酒店,,330602999999,,120.58,29.99,WGS-84,白天,在用,,,\n"
    r = await client.post("/aeds/imports", files={"file": ("aed.csv", bad.encode("gb18030"), "text/csv")})
    assert r.status_code == 422, r.text
    errors = {(e["row"], e["column"]) for e in r.json()["errors"]}
    assert errors == {(4, "区划代码"), (4, "开放时间")}
    listed = (await client.get("/aeds", params={"unit": "330602001015", "page_size": 200})).json()
    assert not {a, b} & {x["serial"] for x in listed["items"]}  # all or nothing

    r = await client.post("/aeds/imports", files={"file": ("aed.csv", good.encode("utf-8"), "text/csv")})
    assert r.status_code == 200, r.text
    assert (r.json()["created"], r.json()["committed"]) == (2, True)
    again = await client.post("/aeds/imports", files={"file": ("aed.csv", good.encode("utf-8"), "text/csv")})
    assert (again.json()["created"], again.json()["updated"], again.json()["unchanged"]) == (0, 0, 2)

    listed = (await client.get("/aeds", params={"unit": "330602001015", "page_size": 200})).json()
    mine = {x["serial"]: x for x in listed["items"] if x["serial"] in (a, b)}
    assert mine[a]["access_hours"] == "Mo-Su 08:00-17:30" and mine[b]["access_hours"] == "24/7"
    assert mine[a]["condition"] == "in_service" and mine[a]["location"] == "游客中心一楼服务台旁"
    ids = {mine[a]["id"], mine[b]["id"]}
    await relay.publish_pending()
    records = await consume(stack.bootstrap, ROSTER_AED.name, ids, expect=2)
    events = [parse_event(rec.value) for rec in records]
    assert {str(e.aed_id) for e in events if isinstance(e, AedUpdated)} == ids  # once each: the re-import is silent
    assert len(events) == 2


async def test_add_one_converts_gcj02_and_refuses_a_second_with_the_serial(
    client: httpx.AsyncClient,  # noqa: F811
) -> None:
    s = _serial()
    body = {"serial": s, "lat": 29.9931, "lon": 120.5862, "datum": "GCJ-02", "address": "鲁迅中路241号",
            "location": "一楼", "unit_code": "330602001", "access_hours": "周一至周五 08:00～18:00",
            "pads_expire_on": "2020-01-01"}
    r = await client.post("/aeds", json=body)
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["access_hours"] == "Mo-Fr 08:00-18:00" and out["condition"] == "pads_expired"
    assert abs(out["lat"] - 29.9931) > 1e-4  # kept in WGS-84, not as given
    assert (await client.post("/aeds", json=body)).status_code == 409
    assert (await client.post("/aeds", json={**body, "serial": _serial(), "access_hours": "白天"})).status_code == 422
