"""Imports on the real PostgreSQL, events through the outbox relay to the real Kafka topics."""

from __future__ import annotations

import io
import json
import uuid
from datetime import date
from typing import Any

from services.roster import commands
from shared.events import VolunteerContactUpdated, VolunteerProfileUpdated, parse_event
from shared.topics import ROSTER_CONTACT, ROSTER_PROFILE
from tests.integration.roster.conftest import consume, headers_of

HEADER = "姓名,手机号码,区县,乡镇（街道）,村（社区）,技能,证书编号,发证日期,有效期至,身份证号,家庭住址\n"


def _mobiles(n: int) -> list[str]:
    base = uuid.uuid4().int % 10**6
    return [f"19992{(base + i) % 10**6:06d}" for i in range(n)]


def _register(mobiles: list[str]) -> str:
    rows = [
        f"王小明,{mobiles[0][:3]} {mobiles[0][3:7]} {mobiles[0][7:]},柯桥区,平水镇,王化村,救护员、CPR,HZ001,2024年3月1日,"
        "2027-02-28,330603199001011234,平水镇某路1号\n",
        f"李娜,+86-{mobiles[1]},越城区,塔山街道,花园社区,水上救援,W7,2024/3/1,45716,,\n",
        f"张三,0086{mobiles[2]},诸暨市,暨阳街道,,驾驶员,,,,,\n",
    ]
    return HEADER + "".join(rows)


async def _outbox_count(pool: Any) -> int:
    async with pool.acquire() as conn:
        return int(await conn.fetchval("SELECT count(*) FROM outbox"))


async def test_import_gbk_csv_produces_profile_and_contact_events_without_phone_on_profile(
    roster_pool: Any, relay: Any, stack: Any
) -> None:
    mobiles = _mobiles(3)
    text = _register(mobiles).replace("诸暨市,暨阳街道,,", "诸暨市,暨阳街道,城西社区,")
    async with roster_pool.acquire() as conn:
        # 暨阳街道 has a community whose name contains 城西? Use whatever the first village of that street is.
        first = await conn.fetchval(
            "SELECT v.name FROM units v JOIN units t ON t.code = v.parent_code WHERE t.name = '暨阳街道' ORDER BY v.code "
            "LIMIT 1")
        text = text.replace("城西社区", first)
        before = await _outbox_count(roster_pool)
        report = await commands.import_file(conn, text.encode("gb18030"), "花名册.csv")
    assert report.errors == [], report.errors
    assert (report.created, report.updated, report.unchanged, report.committed) == (3, 0, 0, True)
    assert report.ignored_columns == ["身份证号", "家庭住址"]
    assert await _outbox_count(roster_pool) == before + 6

    async with roster_pool.acquire() as conn:
        rows = await conn.fetch("SELECT id, mobile, unit_code, certificates FROM volunteers WHERE mobile = ANY($1)",
                                ["+86" + m for m in mobiles])
    assert len(rows) == 3
    by_mobile = {r["mobile"]: r for r in rows}
    assert by_mobile["+86" + mobiles[1]]["certificates"][0]["expires_on"] == "2025-02-28"  # Excel serial 45716
    ids = {str(r["id"]) for r in rows}

    await relay.publish_pending()
    profiles = await consume(stack.bootstrap, ROSTER_PROFILE.name, ids, expect=3)
    contacts = await consume(stack.bootstrap, ROSTER_CONTACT.name, ids, expect=3)
    assert {r.key.decode() for r in profiles} == ids
    assert {r.key.decode() for r in contacts} == ids
    for r in profiles:
        raw = r.value.decode()
        for m in mobiles:
            assert m not in raw and m[-8:] not in raw
        event = parse_event(r.value)
        assert isinstance(event, VolunteerProfileUpdated)
        assert event.revision == 1 and str(event.volunteer_id) == r.key.decode()
        assert headers_of(r)["event_type"] == "VolunteerProfileUpdated"
    got = {}
    for r in contacts:
        event = parse_event(r.value)
        assert isinstance(event, VolunteerContactUpdated)
        got[event.mobile] = event
    assert set(got) == {"+86" + m for m in mobiles}

    # The same file again changes nothing: no revision, no event.
    async with roster_pool.acquire() as conn:
        again = await commands.import_file(conn, text.encode("gb18030"), "花名册.csv")
    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)
    assert await _outbox_count(roster_pool) == before + 6

    # A changed row is an update with revision 2.
    changed = text.replace("驾驶员", "驾驶员、后勤")
    async with roster_pool.acquire() as conn:
        third = await commands.import_file(conn, changed.encode("utf-8-sig"), "花名册.csv")
        rev = await conn.fetchval("SELECT revision FROM volunteers WHERE mobile = $1", "+86" + mobiles[2])
    assert (third.created, third.updated, third.unchanged) == (0, 1, 2)
    assert rev == 2


async def test_a_file_with_any_bad_row_imports_nothing(roster_pool: Any) -> None:
    mobiles = _mobiles(3)
    text = _register(mobiles).replace("王化村", "王化材").replace("2024/3/1", "2024/2/30")
    before = await _outbox_count(roster_pool)
    async with roster_pool.acquire() as conn:
        report = await commands.import_file(conn, text.encode("utf-8"), "bad.csv")
        n = await conn.fetchval("SELECT count(*) FROM volunteers WHERE mobile = ANY($1)", ["+86" + m for m in mobiles])
    assert not report.ok and not report.committed
    cols = {(e.row, e.column) for e in report.errors}
    assert (2, "村（社区）") in cols and (3, "发证日期") in cols and (4, "村（社区）") in cols
    assert any(e.suggestion and "王化" in e.suggestion for e in report.errors)
    assert n == 0
    assert await _outbox_count(roster_pool) == before


