"""Statistical division codes (统计用区划代码) and the four levels they encode.

Source: National Bureau of Statistics, 2023年统计用区划代码和城乡划分代码. Codes are hierarchical
by prefix: a village/community code has 12 digits (``330603101201``), its town/street is the
first 9 (``330603101``), its district/county the first 6 (``330603``), and its city the first 4
followed by ``00`` (``330600``). A city code and a county code both have 6 digits: a 6-digit
code ending in ``00`` is a city.

Coordinates: the divisions file's centre points are GCJ-02 (Amap); everything inside the
platform is WGS84. :func:`gcj02_to_wgs84` converts (the ``prcoords`` library, public domain,
iterative inverse to about 1 cm); distances are great-circle metres (``haversine``).
"""

from __future__ import annotations

import re

from haversine import Unit, haversine

from shared.vocabulary import Level

__all__ = [
    "ancestor",
    "ancestors",
    "distance_m",
    "gcj02_to_wgs84",
    "is_valid_code",
    "level_of",
    "next_level",
    "wgs84_to_gcj02",
]

_CODE = re.compile(r"^\d{6}(\d{3}(\d{3})?)?$")
_LEVEL_ORDER = (Level.VILLAGE, Level.TOWN, Level.COUNTY, Level.CITY)


def is_valid_code(code: str) -> bool:
    """True for a 6-, 9- or 12-digit code."""
    return bool(_CODE.match(code))


def level_of(code: str) -> Level:
    """The level a code is at.

    Raises:
        ValueError: not a 6-, 9- or 12-digit code.

    """
    if not is_valid_code(code):
        raise ValueError(f"not a division code: {code!r}")
    if len(code) == 12:
        return Level.VILLAGE
    if len(code) == 9:
        return Level.TOWN
    return Level.CITY if code.endswith("00") else Level.COUNTY


def ancestor(code: str, level: Level) -> str:
    """The code of the unit at ``level`` that contains ``code`` (itself when already at ``level``).

    Raises:
        ValueError: ``level`` is below the code's own level, or the code is invalid.

    """
    own = level_of(code)
    if _LEVEL_ORDER.index(level) < _LEVEL_ORDER.index(own):
        raise ValueError(f"{code} is a {own}; it has no {level} above it")
    if level is Level.CITY:
        return code[:4] + "00"
    if level is Level.COUNTY:
        return code[:6]
    if level is Level.TOWN:
        return code[:9]
    return code


def ancestors(code: str) -> dict[Level, str]:
    """Every unit containing ``code``, by level, the code's own level included."""
    own = _LEVEL_ORDER.index(level_of(code))
    return {lvl: ancestor(code, lvl) for lvl in _LEVEL_ORDER[own:]}


def next_level(level: Level) -> Level | None:
    """The level above ``level`` (village → town → county → city), or None above the city."""
    i = _LEVEL_ORDER.index(level)
    return _LEVEL_ORDER[i + 1] if i + 1 < len(_LEVEL_ORDER) else None


def gcj02_to_wgs84(lat: float, lon: float) -> tuple[float, float]:
    """GCJ-02 (Amap, Tencent maps) → WGS84, degrees, as (lat, lon)."""
    import prcoords

    p = prcoords.gcj_wgs_bored(prcoords.Coords(lat, lon))
    return p.lat, p.lon


def wgs84_to_gcj02(lat: float, lon: float) -> tuple[float, float]:
    """WGS84 → GCJ-02, degrees, as (lat, lon)."""
    import prcoords

    p = prcoords.wgs_gcj(prcoords.Coords(lat, lon))
    return p.lat, p.lon


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres between two WGS84 points (haversine, mean Earth radius)."""
    return float(haversine((lat1, lon1), (lat2, lon2), unit=Unit.METERS))
