"""Validation of a Red Cross register (花名册) for import: pure, every bad row reported.

Input is a table (a header row and data rows, cells as read from CSV or XLSX); output is an
:class:`ImportPlan`: the normalised rows, and an :class:`ImportReport` with every error (row,
column, reason, suggestion) and the columns that were dropped. A plan with any error must import
nothing (the command layer checks :attr:`ImportReport.ok`).

Columns (Chinese header, or an English alias; full-width brackets and spaces do not matter):

===========  ===================================================  ============================
field        headers                                              rule
===========  ===================================================  ============================
name         姓名, name                                           required, at most 64, see clean_name
mobile       手机号码, 手机号, 手机, 联系电话, mobile, phone        required, mainland mobile
county       区县, 区(县), 县(市、区), district, county             name, within the city
town         乡镇(街道), 乡镇, 街道, town, street                    name, within the county
village      村(社区), 村, 社区, village, community                  name, within the town
unit_code    区划代码, 行政区划代码, unit code, division code        12-digit village code
skills       技能, 专长, skills                                    vocabulary, see normalise
cert_number  证书编号, certificate number, cert no                 text, at most 64 characters
issued_on    发证日期, issued, issued on                           date
expires_on   有效期至, 有效期, 到期日期, expires, expires on           date, not before issued_on
teams        所属队伍, 队伍, team, teams                            names of existing teams (each at most 64)
openid       微信OpenID, openid, wechat openid                     WeChat openid
lon          经度, longitude, lon, lng                             decimal degrees, with lat and datum
lat          纬度, latitude, lat                                   decimal degrees, with lon and datum
datum        坐标系, datum, coordinate system                      WGS-84 (GPS) or GCJ-02 (Amap/Tencent)
===========  ===================================================  ============================

Positions (:mod:`services.roster.domain.positions`): a row's point is kept in WGS84 (GCJ-02 converted);
it must lie inside the city. A row without a point is placed at the centre of its unit (or the unit's
nearest ancestor with a centre) and marked ``position_approximate``. Address columns stay dropped (no
geocoder here, and PIPL: the roster keeps no home address); the unit columns give the division.

The home unit comes from ``unit_code`` when given, else from county → town → village names, each
matched within its parent (with or without 村委会/居委会). Columns that must not be kept
(身份证号 identity numbers, 住址 home addresses; PIPL Art. 6, collect no more than needed) and
unknown columns are dropped and listed in :attr:`ImportReport.ignored_columns`.

Text cells (name, units, skills, certificate number, teams, openid, datum) may not start with ``=``, ``+``,
``-`` or ``@`` (a spreadsheet formula; OWASP CSV injection) nor hold NUL or control characters
(:mod:`shared.inputs`): such a cell is an error on its row and column, and nothing is imported.

Length limits are the HTTP API's (:data:`~services.roster.domain.model.MAX_NAME`,
:data:`~services.roster.domain.model.MAX_CERT_NUMBER`, :data:`~services.roster.domain.model.MAX_TEAM_NAME`;
county, town and village names at most :data:`MAX_UNIT_NAME`), counted in characters after NFKC
normalisation; a longer cell is an error on its row and column.

The certificate on a row certifies the row's first skill that needs one
(:attr:`shared.vocabulary.Skill.needs_certificate`), else its first skill.

Mobiles are the upsert key: two rows with the same mobile in one file are an error. A row for a
volunteer already on the roster (:func:`merge_into`) changes only what the sheet has columns for:
skills when there is a skills column; the row's certificate is added, or replaces the one with the
same skill and number, and the volunteer's other certificates stay; the WeChat openid when given;
teams listed are added. A retired volunteer is not made active again by an import (the command
layer reports the row).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from uuid import UUID

from rapidfuzz import fuzz, process

from services.roster.domain.model import MAX_CERT_NUMBER, MAX_NAME, MAX_TEAM_NAME, Certificate, Volunteer
from services.roster.domain.normalise import (
    NormaliseError,
    clean_text,
    parse_date,
    parse_mobile,
    parse_openid,
    parse_skills,
    suggest_skill,
)
from services.roster.domain.positions import (
    CityBox,
    PositionError,
    parse_datum,
    parse_degrees,
    to_wgs84,
    unit_centre,
)
from services.roster.domain.units import UnitDirectory
from shared.inputs import is_formula, text_problem
from shared.privacy import mask_text
from shared.vocabulary import Level, skill_by_code

__all__ = [
    "ImportPlan",
    "ImportReport",
    "ImportRow",
    "RowError",
    "clean_name",
    "map_headers",
    "merge_certificates",
    "merge_into",
    "validate_register",
]

_ALIASES: dict[str, tuple[str, ...]] = {
    "name": ("姓名", "name", "full name", "volunteer name"),
    "mobile": ("手机号码", "手机号", "手机", "联系电话", "电话", "电话号码", "mobile", "phone", "mobile number"),
    "county": ("区县", "区(县)", "区/县", "县(市、区)", "县(市,区)", "县区", "district", "county"),
    "town": ("乡镇(街道)", "乡镇/街道", "乡镇街道", "乡镇", "街道", "town", "street", "town/street"),
    "village": ("村(社区)", "村/社区", "村社区", "村", "社区", "village", "community", "village/community"),
    "unit_code": ("区划代码", "行政区划代码", "统计用区划代码", "unit code", "unit_code", "division code"),
    "skills": ("技能", "专长", "技能专长", "skills", "skill"),
    "cert_number": ("证书编号", "证书号", "certificate number", "certificate no", "cert no", "cert_number"),
    "issued_on": ("发证日期", "发证时间", "issued", "issued on", "issued_on", "issue date"),
    "expires_on": ("有效期至", "有效期", "到期日期", "有效期限", "expires", "expires on", "expires_on", "expiry date"),
    "teams": ("所属队伍", "队伍", "所属救援队", "team", "teams"),
    "openid": ("微信openid", "openid", "wechat openid", "wechat_openid", "微信"),
    "lon": ("经度", "longitude", "lon", "lng"),
    "lat": ("纬度", "latitude", "lat"),
    "datum": ("坐标系", "坐标系统", "datum", "coordinate system", "crs"),
}
# Columns never kept, whatever else they hold (personal data the roster does not need).
_PERSONAL = ("身份证号", "身份证号码", "身份证", "证件号码", "住址", "家庭住址", "现住址", "地址", "户籍地址",
             "id number", "id card", "address", "home address")
_SEQUENCE = ("序号", "no", "no.", "#")
MAX_UNIT_NAME = 64  # characters; the longest Shaoxing division name has 9
_MAX_SHOWN = 100  # characters of a bad cell repeated in the report
# Cells kept as text (or matched as names): a formula or a control character in one is a row error
# (OWASP CSV injection: the cell would run when an operator opens an export in Excel).
_WHITESPACE_CONTROLS = re.compile(r"[\t\n\r]")  # registers wrap and tab inside cells: folded, not refused
_TEXT_FIELDS = ("name", "county", "town", "village", "skills", "cert_number", "teams", "openid", "datum")


def _header_key(h: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", h).casefold())


_HEADER_INDEX = {_header_key(a): f for f, aliases in _ALIASES.items() for a in aliases}
_PERSONAL_KEYS = {_header_key(a) for a in _PERSONAL}
_SEQUENCE_KEYS = {_header_key(a) for a in _SEQUENCE}


@dataclass(frozen=True)
class RowError:
    """One problem on one row.

    Attributes:
        row: the spreadsheet row number (the header is row 1).
        column: the header as written in the file (or the field name when the column is missing).
        reason: what is wrong, in plain words.
        suggestion: what was probably meant (closest unit or skill name), when there is one.
        value: the cell as written, phone numbers masked, cut to 100 characters (then ending in "…").

    """

    row: int
    column: str
    reason: str
    suggestion: str | None = None
    value: str | None = None


@dataclass(frozen=True)
class ImportRow:
    """A valid, normalised row."""

    row: int
    name: str
    mobile: str
    unit_code: str
    skills: tuple[str, ...]
    certificates: tuple[Certificate, ...]
    team_ids: tuple[UUID, ...]
    wechat_openid: str | None
    lat: float | None = None
    lon: float | None = None
    position_approximate: bool = False


@dataclass
class ImportReport:
    """What an import found: counts, every error, the columns dropped."""

    rows: int = 0
    errors: list[RowError] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    dry_run: bool = False
    committed: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "dry_run": self.dry_run,
            "committed": self.committed,
            "ignored_columns": self.ignored_columns,
            "errors": [e.__dict__ for e in self.errors],
        }


@dataclass
class ImportPlan:
    """Valid rows and the report; ``columns`` maps each field the sheet has to its header as written."""

    report: ImportReport
    rows: list[ImportRow]
    columns: dict[str, str] = field(default_factory=dict)


def merge_certificates(existing: Sequence[Certificate], incoming: Sequence[Certificate]) -> tuple[Certificate, ...]:
    """``existing`` with each of ``incoming`` upserted by (kind, number); order kept, new ones appended.

    A certificate whose skill and number (None included) match one held replaces it (new dates);
    any other is added. Certificates not named are kept.
    """
    out = list(existing)
    for c in incoming:
        i = next((i for i, o in enumerate(out) if (o.kind, o.number) == (c.kind, c.number)), None)
        if i is None:
            out.append(c)
        else:
            out[i] = c
    return tuple(out)


def merge_into(old: Volunteer, row: ImportRow, columns: Mapping[str, str] | Sequence[str]) -> Volunteer:
    """``old`` as the sheet's ``row`` leaves them (revision and ``active`` untouched).

    Args:
        old: the volunteer on the roster with the row's mobile.
        row: the validated row.
        columns: the fields the sheet has a column for (e.g. :attr:`ImportPlan.columns`); a field
            without a column keeps its stored value.

    Returns:
        The new state: name and unit from the row; skills from the row when the sheet has a skills
        column; the row's certificate merged by :func:`merge_certificates`; the openid when the row
        gives one; team ids the union of both; the row's point when it gives one, else the stored
        volunteer's own point, else the row's (approximate) unit centre.

    """
    own = old.lat is not None and old.lon is not None and not old.position_approximate
    keep_point = own and (row.lat is None or row.position_approximate)
    return replace(
        old,
        name=row.name,
        unit_code=row.unit_code,
        skills=row.skills if "skills" in columns else old.skills,
        certificates=merge_certificates(old.certificates, row.certificates),
        team_ids=tuple(sorted(set(old.team_ids) | set(row.team_ids))),
        wechat_openid=row.wechat_openid or old.wechat_openid,
        lat=old.lat if keep_point else row.lat,
        lon=old.lon if keep_point else row.lon,
        position_approximate=False if keep_point else row.position_approximate,
    )


def _as_written(cell: object) -> str:
    return "" if cell is None else str(cell).strip()


def map_headers(headers: Sequence[object]) -> tuple[dict[str, int], list[str], list[RowError]]:
    """Map header cells to fields.

    Returns:
        ``(field → column index, ignored headers, header errors)``; a header error is a field named
        twice, or a missing required column (name, mobile, and a unit: unit code or village).

    """
    mapping: dict[str, int] = {}
    ignored: list[str] = []
    errors: list[RowError] = []
    for i, raw in enumerate(headers):
        h = _as_written(raw)
        if not h:
            continue
        key = _header_key(clean_text(raw))
        if key in _PERSONAL_KEYS or key in _SEQUENCE_KEYS:
            ignored.append(h)
            continue
        f = _HEADER_INDEX.get(key)
        if f is None:
            ignored.append(h)
        elif f in mapping:
            errors.append(RowError(1, h, f"column {f} appears twice"))
        else:
            mapping[f] = i
    for required in ("name", "mobile"):
        if required not in mapping:
            errors.append(RowError(1, required, f"missing column {_ALIASES[required][0]} ({required})"))
    if "unit_code" not in mapping and "village" not in mapping:
        errors.append(RowError(1, "village", "missing column 村(社区) or 区划代码 (the home unit)"))
    return mapping, ignored, errors


_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_GAP = re.compile(f"(?<=[{_CJK}]) (?=[{_CJK}])")


def clean_name(value: object) -> str:
    """A name cell as kept: NFKC, runs of whitespace collapsed to one space, trimmed.

    A space between two Chinese characters is dropped: registers pad two-character names to the
    width of three (``李　娜``), and the ideographic space is no part of the name. Other spaces stay
    (``John Smith``, ``Zhang 三``).
    """
    return _CJK_GAP.sub("", re.sub(r"\s+", " ", clean_text(value)).strip())


def _team_key(name: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", name)).casefold()


def validate_register(
    table: Sequence[Sequence[object]],
    units: UnitDirectory,
    teams: Mapping[str, UUID] | None = None,
) -> ImportPlan:
    """Validate and normalise a register.

    Args:
        table: the header row, then the data rows (cells as read; blank rows are skipped).
        units: every organisation unit.
        teams: existing active teams by name.

    Returns:
        The plan: valid rows and a report listing every error (see the module docstring). A table
        without a header row, or without any non-blank data row, is an error too (row 1 or 2, column ``-``).

    """
    report = ImportReport()
    if not table:
        report.errors.append(RowError(1, "-", "the file is empty (no header row)"))
        return ImportPlan(report, [])
    mapping, ignored, header_errors = map_headers(table[0])
    report.ignored_columns = ignored
    report.errors.extend(header_errors)
    if header_errors:
        return ImportPlan(report, [])
    headers = [_as_written(h) for h in table[0]]
    columns = {f: headers[i] for f, i in mapping.items()}
    team_index = {_team_key(k): v for k, v in (teams or {}).items()}
    team_names = {_team_key(k): k for k in (teams or {})}
    rows: list[ImportRow] = []
    seen_mobiles: dict[str, int] = {}
    seen_openids: dict[str, int] = {}
    cities = [u.code for u in units.of_level(Level.CITY)]
    city_box = CityBox.of(units)
    unit_cache: dict[tuple[str, ...], tuple[str | None, list[tuple[str, str, str | None]]]] = {}

    for n, cells in enumerate(table[1:], start=2):
        if all(clean_text(cells[i]) == "" for i in mapping.values() if i < len(cells)):
            continue  # blank row (a sequence number or ignored columns alone do not count)
        report.rows += 1
        errors: list[RowError] = []

        def cell(f: str, cells: Sequence[object] = cells) -> object:
            i = mapping.get(f)
            return cells[i] if i is not None and i < len(cells) else None

        def err(f: str, reason: str, suggestion: str | None = None, *, n: int = n,
                errors: list[RowError] = errors, cell: Any = cell) -> None:
            i = mapping.get(f)
            col = headers[i] if i is not None else f
            raw = clean_text(cell(f))
            if len(raw) > _MAX_SHOWN:
                raw = raw[:_MAX_SHOWN] + "…"
            errors.append(RowError(n, col, reason, suggestion, mask_text(raw) if raw else None))

        def too_long(f: str, limit: int, value: str, what: str) -> bool:
            if len(value) <= limit:
                return False
            err(f, f"{what} is {len(value)} characters long; at most {limit}")
            return True

        for f in _TEXT_FIELDS:
            raw_text = clean_text(cell(f)) if isinstance(cell(f), str) else ""
            if is_formula(raw_text):
                err(f, "starts with =, +, -, @ (a spreadsheet formula): write the value, not a formula")
            elif (problem := text_problem(_WHITESPACE_CONTROLS.sub(" ", raw_text))) is not None:
                err(f, problem)

        name = clean_name(cell("name"))
        if not name:
            err("name", "name is missing")
        too_long("name", MAX_NAME, name, "the name")
        mobile = ""
        try:
            mobile = parse_mobile(cell("mobile"))
            if mobile in seen_mobiles:
                err("mobile", f"same mobile as row {seen_mobiles[mobile]}")
            else:
                seen_mobiles[mobile] = n
        except NormaliseError as e:
            err("mobile", e.reason, e.suggestion)

        # Registers repeat the same few thousand unit cells: resolve each distinct one once.
        unit_cells = tuple(clean_text(cell(f)) for f in ("unit_code", "county", "town", "village"))
        cached = unit_cache.get(unit_cells)
        long_units = [f for f, v in zip(("county", "town", "village"), unit_cells[1:], strict=True)
                      if len(v) > MAX_UNIT_NAME]
        if long_units:
            cached = (None, [(f, f"a {f} name is at most {MAX_UNIT_NAME} characters", None) for f in long_units])
        elif cached is None:
            unit_errors: list[tuple[str, str, str | None]] = []
            code = _resolve_unit(units, cities, mapping, cell,
                                 lambda f, reason, suggestion=None, _e=unit_errors: _e.append((f, reason, suggestion)))
            cached = unit_cache[unit_cells] = (code, unit_errors)
        unit_code = cached[0]
        for f, reason, suggestion in cached[1]:
            err(f, reason, suggestion)

        skills, unknown = parse_skills(cell("skills"))
        for token in unknown:
            s = suggest_skill(token)
            err("skills", f"unknown skill {token!r}", s)

        dates: dict[str, Any] = {}
        for f in ("issued_on", "expires_on"):
            try:
                dates[f] = parse_date(cell(f))
            except NormaliseError as e:
                err(f, e.reason, e.suggestion)
                dates[f] = None
        number = clean_text(cell("cert_number")) or None
        certs: tuple[Certificate, ...] = ()
        too_long("cert_number", MAX_CERT_NUMBER, number or "", "the certificate number")
        if dates["issued_on"] and dates["expires_on"] and dates["expires_on"] < dates["issued_on"]:
            err("expires_on", "expires before it was issued")
        elif number or dates["issued_on"] or dates["expires_on"]:
            kind = next((s for s in skills if skill_by_code(s).needs_certificate), skills[0] if skills else None)
            if kind is None:
                if not unknown:
                    err("skills", "a certificate is given but no skill it certifies")
            else:
                certs = (Certificate(kind, number, dates["issued_on"], dates["expires_on"]),)

        team_ids: list[UUID] = []
        for t in re.split(r"[、,，;；]+", clean_text(cell("teams"))):
            t = t.strip()
            if not t or too_long("teams", MAX_TEAM_NAME, t, "a team name"):
                continue
            tid = team_index.get(_team_key(t))
            if tid is None:
                best = process.extractOne(_team_key(t), team_names, scorer=fuzz.WRatio, score_cutoff=50)
                err("teams", f"no team called {t!r}", team_names[best[2]] if best else None)
            elif tid not in team_ids:
                team_ids.append(tid)

        openid = None
        try:
            openid = parse_openid(cell("openid"))
            if openid is not None and openid in seen_openids:
                err("openid", f"same WeChat openid as row {seen_openids[openid]}")
            elif openid is not None:
                seen_openids[openid] = n
        except NormaliseError as e:
            err("openid", e.reason, e.suggestion)

        point = _row_point(cell, err, city_box)

        if errors:
            report.errors.extend(errors)
        elif unit_code is not None:
            if point is None:
                centre = unit_centre(units, unit_code)
                lat, lon, approximate = (*centre, True) if centre else (None, None, False)
            else:
                (lat, lon), approximate = point, False
            rows.append(ImportRow(n, name, mobile, unit_code, skills, certs, tuple(team_ids), openid,
                                  lat, lon, approximate))
    if report.rows == 0:
        report.errors.append(RowError(2, "-", "no data rows (the file has a header row only, or blank rows)"))
    return ImportPlan(report, rows, columns)


def _row_point(cell: Any, err: Any, city_box: CityBox | None) -> tuple[float, float] | None:
    """The row's WGS84 ``(lat, lon)``, or None when it gives none (or after reporting why it is unusable)."""
    values: dict[str, float | None] = {}
    bad = False
    for f in ("lon", "lat"):
        try:
            values[f] = parse_degrees(cell(f), f)
        except PositionError as e:
            err(f, e.reason)
            bad = True
    lon, lat = values.get("lon"), values.get("lat")
    if bad:
        return None
    if lon is None and lat is None:
        return None
    if lon is None or lat is None:
        missing = "lon" if lon is None else "lat"
        err(missing, f"{'longitude' if missing == 'lon' else 'latitude'} is missing (the row gives the other)")
        return None
    try:
        datum = parse_datum(cell("datum"))
    except PositionError as e:
        err("datum", e.reason)
        return None
    wlat, wlon = to_wgs84(lat, lon, datum)
    if city_box is not None and not city_box.contains(wlat, wlon):
        err("lon", f"point ({lat}, {lon}) {datum} is outside the city (columns swapped or mistyped?)")
        return None
    return wlat, wlon