async def test_dry_run_counts_and_writes_nothing(roster_pool: Any) -> None:
    mobiles = _mobiles(3)
    async with roster_pool.acquire() as conn:
        first = await conn.fetchval(
            "SELECT v.name FROM units v JOIN units t ON t.code = v.parent_code WHERE t.name = '暨阳街道' LIMIT 1")
        text = _register(mobiles).replace("诸暨市,暨阳街道,,", f"诸暨市,暨阳街道,{first},")
        report = await commands.import_file(conn, text.encode("utf-8"), "r.csv", dry_run=True)
        n = await conn.fetchval("SELECT count(*) FROM volunteers WHERE mobile = ANY($1)", ["+86" + m for m in mobiles])
    assert report.ok and report.dry_run and not report.committed
    assert report.created == 3
    assert n == 0


async def test_xlsx_register_with_typed_cells(roster_pool: Any) -> None:
    import openpyxl

    mobiles = _mobiles(2)
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Name", "Mobile", "Unit Code", "Skills", "Certificate Number", "Issued", "Expires", "ID Number"])
    ws.append(["Chen", int(mobiles[0]), "330603105209", "first aid", "X1", date(2024, 3, 1), date(2027, 2, 28), "x"])
    ws.append(["Zhou", mobiles[1], 330602001004, "心理援助 后勤", None, None, None, None])
    buf = io.BytesIO()
    wb.save(buf)
    async with roster_pool.acquire() as conn:
        exists = await conn.fetchval("SELECT count(*) FROM units WHERE code IN ('330603105209', '330602001004')")
        report = await commands.import_file(conn, buf.getvalue(), "register.xlsx")
        rows = await conn.fetch("SELECT mobile, skills, certificates, unit_code FROM volunteers WHERE mobile = ANY($1) "
                                "ORDER BY mobile", ["+86" + m for m in mobiles])
    assert exists == 2
    assert report.ok, json.dumps(report.to_json(), ensure_ascii=False)
    assert report.ignored_columns == ["ID Number"]
    by = {r["mobile"]: r for r in rows}
    first = by["+86" + mobiles[0]]
    assert first["skills"] == ["first_aid"]
    assert first["certificates"] == [{"kind": "first_aid", "number": "X1", "issued_on": "2024-03-01",
                                      "expires_on": "2027-02-28"}]
    assert by["+86" + mobiles[1]]["skills"] == ["psych_support", "logistics"]
    assert by["+86" + mobiles[1]]["unit_code"] == "330602001004"


async def test_reimport_keeps_what_the_sheet_has_no_columns_for_and_adds_certificates(roster_pool: Any) -> None:
    m = _mobiles(1)[0]
    first = ("姓名,手机号码,区划代码,技能,证书编号,发证日期,有效期至\n"
             f"王小明,{m},330603105209,救护员、水上救援,HZ001,2024-03-01,2027-02-28\n")
    async with roster_pool.acquire() as conn:
        assert (await commands.import_file(conn, first.encode(), "a.csv")).created == 1
        # Name changed; no skills or certificate columns at all.
        bare = f"姓名,手机号码,区划代码\n王晓明,{m},330603105209\n"
        r = await commands.import_file(conn, bare.encode(), "b.csv")
        assert (r.ok, r.updated) == (True, 1), r.errors
        # A second certificate (another number) for the same volunteer, and new dates for the first.
        second = ("姓名,手机号码,区划代码,技能,证书编号,发证日期,有效期至\n"
                  f"王晓明,{m},330603105209,救护员,HZ002,2025-01-01,2028-12-31\n")
        assert (await commands.import_file(conn, second.encode(), "c.csv")).updated == 1
        renewed = second.replace("HZ002,2025-01-01,2028-12-31", "HZ001,2024-03-01,2030-02-28")
        assert (await commands.import_file(conn, renewed.encode(), "d.csv")).updated == 1
        row = await conn.fetchrow("SELECT name, skills, certificates FROM volunteers WHERE mobile = $1", "+86" + m)
    assert row["name"] == "王晓明"
    certs = {(c["kind"], c["number"]): c["expires_on"] for c in row["certificates"]}
    assert certs == {("first_aid", "HZ001"): "2030-02-28", ("first_aid", "HZ002"): "2028-12-31"}
    assert list(row["skills"]) == ["first_aid"]  # the skills column, where there is one, is the new list





async def test_reimport_of_a_retired_volunteer_is_an_error_not_a_silent_reactivation(roster_pool: Any) -> None:
    m = _mobiles(1)[0]
    text = f"姓名,手机号码,区划代码\n王小明,{m},330603105209\n"
    async with roster_pool.acquire() as conn:
        await commands.import_file(conn, text.encode(), "a.csv")
        vid = await conn.fetchval("SELECT id FROM volunteers WHERE mobile = $1", "+86" + m)
        await commands.retire_volunteer(conn, vid)
        before = await _outbox_count(roster_pool)
        dry = await commands.import_file(conn, text.encode(), "a.csv", dry_run=True)
        real = await commands.import_file(conn, text.encode(), "a.csv")
        active = await conn.fetchval("SELECT active FROM volunteers WHERE id = $1", vid)
    for report in (dry, real):
        assert not report.ok and not report.committed
        assert [(e.row, e.column) for e in report.errors] == [(2, "手机号码")]
        assert "retired volunteer" in report.errors[0].reason and "restore" in report.errors[0].reason
        assert m not in (report.errors[0].value or "")
    assert active is False
    assert await _outbox_count(roster_pool) == before
