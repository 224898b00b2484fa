"""The AED registry (自动体外除颤器): devices, their condition, access hours, and the spreadsheet import.

Pure: no I/O. A device has a point (kept in WGS84; a GCJ-02 point, as Amap or Tencent maps give it, is
converted as register positions are, :mod:`services.roster.domain.positions`), an address and where it
hangs (building, floor), an owner unit (a division code at any level) and owner text, access hours, a
status recorded by its owner (in service / out of service), the expiry dates of pads and battery, and
who checked it last and when. Its :func:`condition` on a day adds what the dates say: ``pads_expired``,
``battery_expired``; :func:`expiring` lists what runs out within a number of days (the reminder).

Access hours use OpenStreetMap's ``opening_hours`` syntax (``24/7``, ``Mo-Fr 08:00-18:00; Sa 09:00-12:00``),
Asia/Shanghai, checked with the ``opening-hours-py`` parser; :func:`normalise_hours` first rewrites the
common Chinese forms (``24小时``, ``全天``, ``每天8:00-18:00``, ``周一至周五 08:00～18:00``).

Import (:func:`validate_aed_sheet`): all or nothing, like the volunteers' register; every bad cell is
reported by row (the header is row 1) and column as written. The serial number (设备编号) is the upsert
key: twice in one file is an error.

===================  ==========================================================  ============================
field                headers                                                     rule
===================  ==========================================================  ============================
serial               设备编号, 编号, 序列号, serial, serial number                  required, at most 64
address              地址, 安装地址, 详细地址, address                              required, at most 100
location             位置, 具体位置, 放置位置, 楼层, building/floor, location         at most 100
unit_code            区划代码, 所属区划, 行政区划代码, unit code                      required, a known unit
owner                所属单位, 管理单位, 产权单位, owner                            at most 64
lon, lat, datum      经度, 纬度, 坐标系 (as the register)                          required, inside the city
access_hours         开放时间, 可取用时间, access hours, hours                      opening_hours; blank = 24/7
status               状态, status                                                在用/正常 or 停用/故障/维修
pads_expire_on       电极片有效期, 电极片到期, pads expire                            date
battery_expire_on    电池有效期, 电池到期, battery expire                            date
last_checked_on      最近检查日期, 检查日期, last checked                            date
last_checked_by      检查人, checked by                                          at most 64
===================  ==========================================================  ============================
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from uuid import UUID

from opening_hours import validate as valid_hours

from services.roster.domain.importing import ImportReport, RowError
from services.roster.domain.normalise import NormaliseError, clean_text, parse_date
from services.roster.domain.positions import CityBox, PositionError, parse_datum, parse_degrees, to_wgs84
from services.roster.domain.units import UnitDirectory
from shared.events import AedStatus, AedUpdated

__all__ = [
    "MAX_AED_TEXT",
    "MAX_AED_SHORT",
    "Aed",
    "AedImportPlan",
    "AedRow",
    "HoursError",
    "aed_event",
    "condition",
    "expiring",
    "normalise_hours",
    "parse_status",
    "validate_aed_sheet",
]

MAX_AED_TEXT = 100  #: address and location, characters
MAX_AED_SHORT = 64  #: serial, owner, checker, characters


@dataclass(frozen=True)
class Aed:
    """A defibrillator of the registry. ``lat``/``lon`` WGS84 degrees; dates Asia/Shanghai (last valid day)."""

    id: UUID
    revision: int
    serial: str
    lat: float
    lon: float
    address: str
    unit_code: str
    location: str = ""
    owner: str = ""
    access_hours: str = "24/7"
    status: AedStatus = AedStatus.IN_SERVICE
    pads_expire_on: date | None = None
    battery_expire_on: date | None = None
    last_checked_on: date | None = None
    last_checked_by: str = ""
    active: bool = True

    def same_content(self, other: Aed) -> bool:
        """True when nothing but id/revision differs (re-importing the same row changes nothing)."""
        mine, theirs = dict(self.__dict__), dict(other.__dict__)
        for k in ("id", "revision"):
            mine.pop(k)
            theirs.pop(k)
        return mine == theirs


def condition(aed: Aed, day: date) -> str:
    """``out_of_service``, ``pads_expired``, ``battery_expired`` (the first that holds on ``day``) or ``in_service``."""
    if aed.status is AedStatus.OUT_OF_SERVICE or not aed.active:
        return "out_of_service"
    if aed.pads_expire_on is not None and day > aed.pads_expire_on:
        return "pads_expired"
    if aed.battery_expire_on is not None and day > aed.battery_expire_on:
        return "battery_expired"
    return "in_service"


def expiring(aed: Aed, day: date, within_days: int) -> list[tuple[str, date]]:
    """``[("pads" | "battery", last day)]`` that run out from ``day`` to ``day + within_days`` (the reminder)."""
    end = day + timedelta(days=within_days)
    out = []
    for part, until in (("pads", aed.pads_expire_on), ("battery", aed.battery_expire_on)):
        if until is not None and day <= until <= end:
            out.append((part, until))
    return out


def aed_event(aed: Aed) -> AedUpdated:
    """The snapshot of ``aed`` for ``roster.aed.v1``."""
    return AedUpdated(
        aed_id=aed.id, revision=aed.revision, lat=aed.lat, lon=aed.lon, address=aed.address, location=aed.location,
        unit_code=aed.unit_code, owner=aed.owner, access_hours=aed.access_hours, status=aed.status,
        pads_expire_on=aed.pads_expire_on, battery_expire_on=aed.battery_expire_on,
        last_checked_on=aed.last_checked_on, last_checked_by=aed.last_checked_by,
    )


class HoursError(ValueError):
    """Access hours that are not ``opening_hours`` syntax (nor a Chinese form :func:`normalise_hours` knows)."""


_DAYS = {"一": "Mo", "二": "Tu", "三": "We", "四": "Th", "五": "Fr", "六": "Sa", "日": "Su", "天": "Su"}
_CN_RANGE = re.compile(r"(?:周|星期)([一二三四五六日天])(?:至|到|-|~)(?:周|星期)?([一二三四五六日天])")
_CN_DAY = re.compile(r"(?:周|星期)([一二三四五六日天])")
_TIME = re.compile(r"(\d{1,2}):(\d{2})")


def normalise_hours(text: object) -> str:
    """Access hours as stored (``opening_hours`` syntax); blank → ``24/7``.

    Rewrites 24小时/全天/24h → ``24/7``, 每天/每日 → ``Mo-Su``, 周一至周五 → ``Mo-Fr``, full-width characters
    and ～/~/至 between times → ``-``, ``8:00`` → ``08:00``, ，/、/; between rules → ``; ``.

    Raises:
        HoursError: the result does not parse.

    """
    raw = unicodedata.normalize("NFKC", "" if text is None else str(text)).strip()
    if not raw:
        return "24/7"
    s = raw.replace("：", ":")
    if re.fullmatch(r"(全天)?(24小时|24h|24/7|全天)(开放|可用)?", s.replace(" ", ""), flags=re.IGNORECASE):
        return "24/7"
    s = re.sub(r"每天|每日", "Mo-Su ", s)
    s = _CN_RANGE.sub(lambda m: f"{_DAYS[m[1]]}-{_DAYS[m[2]]} ", s)
    s = _CN_DAY.sub(lambda m: f"{_DAYS[m[1]]} ", s)
    s = re.sub(r"(\d{1,2}:\d{2})\s*(?:~|～|至|到|—|–|-)\s*(\d{1,2}:\d{2})", r"\1-\2", s)
    s = _TIME.sub(lambda m: f"{int(m[1]):02d}:{m[2]}", s)
    s = re.sub(r"\s*[;；，,、]\s*", "; ", s)
    s = re.sub(r"\s+", " ", s).strip().rstrip(";").strip()
    if not valid_hours(s):
        raise HoursError(f"access hours {raw!r} are not understood: write 24/7, or e.g. 'Mo-Fr 08:00-18:00; "
                         "Sa 09:00-12:00' (或 每天8:00-18:00、周一至周五 08:00-18:00)")
    return s


_STATUSES = {"在用": AedStatus.IN_SERVICE, "正常": AedStatus.IN_SERVICE, "可用": AedStatus.IN_SERVICE,
             "in service": AedStatus.IN_SERVICE, "in_service": AedStatus.IN_SERVICE, "ok": AedStatus.IN_SERVICE,
             "停用": AedStatus.OUT_OF_SERVICE, "故障": AedStatus.OUT_OF_SERVICE, "维修": AedStatus.OUT_OF_SERVICE,
             "维修中": AedStatus.OUT_OF_SERVICE, "报废": AedStatus.OUT_OF_SERVICE,
             "out of service": AedStatus.OUT_OF_SERVICE, "out_of_service": AedStatus.OUT_OF_SERVICE}


def parse_status(value: object) -> AedStatus:
    """A status cell; blank → in service.

    Raises:
        ValueError: a word not in the list (在用/正常/可用, 停用/故障/维修/报废, in service, out of service).

    """
    text = unicodedata.normalize("NFKC", "" if value is None else str(value)).strip().casefold()
    if not text:
        return AedStatus.IN_SERVICE
    status = _STATUSES.get(text)
    if status is None:
        raise ValueError(f"unknown status {text!r}: 在用/正常 (in service) or 停用/故障/维修 (out of service)")
    return status


_ALIASES: dict[str, tuple[str, ...]] = {
    "serial": ("设备编号", "编号", "序列号", "设备序列号", "serial", "serial number", "serial no"),
    "address": ("地址", "安装地址", "详细地址", "address"),
    "location": ("位置", "具体位置", "放置位置", "楼层", "楼层位置", "building/floor", "location"),
    "unit_code": ("区划代码", "所属区划", "行政区划代码", "unit code", "unit_code"),
    "owner": ("所属单位", "管理单位", "产权单位", "owner"),
    "lon": ("经度", "longitude", "lon", "lng"),
    "lat": ("纬度", "latitude", "lat"),
    "datum": ("坐标系", "坐标系统", "datum", "coordinate system", "crs"),
    "access_hours": ("开放时间", "可取用时间", "取用时间", "access hours", "hours"),
    "status": ("状态", "设备状态", "status"),
    "pads_expire_on": ("电极片有效期", "电极片到期", "电极片到期日", "pads expire", "pads_expire_on"),
    "battery_expire_on": ("电池有效期", "电池到期", "电池到期日", "battery expire", "battery_expire_on"),
    "last_checked_on": ("最近检查日期", "检查日期", "巡检日期", "last checked", "last_checked_on"),
    "last_checked_by": ("检查人", "巡检人", "checked by", "last_checked_by"),
}
_REQUIRED = ("serial", "address", "unit_code", "lon", "lat", "datum")


def _key(h: object) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", "" if h is None else str(h)).casefold())


_INDEX = {_key(a): f for f, aliases in _ALIASES.items() for a in aliases}


@dataclass(frozen=True)
class AedRow:
    """A valid, normalised row of an AED sheet (point in WGS84)."""

    row: int
    serial: str
    lat: float
    lon: float
    address: str
    unit_code: str
    location: str = ""
    owner: str = ""
    access_hours: str = "24/7"
    status: AedStatus = AedStatus.IN_SERVICE
    pads_expire_on: date | None = None
    battery_expire_on: date | None = None
    last_checked_on: date | None = None
    last_checked_by: str = ""

    def as_aed(self, aed_id: UUID, revision: int) -> Aed:
        return Aed(id=aed_id, revision=revision, serial=self.serial, lat=self.lat, lon=self.lon, address=self.address,
                   unit_code=self.unit_code, location=self.location, owner=self.owner, access_hours=self.access_hours,
                   status=self.status, pads_expire_on=self.pads_expire_on, battery_expire_on=self.battery_expire_on,
                   last_checked_on=self.last_checked_on, last_checked_by=self.last_checked_by)


@dataclass
class AedImportPlan:
    """Valid rows and the report (import nothing unless ``report.ok``)."""

    report: ImportReport
    rows: list[AedRow] = field(default_factory=list)


def validate_aed_sheet(table: Sequence[Sequence[object]], units: UnitDirectory) -> AedImportPlan:
    """Validate and normalise an AED sheet (header row, then data rows; blank rows skipped).

    Returns:
        The plan; its report names every bad cell (row, column as written, reason, the value) and every
        header problem (row 1: a column twice, a required column missing). Unknown columns are listed in
        ``ignored_columns``.

    """
    report = ImportReport()
    if not table:
        report.errors.append(RowError(1, "-", "the file is empty (no header row)"))
        return AedImportPlan(report)
    headers = ["" if h is None else str(h).strip() for h in table[0]]
    mapping: dict[str, int] = {}
    for i, h in enumerate(headers):
        if not h:
            continue
        f = _INDEX.get(_key(h))
        if f is None:
            report.ignored_columns.append(h)
        elif f in mapping:
            report.errors.append(RowError(1, h, f"column {f} appears twice"))
        else:
            mapping[f] = i
    for f in _REQUIRED:
        if f not in mapping:
            report.errors.append(RowError(1, f, f"missing column {_ALIASES[f][0]} ({f})"))
    if report.errors:
        return AedImportPlan(report)
    box = CityBox.of(units)
    seen: dict[str, int] = {}
    plan = AedImportPlan(report)
    for n, cells in enumerate(table[1:], start=2):
        if all(clean_text(cells[i]) == "" for i in mapping.values() if i < len(cells)):
            continue
        report.rows += 1
        row_errors: list[RowError] = []

        def cell(f: str, cells: Sequence[object] = cells) -> object:
            i = mapping.get(f)
            return cells[i] if i is not None and i < len(cells) else None

        def err(f: str, reason: str, *, n: int = n, errs: list[RowError] = row_errors, cell: Any = cell) -> None:
            i = mapping.get(f)
            raw = clean_text(cell(f))
            errs.append(RowError(n, headers[i] if i is not None else f, reason, None, raw[:100] or None))

        def text(f: str, limit: int, *, required: bool = False) -> str:
            value = re.sub(r"\s+", " ", clean_text(cell(f))).strip()
            if required and not value:
                err(f, f"{f} is missing")
            elif len(value) > limit:
                err(f, f"{f} is {len(value)} characters long; at most {limit}")
            return value

        serial = text("serial", MAX_AED_SHORT, required=True)
        if serial and serial in seen:
            err("serial", f"same serial number as row {seen[serial]}")
        elif serial:
            seen[serial] = n
        address = text("address", MAX_AED_TEXT, required=True)
        location = text("location", MAX_AED_TEXT)
        owner = text("owner", MAX_AED_SHORT)
        checker = text("last_checked_by", MAX_AED_SHORT)
        unit_code = re.sub(r"\s+", "", clean_text(cell("unit_code")))
        if not re.fullmatch(r"\d{6}(\d{3}(\d{3})?)?", unit_code):
            err("unit_code", "not a division code (6, 9 or 12 digits)")
        elif units.get(unit_code) is None:
            err("unit_code", f"no unit with code {unit_code}")
        hours = "24/7"
        try:
            hours = normalise_hours(cell("access_hours"))
        except HoursError as e:
            err("access_hours", str(e))
        status = AedStatus.IN_SERVICE
        try:
            status = parse_status(cell("status"))
        except ValueError as e:
            err("status", str(e))
        dates: dict[str, date | None] = {}
        for f in ("pads_expire_on", "battery_expire_on", "last_checked_on"):
            try:
                dates[f] = parse_date(cell(f))
            except NormaliseError as e:
                err(f, e.reason)
                dates[f] = None
        point: tuple[float, float] | None = None
        try:
            lon, lat = parse_degrees(cell("lon"), "lon"), parse_degrees(cell("lat"), "lat")
            if lon is None or lat is None:
                err("lon" if lon is None else "lat", "the AED's point is missing (longitude and latitude)")
            else:
                datum = parse_datum(cell("datum"))
                point = to_wgs84(lat, lon, datum)
                if box is not None and not box.contains(*point):
                    err("lon", f"point ({lat}, {lon}) {datum} is outside the city (columns swapped or mistyped?)")
                    point = None
        except PositionError as e:
            err(e.field, e.reason)
        if row_errors:
            report.errors.extend(row_errors)
            continue
        assert point is not None
        plan.rows.append(AedRow(n, serial, point[0], point[1], address, unit_code, location, owner, hours, status,
                                dates["pads_expire_on"], dates["battery_expire_on"], dates["last_checked_on"],
                                checker))
    if report.rows == 0:
        report.errors.append(RowError(2, "-", "no data rows (the file has a header row only, or blank rows)"))
    return plan
