"""Shaoxing's division units, loaded once from ``data/shaoxing_divisions.csv`` (NBS 2023 codes, GCJ-02 centres).

The file is a copy of the project's ``shared/data/shaoxing_divisions.csv`` (columns ``code, name,
level, parent_code, lon_gcj02, lat_gcj02``); centres are converted to WGS84 on load.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from shared.divisions import ancestors, gcj02_to_wgs84

from .domain.validation import CITY_PAD_M, COUNTY_PAD_M, Box, check_point

__all__ = ["Units", "units"]

DATA = Path(__file__).resolve().parent / "data" / "shaoxing_divisions.csv"


@dataclass(frozen=True)
class Units:
    """Names, WGS84 centres and boxes of the city's units."""

    names: dict[str, str]
    centres: dict[str, tuple[float, float]]
    city: Box
    counties: dict[str, Box]

    def place(self, unit_code: str) -> str:
        """The unit's full name as people say it, county to village (e.g. 柯桥区柯岩街道梅墅村)."""
        parts = [self.names.get(c, c) for lvl, c in ancestors(unit_code).items() if lvl.value != "city"]
        return "".join(reversed(parts))

    def check_point(self, lat: float, lon: float, unit_code: str) -> None:
        """See :func:`services.dispatch.domain.validation.check_point`."""
        check_point(lat=lat, lon=lon, unit_code=unit_code, city=self.city, counties=self.counties, known=self.names)


@lru_cache(maxsize=1)
def units() -> Units:
    """Load the divisions file (first call only)."""
    names: dict[str, str] = {}
    centres: dict[str, tuple[float, float]] = {}
    with DATA.open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            names[row["code"]] = row["name"]
            if row["lat_gcj02"] and row["lon_gcj02"]:
                centres[row["code"]] = gcj02_to_wgs84(float(row["lat_gcj02"]), float(row["lon_gcj02"]))
    by_county: dict[str, list[tuple[float, float]]] = {}
    for code, pt in centres.items():
        if len(code) >= 9 or (len(code) == 6 and not code.endswith("00")):
            by_county.setdefault(code[:6], []).append(pt)
    return Units(
        names=names,
        centres=centres,
        city=Box.around(list(centres.values()), CITY_PAD_M),
        counties={c: Box.around(pts, COUNTY_PAD_M) for c, pts in by_county.items()},
    )
