"""Where a volunteer is, for ranking by distance: their own point, else their unit's centre (approximate).

Rules (issue #14, "positions from registers"):

- A point given with its datum is kept, converted to WGS84 when it is GCJ-02 (the datum of Amap and
  Tencent maps, which Chinese registers usually copy coordinates from; :func:`shared.divisions.gcj02_to_wgs84`,
  ``prcoords``). BD-09 (Baidu) and other datums are refused rather than guessed.
- Without a point, the volunteer is placed at the centre of the smallest division known for them (their
  village/community, else its town, county, city: the first of these the divisions file gives a centre for)
  and marked ``position_approximate``. Dispatch ranks by distance from that point
  (:mod:`services.dispatch.domain.selection`); without any, a volunteer is ranked last.
- A point is inside the city: the box of the divisions' centres widened by :data:`CITY_MARGIN_M`
  (a point outside is a typo or swapped columns, not a volunteer of this roster).

Coordinates are degrees; latitude in [-90, 90], longitude in [-180, 180].
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass, replace

from services.roster.domain.model import Volunteer
from services.roster.domain.units import UnitDirectory
from shared.divisions import gcj02_to_wgs84

__all__ = ["CITY_MARGIN_M", "CityBox", "PositionError", "parse_datum", "parse_degrees", "placed", "unit_centre",
           "to_wgs84"]

WGS84 = "WGS-84"
GCJ02 = "GCJ-02"
CITY_MARGIN_M = 30_000.0
_M_PER_DEG_LAT = 111_320.0
_DATUMS = {
    "wgs84": WGS84, "wgs-84": WGS84, "wgs": WGS84, "gps": WGS84, "epsg:4326": WGS84,
    "gcj02": GCJ02, "gcj-02": GCJ02, "gcj": GCJ02, "火星坐标": GCJ02, "火星坐标系": GCJ02, "国测局坐标": GCJ02,
    "高德": GCJ02, "腾讯": GCJ02,
}


class PositionError(ValueError):
    """A coordinate cell that cannot be used; ``field`` is ``lon``, ``lat`` or ``datum``."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def parse_degrees(value: object, field: str) -> float | None:
    """A longitude (``field="lon"``) or latitude (``"lat"``) cell as degrees; None when blank.

    Raises:
        PositionError: not a finite number, or outside [-180, 180] / [-90, 90].

    """
    text = unicodedata.normalize("NFKC", "" if value is None else str(value)).strip().rstrip("°")
    if not text:
        return None
    try:
        x = float(text)
    except ValueError:
        raise PositionError(field, f"{_word(field)} {text!r} is not a number (decimal degrees)") from None
    if not math.isfinite(x):
        raise PositionError(field, f"{_word(field)} {text!r} is not a number (decimal degrees)")
    limit = 180 if field == "lon" else 90
    if not -limit <= x <= limit:
        raise PositionError(field, f"{_word(field)} {x} is not between -{limit} and {limit}")
    return x


def parse_datum(value: object) -> str:
    """A datum cell: ``WGS-84`` or ``GCJ-02`` (spellings in :data:`_DATUMS`).

    Raises:
        PositionError: blank (a point needs its datum) or another datum (BD-09 is not converted).

    """
    text = unicodedata.normalize("NFKC", "" if value is None else str(value)).strip()
    if not text:
        raise PositionError("datum", "datum is missing: WGS-84 (GPS) or GCJ-02 (Amap/Tencent maps)")
    datum = _DATUMS.get(text.casefold().replace(" ", "").replace("_", "-"))
    if datum is None:
        datum = _DATUMS.get(text.casefold().replace(" ", "").replace("-", "").replace("_", ""))
    if datum is None:
        raise PositionError("datum", f"unknown datum {text!r}: WGS-84 (GPS) or GCJ-02 (Amap/Tencent maps)")
    return datum


def to_wgs84(lat: float, lon: float, datum: str) -> tuple[float, float]:
    """``(lat, lon)`` in WGS84 from ``datum`` (:data:`WGS84` or :data:`GCJ02`)."""
    return gcj02_to_wgs84(lat, lon) if datum == GCJ02 else (lat, lon)


@dataclass(frozen=True)
class CityBox:
    """The divisions' WGS84 centres' box widened by ``CITY_MARGIN_M``; None bounds when no centre is known."""

    min_lat: float
    max_lat: float
    min_lon: float
    max_lon: float

    @classmethod
    def of(cls, units: UnitDirectory) -> CityBox | None:
        points = [(u.lat, u.lon) for u in units.by_code.values() if u.lat is not None and u.lon is not None]
        if not points:
            return None
        lats, lons = [p[0] for p in points], [p[1] for p in points]
        return cls.around(min(lats), max(lats), min(lons), max(lons), sum(lats) / len(lats))

    @classmethod
    def around(cls, min_lat: float, max_lat: float, min_lon: float, max_lon: float, mean_lat: float) -> CityBox:
        """The extent of the centres (degrees) widened by ``CITY_MARGIN_M`` (longitude at ``mean_lat``)."""
        dlat = CITY_MARGIN_M / _M_PER_DEG_LAT
        dlon = CITY_MARGIN_M / (_M_PER_DEG_LAT * math.cos(math.radians(mean_lat)))
        return cls(min_lat - dlat, max_lat + dlat, min_lon - dlon, max_lon + dlon)

    def contains(self, lat: float, lon: float) -> bool:
        return self.min_lat <= lat <= self.max_lat and self.min_lon <= lon <= self.max_lon


def unit_centre(units: UnitDirectory, code: str) -> tuple[float, float] | None:
    """The WGS84 centre ``(lat, lon)`` of unit ``code``, else of its nearest ancestor with one; None if none has."""
    unit = units.get(code)
    while unit is not None:
        if unit.lat is not None and unit.lon is not None:
            return unit.lat, unit.lon
        unit = units.get(unit.parent_code) if unit.parent_code else None
    return None


def placed(v: Volunteer, centre: tuple[float, float] | None) -> Volunteer:
    """``v`` with an approximate position at ``centre`` when their own point is not known.

    A volunteer with their own point (``lat``/``lon`` set, not approximate) is returned as is; an
    approximate one is moved to ``centre`` (their unit may have changed); with no centre, as is.
    """
    own = v.lat is not None and v.lon is not None and not v.position_approximate
    if own or centre is None:
        return v
    return replace(v, lat=centre[0], lon=centre[1], position_approximate=True)


def _word(field: str) -> str:
    return "longitude" if field == "lon" else "latitude"
