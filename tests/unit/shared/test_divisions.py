import pytest

from shared.divisions import (
    ancestor,
    ancestors,
    distance_m,
    gcj02_to_wgs84,
    level_of,
    next_level,
    wgs84_to_gcj02,
)
from shared.vocabulary import Level


def test_levels_and_ancestors_follow_code_prefixes():
    assert level_of("330600") is Level.CITY
    assert level_of("330603") is Level.COUNTY
    assert level_of("330603101") is Level.TOWN
    assert level_of("330603101201") is Level.VILLAGE
    assert ancestors("330603101201") == {
        Level.VILLAGE: "330603101201", Level.TOWN: "330603101", Level.COUNTY: "330603", Level.CITY: "330600",
    }
    assert ancestor("330603101", Level.CITY) == "330600"
    with pytest.raises(ValueError):
        ancestor("330603", Level.TOWN)
    with pytest.raises(ValueError):
        level_of("3306031")


def test_escalation_order():
    assert [next_level(lv) for lv in Level] == [Level.TOWN, Level.COUNTY, Level.CITY, None]


def test_gcj02_round_trip_and_offset_is_hundreds_of_metres():
    lat, lon = 30.030192, 120.580364  # 绍兴市 centre, GCJ-02 (Amap)
    wlat, wlon = gcj02_to_wgs84(lat, lon)
    offset = distance_m(lat, lon, wlat, wlon)
    assert 100 < offset < 1000
    back = wgs84_to_gcj02(wlat, wlon)
    assert distance_m(back[0], back[1], lat, lon) < 0.5


def test_distance_is_great_circle_metres():
    assert distance_m(30.0, 120.0, 31.0, 120.0) == pytest.approx(111_195, rel=1e-3)
