"""Organisation units of the four levels (city, district/county, town/street, village/community).

Units are the statistical divisions (统计用区划代码, see :mod:`shared.divisions`). They come from a
divisions file with the columns ``code,name,level,parent_code,lon_gcj02,lat_gcj02`` (the layout of
``services/roster/data/shaoxing_divisions.csv``, described in ``data/SOURCE.md``); a file with the
same columns for another city loads too.

Centre points in that file are GCJ-02 (Amap). A :class:`Unit` keeps the point as given, names its
datum, and carries the WGS84 conversion (:func:`shared.divisions.gcj02_to_wgs84`) that everything
inside the platform uses.

Unit names are matched the way people write them: ``东光村委会``, ``东光村`` and ``东光`` all name
the same village, but only within their parent (the same village name exists in different towns),
see :class:`UnitDirectory`.

Errors: :class:`DivisionsFileError` lists every bad line of a divisions file.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from rapidfuzz import fuzz, process

from shared.divisions import gcj02_to_wgs84, is_valid_code, level_of
from shared.vocabulary import Level

__all__ = [
    "DIVISIONS_COLUMNS",
    "DivisionsFileError",
    "Unit",
    "UnitDirectory",
    "name_key",
    "parse_divisions",
]

DIVISIONS_COLUMNS = ("code", "name", "level", "parent_code", "lon_gcj02", "lat_gcj02")
GCJ02 = "GCJ-02"

# Suffixes of the official names that people leave out: 村民委员会/村委会 (village committee),
# 社区居民委员会/居委会 (community residents' committee), 管理区, 委员会.
_SUFFIXES = re.compile(r"(村民委员会|居民委员会|村委会|居委会|委员会|管委会)$")
_TAIL = re.compile(r"(社区|村|管理区|街道|镇|乡|区|县|市)$")


def _spaceless(name: str) -> str:
    return re.sub(r"\s+", "", name)


def _stripped(name: str) -> str:
    s = _spaceless(name)
    s2 = re.sub(r"(村民委员会|村委会)$", "村", s)
    if s2 != s:
        return s2
    return re.sub(r"(社区)?(居民委员会|居委会)$", "社区", s2)


def name_key(name: str) -> str:
    """The core of a unit name, for matching: no spaces, no committee suffix, no 村/社区/街道/镇/乡/区/县/市.

    ``东光村委会`` → ``东光``; ``中兴社区居委会`` → ``中兴``; ``柯桥街道`` → ``柯桥``; ``越城区`` → ``越城``.
    A name that would become empty keeps its last form.
    """
    s = re.sub(r"\s+", "", name)
    s = _SUFFIXES.sub("", s) or s
    core = _TAIL.sub("", s)
    return core or s


class DivisionsFileError(ValueError):
    """A divisions file that cannot be loaded; ``errors`` lists ``(line, reason)`` for every bad line."""

    def __init__(self, errors: list[tuple[int, str]]) -> None:
        self.errors = errors
        shown = "; ".join(f"line {n}: {r}" for n, r in errors[:10])
        more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
        super().__init__(f"bad divisions file: {shown}{more}")


@dataclass(frozen=True)
class Unit:
    """One organisation unit.

    Attributes:
        code: 6-, 9- or 12-digit statistical division code.
        name: official name as in the file (villages keep their 村委会/居委会 suffixes).
        level: city, county, town or village.
        parent_code: the unit one level up; None for the city.
        centre_lat, centre_lon: centre point as given in the file, degrees, in ``centre_datum``.
        centre_datum: ``GCJ-02`` when the file gave a point, else None.
        lat, lon: the centre in WGS84, degrees (converted), or None.

    """

    code: str
    name: str
    level: Level
    parent_code: str | None
    centre_lat: float | None = None
    centre_lon: float | None = None
    centre_datum: str | None = None
    lat: float | None = None
    lon: float | None = None


def _float(raw: str) -> float | None:
    raw = raw.strip()
    return float(raw) if raw else None


def parse_divisions(text: str) -> list[Unit]:
    """Parse a divisions file (CSV text, columns :data:`DIVISIONS_COLUMNS`) into units, parents first.

    Raises:
        DivisionsFileError: missing columns, bad codes, a level that does not fit the code, a parent
            that is not in the file, or a point outside the valid range; every bad line is listed.

    """
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    missing = [c for c in DIVISIONS_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise DivisionsFileError([(1, f"missing columns: {', '.join(missing)}")])
    units: list[Unit] = []
    lines: list[int] = []
    errors: list[tuple[int, str]] = []
    for n, row in enumerate(reader, start=2):
        code = (row["code"] or "").strip()
        name = (row["name"] or "").strip()
        parent = (row["parent_code"] or "").strip() or None
        if not is_valid_code(code):
            errors.append((n, f"code {code!r} is not a 6-, 9- or 12-digit division code"))
            continue
        try:
            level = Level((row["level"] or "").strip())
        except ValueError:
            errors.append((n, f"level {row['level']!r} is not one of city, county, town, village"))
            continue
        if level is not level_of(code):
            errors.append((n, f"level {level} does not fit code {code} (a {level_of(code)})"))
            continue
        if not name:
            errors.append((n, "empty name"))
            continue
        try:
            glon, glat = _float(row["lon_gcj02"] or ""), _float(row["lat_gcj02"] or "")
        except ValueError:
            errors.append((n, "centre point is not a number"))
            continue
        lat = lon = None
        datum = None
        if glat is not None and glon is not None:
            if not (-90 <= glat <= 90 and -180 <= glon <= 180):
                errors.append((n, f"centre point ({glat}, {glon}) out of range"))
                continue
            lat, lon = gcj02_to_wgs84(glat, glon)
            datum = GCJ02
        units.append(Unit(code, name, level, parent, glat if datum else None, glon if datum else None, datum, lat, lon))
        lines.append(n)
    codes = {u.code for u in units}
    for n, u in zip(lines, units, strict=True):
        if u.parent_code is not None and u.parent_code not in codes:
            errors.append((n, f"parent {u.parent_code} of {u.code} is not in the file"))
        if u.parent_code is None and u.level is not Level.CITY:
            errors.append((n, f"{u.code} is a {u.level} without a parent"))
    if errors:
        raise DivisionsFileError(sorted(errors))
    order = {Level.CITY: 0, Level.COUNTY: 1, Level.TOWN: 2, Level.VILLAGE: 3}
    return sorted(units, key=lambda u: (order[u.level], u.code))


@dataclass(frozen=True)
class Match:
    """Result of looking a unit name up within a parent: the unit, or the closest names."""

    unit: Unit | None
    suggestions: tuple[str, ...] = ()


class UnitDirectory:
    """All units in memory, for resolving names and codes (pure; built from :class:`Unit` rows).

    Args:
        units: every unit (any order).

    """

    def __init__(self, units: Iterable[Unit]) -> None:
        self.by_code: dict[str, Unit] = {u.code: u for u in units}
        self._children: dict[str | None, list[Unit]] = {}
        for u in self.by_code.values():
            self._children.setdefault(u.parent_code, []).append(u)
        # Three tiers per parent, most specific first: the full name, the name without its committee
        # suffix (马山村委会 → 马山村), the core (马山). 马山村 then finds 马山村委会 even when a
        # 马山居委会 shares the core; a bare 马山 matching both is reported as ambiguous.
        self._tiers: list[dict[str | None, dict[str, list[Unit]]]] = [{}, {}, {}]
        for parent, kids in self._children.items():
            for tier, keyer in zip(self._tiers, (_spaceless, _stripped, name_key), strict=True):
                index = tier.setdefault(parent, {})
                for k in kids:
                    index.setdefault(keyer(k.name), []).append(k)

    def __len__(self) -> int:
        return len(self.by_code)

    def get(self, code: str) -> Unit | None:
        return self.by_code.get(code)

    def children(self, code: str | None) -> list[Unit]:
        """Units whose parent is ``code`` (None: the top, i.e. cities)."""
        return list(self._children.get(code, ()))

    def of_level(self, level: Level) -> list[Unit]:
        return [u for u in self.by_code.values() if u.level is level]

    def find_child(self, parent_codes: Iterable[str | None], name: str) -> Match:
        """Find the unit called ``name`` among the children of any of ``parent_codes``.

        The name matches with or without its committee suffix (``东光村委会`` = ``东光村`` = ``东光``).
        When nothing matches, ``suggestions`` holds up to three closest names (rapidfuzz ratio).
        """
        parents = list(parent_codes)
        wanted = _spaceless(name)
        found: list[Unit] = []
        keys = (wanted, _stripped(wanted), name_key(wanted))
        for tier, key in zip(self._tiers, keys, strict=True):
            if tier is not self._tiers[0] and key == keys[2] and tier is not self._tiers[2]:
                continue  # a bare core (马山) is matched only at the core tier, where ambiguity shows
            for p in parents:
                for h in tier.get(p, {}).get(key, ()):
                    if h not in found:
                        found.append(h)
            if found:
                break
        if len(found) == 1:
            return Match(found[0])
        candidates: Mapping[str, str] = {u.code: u.name for p in parents for u in self._children.get(p, ())}
        if found:  # ambiguous: several units share the name across the parents given
            return Match(None, tuple(f"{u.name} ({u.code})" for u in found[:3]))
        best = process.extract(wanted, candidates, scorer=fuzz.WRatio, limit=3, score_cutoff=40)
        return Match(None, tuple(self.by_code[code].name for _, _, code in best))
