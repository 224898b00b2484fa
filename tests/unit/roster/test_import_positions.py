"""Positions from registers: coordinates with their datum, else the centre of the smallest division known."""

import pytest

from services.roster.domain.importing import merge_into, validate_register
from services.roster.domain.positions import placed, unit_centre
from shared.divisions import distance_m, gcj02_to_wgs84
from tests.unit.roster.test_import_validation import UNITS, _stored

HEADER = ["姓名", "手机号码", "区划代码", "经度", "纬度", "坐标系"]
PINGSHUI = UNITS.get("330603105")  # 平水镇: the file gives its centre; its villages have none


def test_wgs84_coordinates_are_kept_exact() -> None:
    plan = validate_register([HEADER, ["王小明", "13800138000", "330603105201", "120.6401", "29.8961", "WGS-84"]],
                             UNITS)
    assert plan.report.errors == []
    [r] = plan.rows
    assert (r.lat, r.lon, r.position_approximate) == (29.8961, 120.6401, False)


@pytest.mark.parametrize("datum", ["GCJ-02", "gcj02", "火星坐标", "GCJ02"])
def test_gcj02_coordinates_are_converted_to_wgs84(datum: str) -> None:
    plan = validate_register([HEADER, ["王小明", "13800138000", "330603105201", "120.6401", "29.8961", datum]], UNITS)
    assert plan.report.errors == []
    [r] = plan.rows
    lat, lon = gcj02_to_wgs84(29.8961, 120.6401)
    assert (r.lat, r.lon, r.position_approximate) == (pytest.approx(lat), pytest.approx(lon), False)
    assert 100 < distance_m(29.8961, 120.6401, r.lat, r.lon) < 1000  # GCJ-02 is a few hundred metres off here


def test_without_coordinates_the_centre_of_the_smallest_division_known_is_approximate() -> None:
    assert PINGSHUI is not None and PINGSHUI.lat is not None
    plan = validate_register([HEADER[:3], ["王小明", "13800138000", "330603105201"]], UNITS)
    assert plan.report.errors == []
    [r] = plan.rows
    # the village has no centre in the divisions file: its town's is used
    assert (r.lat, r.lon, r.position_approximate) == (PINGSHUI.lat, PINGSHUI.lon, True)
    assert unit_centre(UNITS, "330603105201") == (PINGSHUI.lat, PINGSHUI.lon)
    # blank coordinate cells on a sheet that has the columns: the same
    plan = validate_register([HEADER, ["王小明", "13800138000", "330603105201", "", "", ""]], UNITS)
    assert plan.report.errors == [] and plan.rows[0].position_approximate


@pytest.mark.parametrize(("lon", "lat", "datum", "column", "reason"), [
    ("abc", "29.9", "WGS-84", "经度", "not a number"),
    ("120.6", "", "WGS-84", "纬度", "latitude is missing"),
    ("", "29.9", "WGS-84", "经度", "longitude is missing"),
    ("29.9", "120.6", "WGS-84", "纬度", "between -90 and 90"),  # swapped columns
    ("179", "29.9", "WGS-84", "经度", "outside the city"),
    ("120.6", "29.9", "", "坐标系", "datum is missing"),
    ("120.6", "29.9", "BD-09", "坐标系", "unknown datum"),
    ("nan", "29.9", "WGS-84", "经度", "not a number"),
])
def test_bad_coordinates_name_the_row_and_column_and_import_nothing(
    lon: str, lat: str, datum: str, column: str, reason: str
) -> None:
    table = [HEADER, ["李娜", "13900000001", "330603105202", "120.64", "29.89", "WGS-84"],
             ["王小明", "13800138000", "330603105201", lon, lat, datum]]
    plan = validate_register(table, UNITS)
    assert not plan.report.ok
    [e] = plan.report.errors
    assert (e.row, e.column) == (3, column) and reason in e.reason, e
    assert [r.row for r in plan.rows] == [2]  # the good row is planned, but an import with errors writes nothing


def test_a_reimport_without_coordinates_keeps_an_exact_position_and_moves_an_approximate_one() -> None:
    plan = validate_register([HEADER[:3], ["王小明", "13800138000", "330603105202"]], UNITS)
    exact = _stored(lat=29.9, lon=120.6, position_approximate=False)
    assert (merge_into(exact, plan.rows[0], plan.columns).lat, merge_into(exact, plan.rows[0], plan.columns).lon) \
        == (29.9, 120.6)
    rough = _stored(lat=30.0, lon=120.5, position_approximate=True)
    moved = merge_into(rough, plan.rows[0], plan.columns)
    assert PINGSHUI is not None
    assert (moved.lat, moved.lon, moved.position_approximate) == (PINGSHUI.lat, PINGSHUI.lon, True)
    given = validate_register([HEADER, ["王小明", "13800138000", "330603105202", "120.61", "29.91", "WGS-84"]], UNITS)
    new = merge_into(rough, given.rows[0], given.columns)
    assert (new.lat, new.lon, new.position_approximate) == (29.91, 120.61, False)


def test_placed_fills_only_what_is_unknown() -> None:
    v = _stored()
    assert v.lat is None
    p = placed(v, (29.9, 120.6))
    assert (p.lat, p.lon, p.position_approximate) == (29.9, 120.6, True)
    own = _stored(lat=29.1, lon=120.1)
    assert placed(own, (29.9, 120.6)) == own
    assert placed(v, None) == v