def _resolve_unit(units: UnitDirectory, cities: list[str], mapping: Mapping[str, int], cell: Any, err: Any) -> str | None:
    """The row's home village code, or None after reporting why."""
    if "unit_code" in mapping and clean_text(cell("unit_code")):
        code = re.sub(r"\s+", "", clean_text(cell("unit_code")))
        if not re.fullmatch(r"\d{12}", code):
            err("unit_code", "not a 12-digit village/community code")
            return None
        if units.get(code) is None:
            err("unit_code", f"no village/community with code {code}")
            return None
        return code
    county_name = clean_text(cell("county"))
    town_name = clean_text(cell("town"))
    village_name = clean_text(cell("village"))
    if not village_name:
        err("village", "village/community is missing")
        return None
    if county_name:
        m = units.find_child(cities, county_name)
        if m.unit is None:
            err("county", f"no district/county called {county_name!r}", ", ".join(m.suggestions) or None)
            return None
        counties = [m.unit.code]
    else:
        counties = [u.code for c in cities for u in units.children(c)]
    if town_name:
        towns_all = list(counties)
        m = units.find_child(towns_all, town_name)
        if m.unit is None:
            err("town", f"no town/street called {town_name!r} in {_names(units, counties)}",
                ", ".join(m.suggestions) or None)
            return None
        towns = [m.unit.code]
    else:
        towns = [u.code for c in counties for u in units.children(c)]
    m = units.find_child(towns, village_name)
    if m.unit is None:
        where = _names(units, towns) if town_name else "any town given"
        err("village", f"no village/community called {village_name!r} in {where}", ", ".join(m.suggestions) or None)
        return None
    return m.unit.code


def _names(units: UnitDirectory, codes: list[str]) -> str:
    if len(codes) == 1 and (u := units.get(codes[0])):
        return u.name
    return f"{len(codes)} units"
