"""The AED registry's pure rules: access hours, status, condition on a day, the sheet import (issue #17)."""

from __future__ import annotations

from datetime import date
from uuid import uuid4

import pytest

from services.roster.domain.aeds import (
    Aed,
    HoursError,
    aed_event,
    condition,
    expiring,
    normalise_hours,
    parse_status,
    validate_aed_sheet,
)
from shared.divisions import distance_m, gcj02_to_wgs84
from shared.events import AedStatus, parse_event
from tests.unit.roster.test_import_validation import UNITS

HEADER = ["设备编号", "安装地址", "具体位置", "区划代码", "所属单位", "经度", "纬度", "坐标系", "开放时间", "状态",
          "电极片有效期", "电池有效期", "最近检查日期", "检查人"]
GOOD = ["AED-001", "鲁迅中路241号", "游客中心一楼服务台旁", "330602001", "鲁迅故里景区管理处", "120.5862",
        "29.9931", "GCJ-02", "每天8:00-17:30", "在用", "2027-06-30", "2028-01-31", "2026-11-20", "李明"]


@pytest.mark.parametrize(("text", "stored"), [
    ("", "24/7"), ("24小时", "24/7"), ("全天", "24/7"), ("24/7", "24/7"),
    ("每天8:00-17:30", "Mo-Su 08:00-17:30"), ("周一至周五 08:00～18:00", "Mo-Fr 08:00-18:00"),
    ("周一至周五 08:00-18:00，周六 09:00-12:00", "Mo-Fr 08:00-18:00; Sa 09:00-12:00"),
    ("Mo-Fr 08:00-18:00; Sa 09:00-12:00", "Mo-Fr 08:00-18:00; Sa 09:00-12:00"),
    ("每天 22:00-06:00", "Mo-Su 22:00-06:00"),
])
def test_access_hours_are_normalised_to_opening_hours(text: str, stored: str) -> None:
    assert normalise_hours(text) == stored


@pytest.mark.parametrize("bad", ["白天", "8点到18点", "Mo-Fr 25:00-26:00x"])
def test_access_hours_not_understood(bad: str) -> None:
    with pytest.raises(HoursError):
        normalise_hours(bad)


def test_status_words() -> None:
    assert parse_status("正常") is AedStatus.IN_SERVICE
    assert parse_status("") is AedStatus.IN_SERVICE
    assert parse_status("维修中") is AedStatus.OUT_OF_SERVICE
    with pytest.raises(ValueError):
        parse_status("maybe")


def _aed(**kw: object) -> Aed:
    base: dict[str, object] = dict(id=uuid4(), revision=1, serial="X", lat=30.0, lon=120.58, address="a",
                                   unit_code="330602")
    return Aed(**{**base, **kw})  # type: ignore[arg-type]


def test_condition_and_reminder() -> None:
    day = date(2026, 12, 3)
    assert condition(_aed(), day) == "in_service"
    assert condition(_aed(pads_expire_on=date(2026, 12, 2)), day) == "pads_expired"
    assert condition(_aed(battery_expire_on=date(2026, 12, 2)), day) == "battery_expired"
    assert condition(_aed(status=AedStatus.OUT_OF_SERVICE), day) == "out_of_service"
    a = _aed(pads_expire_on=date(2026, 12, 20), battery_expire_on=date(2027, 12, 20))
    assert expiring(a, day, 30) == [("pads", date(2026, 12, 20))]
    assert expiring(a, day, 10) == []


def test_event_round_trips() -> None:
    a = _aed(pads_expire_on=date(2027, 1, 1), access_hours="Mo-Su 08:00-17:30", location="一楼")
    ev = aed_event(a)
    back = parse_event(ev.to_bytes())
    assert back == ev


def test_good_sheet_gcj02_converted() -> None:
    plan = validate_aed_sheet([HEADER, GOOD], UNITS)
    assert plan.report.errors == []
    [r] = plan.rows
    lat, lon = gcj02_to_wgs84(29.9931, 120.5862)
    assert (r.lat, r.lon) == (pytest.approx(lat), pytest.approx(lon))
    assert distance_m(r.lat, r.lon, 29.9931, 120.5862) > 100
    assert (r.access_hours, r.status, r.pads_expire_on, r.last_checked_by) == (
        "Mo-Su 08:00-17:30", AedStatus.IN_SERVICE, date(2027, 6, 30), "李明")


def test_bad_rows_are_named_by_row_and_column_and_nothing_is_kept() -> None:
    bad_unit = [*GOOD[:3], "330602999999", *GOOD[4:]]
    bad_hours = ["AED-002", *GOOD[1:8], "白天", *GOOD[9:]]
    twice = list(GOOD)
    no_point = ["AED-004", *GOOD[1:5], "", "", "GCJ-02", *GOOD[8:]]
    plan = validate_aed_sheet([HEADER, bad_unit, bad_hours, twice, no_point], UNITS)
    got = {(e.row, e.column) for e in plan.report.errors}
    assert got == {(2, "区划代码"), (3, "开放时间"), (4, "设备编号"), (5, "经度")}
    assert not plan.report.ok


def test_missing_required_columns_are_header_errors() -> None:
    plan = validate_aed_sheet([["设备编号", "状态"], ["A", "在用"]], UNITS)
    assert {e.column for e in plan.report.errors} == {"address", "unit_code", "lon", "lat", "datum"}
    assert all(e.row == 1 for e in plan.report.errors)
