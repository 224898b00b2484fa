"""Map links a phone opens, and the WGS-84 → GCJ-02 conversion they need.

Pure: no I/O. Points inside the services are WGS-84 (what GPS and the roster give). Maps used in China
(Amap/高德, Tencent) expect GCJ-02, the datum of the Chinese survey rules (GB 20263): the same point in
WGS-84 lands 100-700 m off on their maps. :func:`wgs84_to_gcj02` is the published conversion (the
Krasovsky-1940 ellipsoid and offset polynomials in the public eviltransform / coordtransform code,
checked against their published point pairs in ``tests/unit/shared/test_maps.py``); outside China's
bounding box the point is returned unchanged, as those maps do.

The link is Amap's URI API marker page (lbs.amap.com/api/uri-api/guide/mobile-web/point:
``https://uri.amap.com/marker?position=lon,lat&name=...``; ``coordinate`` defaults to ``gaode`` =
GCJ-02). A phone opens it in the browser, which offers the Amap app when it is installed.

SMS providers refuse URLs as template variables (Aliyun ``isv.PARAM_NOT_SUPPORT_URL``, Tencent
``InvalidParameterValue.ProhibitedUseUrlInTemplateParameter``): the approved template holds
:data:`AMAP_MARKER_PREFIX` as fixed text and only :func:`amap_position` (``lon,lat``, digits) is a variable.
"""

from __future__ import annotations

import math
from urllib.parse import parse_qs, quote, urlsplit

__all__ = [
    "AMAP_MARKER_PREFIX", "amap_marker_url", "amap_position", "out_of_china", "position_of", "wgs84_to_gcj02",
]

AMAP_MARKER_PREFIX = "https://uri.amap.com/marker?position="

_A = 6378245.0  # Krasovsky 1940 semi-major axis, metres
_EE = 0.00669342162296594323  # its first eccentricity squared


def out_of_china(lat: float, lon: float) -> bool:
    """True outside the rough bounding box where GCJ-02 applies (lat 0.8293..55.8271, lon 72.004..137.8347)."""
    return not (72.004 <= lon <= 137.8347 and 0.8293 <= lat <= 55.8271)


def _lat_offset(x: float, y: float) -> float:
    r = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
    r += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    r += (20.0 * math.sin(y * math.pi) + 40.0 * math.sin(y / 3.0 * math.pi)) * 2.0 / 3.0
    r += (160.0 * math.sin(y / 12.0 * math.pi) + 320.0 * math.sin(y * math.pi / 30.0)) * 2.0 / 3.0
    return r


def _lon_offset(x: float, y: float) -> float:
    r = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
    r += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    r += (20.0 * math.sin(x * math.pi) + 40.0 * math.sin(x / 3.0 * math.pi)) * 2.0 / 3.0
    r += (150.0 * math.sin(x / 12.0 * math.pi) + 300.0 * math.sin(x / 30.0 * math.pi)) * 2.0 / 3.0
    return r


def wgs84_to_gcj02(lat: float, lon: float) -> tuple[float, float]:
    """Convert a WGS-84 point (degrees) to GCJ-02 (degrees); returns ``(lat, lon)``.

    Points outside China (:func:`out_of_china`) come back unchanged. Accuracy against the reference
    implementations: better than 1e-6 degrees.
    """
    if out_of_china(lat, lon):
        return lat, lon
    d_lat = _lat_offset(lon - 105.0, lat - 35.0)
    d_lon = _lon_offset(lon - 105.0, lat - 35.0)
    rad = lat / 180.0 * math.pi
    magic = 1 - _EE * math.sin(rad) ** 2
    sqrt_magic = math.sqrt(magic)
    d_lat = (d_lat * 180.0) / ((_A * (1 - _EE)) / (magic * sqrt_magic) * math.pi)
    d_lon = (d_lon * 180.0) / (_A / sqrt_magic * math.cos(rad) * math.pi)
    return lat + d_lat, lon + d_lon


def amap_position(lat: float, lon: float) -> str:
    """Amap's ``position`` value for a WGS-84 point: ``"lon,lat"`` in GCJ-02, 6 decimals (about 0.1 m)."""
    g_lat, g_lon = wgs84_to_gcj02(lat, lon)
    return f"{g_lon:.6f},{g_lat:.6f}"


def amap_marker_url(lat: float, lon: float, name: str = "") -> str:
    """The Amap marker link for a WGS-84 point, with ``name`` (percent-encoded UTF-8) as the marker's label."""
    url = AMAP_MARKER_PREFIX + amap_position(lat, lon)
    return url + "&name=" + quote(name, safe="") if name else url


def position_of(url: str | None) -> str:
    """The ``position`` (``lon,lat``) of an Amap marker link made by :func:`amap_marker_url`; "" for anything else."""
    if not url or not url.startswith(AMAP_MARKER_PREFIX):
        return ""
    values = parse_qs(urlsplit(url).query).get("position", [""])
    return values[0]
