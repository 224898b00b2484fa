"""Issue #20, findings 3, 4, 5 and 6 on the roster: hostile text, numbers, points, dates, contacts and files.

Each refusal is a 4xx naming the field (or row and column), and nothing is written; none is a 500.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import threading
import uuid
import zipfile
from typing import Any

import httpx
import pytest

from tests.integration.roster.test_api import VILLAGE, body, client, mobile

__all__ = ["client"]


def openid() -> str:
    return "o" + uuid.uuid4().hex[:27]


async def _count(c: httpx.AsyncClient, name: str) -> int:
    r = await c.get("/volunteers", params={"name": name})
    assert r.status_code == 200, r.text
    total: int = r.json()["total"]
    return total


@pytest.mark.parametrize(("change", "field"), [
    ({"name": "王\x00明"}, "name"),
    ({"name": "王\ud800明"}, "name"),
    ({"name": "王\x1b[31m明"}, "name"),
    ({"name": "王\x07明"}, "name"),
    ({"name": '=HYPERLINK("http://x.example/","点我")'}, "name"),
    ({"certificates": [{"kind": "first_aid", "number": "N\x00"}]}, "number"),
    ({"certificates": [{"kind": "first_aid", "issued_on": "0448-01-01"}]}, "issued_on"),
    ({"availability": "unavailable", "unavailable_until": "9999-01-01T00:00:00+08:00"}, "unavailable_until"),
    ({"lat": 30.0, "lon": 179.0}, "lon"),
    ({"lat": -64.0, "lon": 120.5}, "lon"),
    ({"consent": "yes"}, "consent"),
    ({"wechat_subscribed": 1}, "wechat_subscribed"),
])
async def test_hostile_volunteer_fields_are_422_naming_the_field(
    client: httpx.AsyncClient, change: dict[str, Any], field: str
) -> None:
    b = body(**change)
    # json.dumps writes a lone surrogate as its \\ud800 escape, as an attacker's client would
    r = await client.post("/volunteers", content=json.dumps(b).encode(), headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert field in r.text
    found = await client.get("/volunteers", params={"unit": VILLAGE, "page_size": 1000})
    assert b["mobile"] not in r.text and all(v["mobile"] != "+86" + b["mobile"] for v in found.json()["items"])


async def test_a_point_inside_the_city_is_kept_and_a_team_outside_refused(client: httpx.AsyncClient) -> None:
    r = await client.post("/volunteers", json=body(lat=30.0, lon=120.5))
    assert r.status_code == 201, r.text
    vid = r.json()["id"]
    assert (await client.patch(f"/volunteers/{vid}", json={"lon": 179.0})).status_code == 422
    team = {"name": f"队{uuid.uuid4().hex[:6]}", "team_type": "water", "unit_code": "330603", "lat": 30.0, "lon": 179.0}
    r = await client.post("/teams", json=team)
    assert r.status_code == 422 and "lon" in r.text, r.text
    r = await client.post("/teams", json={**team, "name": "队\x1b"})
    assert r.status_code == 422 and "name" in r.text, r.text


async def test_text_queries_refuse_nul(client: httpx.AsyncClient) -> None:
    r = await client.get("/volunteers", params={"name": "王\x00"})
    assert r.status_code == 422 and "name" in r.text, r.text


async def test_an_openid_belongs_to_one_active_volunteer_and_the_holder_is_named(client: httpx.AsyncClient) -> None:
    oid = openid()
    a = await client.post("/volunteers", json=body(wechat_openid=oid))
    assert a.status_code == 201, a.text
    a_id = a.json()["id"]
    dup = await client.post("/volunteers", json=body(wechat_openid=oid))
    assert dup.status_code == 409 and a_id in dup.json()["detail"], dup.text
    b = await client.post("/volunteers", json=body())
    assert b.status_code == 201
    b_id = b.json()["id"]
    r = await client.patch(f"/volunteers/{b_id}", json={"wechat_openid": oid})
    assert r.status_code == 409 and a_id in r.json()["detail"], r.text
    m = mobile()
    register = f"姓名,手机号码,区划代码,微信OpenID\n丙,{m},{VILLAGE},{oid}\n"
    r = await client.post("/imports", files={"file": ("o.csv", register.encode(), "text/csv")})
    assert r.status_code == 422, r.text
    [e] = r.json()["errors"]
    assert e["row"] == 2 and e["column"] == "微信OpenID" and a_id in e["reason"]
    # a retired holder frees it; restoring them while someone else holds it is refused
    assert (await client.delete(f"/volunteers/{a_id}")).status_code == 200
    assert (await client.patch(f"/volunteers/{b_id}", json={"wechat_openid": oid})).status_code == 200
    r = await client.post(f"/volunteers/{a_id}/restore")
    assert r.status_code == 409 and b_id in r.json()["detail"], r.text


async def test_the_mobile_conflict_names_the_holder(client: httpx.AsyncClient) -> None:
    b = body()
    a = await client.post("/volunteers", json=b)
    assert a.status_code == 201
    r = await client.post("/volunteers", json=b)
    assert r.status_code == 409 and a.json()["id"] in r.json()["detail"], r.text


async def test_two_rows_with_one_openid_are_an_error(client: httpx.AsyncClient) -> None:
    oid = openid()
    register = f"姓名,手机号码,区划代码,openid\n甲,{mobile()},{VILLAGE},{oid}\n乙,{mobile()},{VILLAGE},{oid}\n"
    r = await client.post("/imports", files={"file": ("o.csv", register.encode(), "text/csv")})
    assert r.status_code == 422, r.text
    [e] = r.json()["errors"]
    assert e["row"] == 3 and "row 2" in e["reason"]


@pytest.mark.parametrize(("cell", "column"), [
    ('=HYPERLINK("http://x.example/","点我")', "姓名"),
    ("@SUM(1+1)", "姓名"),
    ("+1+1", "证书编号"),
    ("-1+1", "所属队伍"),
    ("王\x07明", "姓名"),
])
async def test_formula_and_control_cells_are_flagged_and_nothing_imported(
    client: httpx.AsyncClient, cell: str, column: str
) -> None:
    m = mobile()
    cols = {"姓名": "王明", "证书编号": "", "所属队伍": ""}
    cols[column] = cell
    row = [cols["姓名"], m, VILLAGE, "急救", cols["证书编号"], cols["所属队伍"]]
    out = io.StringIO()
    csv.writer(out).writerows([["姓名", "手机号码", "区划代码", "技能", "证书编号", "所属队伍"], row])
    text = out.getvalue()
    r = await client.post("/imports", files={"file": ("f.csv", text.encode(), "text/csv")})
    assert r.status_code == 422, r.text
    errors = r.json()["errors"]
    assert any(e["row"] == 2 and e["column"] == column for e in errors), errors
    assert r.json()["committed"] is False


async def test_an_implausible_date_cell_is_a_row_error(client: httpx.AsyncClient) -> None:
    text = f"姓名,手机号码,区划代码,技能,发证日期\n王明,{mobile()},{VILLAGE},急救,0448-01-01\n"
    r = await client.post("/imports", files={"file": ("d.csv", text.encode(), "text/csv")})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["column"] == "发证日期"


async def test_a_csv_cell_over_the_field_limit_is_422_naming_the_row(client: httpx.AsyncClient) -> None:
    text = f"姓名,手机号码,区划代码\n王明,{mobile()},{VILLAGE}\n{'王' * 200_000},{mobile()},{VILLAGE}\n"
    r = await client.post("/imports", files={"file": ("big.csv", text.encode(), "text/csv")})
    assert r.status_code == 422, r.text
    assert "row" in r.json()["detail"]


@pytest.mark.parametrize("route", ["/imports", "/aeds/imports"])  # the AED sheet answered 400 (its own twin)
async def test_a_workbook_inflating_beyond_the_cap_is_413_before_it_is_read(client: httpx.AsyncClient,
                                                                           route: str) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        with z.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as f:
            chunk = b"<c/>" * (1 << 18)  # 1 MiB
            for _ in range(110):
                f.write(chunk)
    data = buf.getvalue()
    assert len(data) < 1024 * 1024
    r = await client.post(route, files={"file": ("bomb.xlsx", data, "application/octet-stream")})
    assert r.status_code == 413, r.text
    assert "inflates" in r.json()["detail"]


async def test_a_json_body_over_a_mebibyte_is_413_before_it_is_parsed(client: httpx.AsyncClient) -> None:
    r = await client.post("/volunteers", content=b'{"name": "' + b"a" * (2 * 1024 * 1024) + b'"}',
                          headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text


async def test_health_answers_while_a_register_is_being_parsed(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.roster.adapters import spreadsheet

    started, answered = threading.Event(), threading.Event()
    real = spreadsheet.read_table
    seen: list[bool] = []

    def slow_read(data: bytes, filename: str = "", **kw: Any) -> list[list[object]]:
        started.set()
        seen.append(answered.wait(timeout=30))  # on the event loop this waits in vain: health cannot answer
        return real(data, filename, **kw)

    monkeypatch.setattr(spreadsheet, "read_table", slow_read)
    text = f"姓名,手机号码,区划代码\n王明,{mobile()},{VILLAGE}\n"
    task = asyncio.create_task(client.post("/imports", params={"dry_run": "true"},
                                           files={"file": ("r.csv", text.encode(), "text/csv")}))
    await asyncio.to_thread(started.wait, 30)
    live = await client.get("/health/live")
    answered.set()
    r = await task
    assert live.status_code == 200 and r.status_code == 200, r.text
    assert seen == [True]  # health answered while the parse was still running


async def test_the_export_neutralises_formula_cells_and_imports_back(client: httpx.AsyncClient, roster_pool: Any) -> None:
    from services.roster import commands
    from services.roster.domain.model import Certificate, Volunteer

    village = VILLAGE
    m = mobile()
    legacy = Volunteer(id=uuid.uuid4(), revision=1, name='=HYPERLINK("http://x.example/","点我")', mobile="+86" + m,
                       unit_code=village, skills=("first_aid",),
                       certificates=(Certificate("first_aid", "-1+1", None, None),))
    async with roster_pool.acquire() as conn:  # written before the API refused such names
        await commands.create_volunteer(conn, legacy)
    r = await client.get("/exports/volunteers.csv", params={"unit": village})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv"), r.text
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    [row] = [x for x in rows[1:] if x[1] == m]
    assert row[0] == "'" + legacy.name and row[4] == "'-1+1"
    assert not any(c.startswith(("=", "+", "-", "@")) for x in rows for c in x)
    ok = await client.post("/imports", params={"dry_run": "true"},
                           files={"file": ("export.csv", r.content, "text/csv")})
    assert ok.status_code == 200 and ok.json()["rows"] == len(rows) - 1, ok.text
