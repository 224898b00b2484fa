"""WGS-84 → GCJ-02 against published point pairs, and the Amap marker link."""

from __future__ import annotations

import pytest

from shared.maps import (
    AMAP_MARKER_PREFIX,
    amap_marker_url,
    amap_position,
    out_of_china,
    position_of,
    wgs84_to_gcj02,
)

# Point pairs published with the reference implementation (googollee/eviltransform, python/test.py):
# wgs lat, wgs lon, gcj lat, gcj lon.
PAIRS = [
    (31.1774276, 121.5272106, 31.17530398364597, 121.531541859215),  # Shanghai
    (22.543847, 113.912316, 22.540796131694766, 113.9171764808363),  # Shenzhen
    (39.911954, 116.377817, 39.91334545536069, 116.38404722455657),  # Beijing
]


@pytest.mark.parametrize(("lat", "lon", "g_lat", "g_lon"), PAIRS)
def test_published_pairs(lat: float, lon: float, g_lat: float, g_lon: float) -> None:
    got = wgs84_to_gcj02(lat, lon)
    assert got == pytest.approx((g_lat, g_lon), abs=1e-7)


def test_outside_china_unchanged() -> None:
    assert out_of_china(35.6812, 139.7671)  # Tokyo
    assert wgs84_to_gcj02(35.6812, 139.7671) == (35.6812, 139.7671)
    assert not out_of_china(30.0, 120.5)


def test_marker_link_is_gcj02_lon_lat() -> None:
    lat, lon, g_lat, g_lon = PAIRS[0]
    assert amap_position(lat, lon) == f"{g_lon:.6f},{g_lat:.6f}"
    assert amap_marker_url(lat, lon, "南门 广场") == (
        f"{AMAP_MARKER_PREFIX}{g_lon:.6f},{g_lat:.6f}&name=%E5%8D%97%E9%97%A8%20%E5%B9%BF%E5%9C%BA"
    )
    assert amap_marker_url(lat, lon) == AMAP_MARKER_PREFIX + amap_position(lat, lon)


def test_position_of_reads_back_the_link() -> None:
    url = amap_marker_url(30.0, 120.5, "南门")
    assert position_of(url) == amap_position(30.0, 120.5)
    assert position_of(None) == "" and position_of("https://example.com/?position=1,2") == ""
