"""Checks of an incident's input: requirements and the point against the village code.

The city polygon is not available, so containment is approximated from the divisions file's
centre points (NBS division codes, centres GCJ-02 converted to WGS84):

* the point is inside the city when it lies in the bounding box of all Shaoxing unit centres,
  padded by :data:`CITY_PAD_M` (10 km);
* the village code's district/county contains the point when the point lies in the bounding box
  of that county's unit centres, padded by :data:`COUNTY_PAD_M` (8 km).

The file gives centres for the city, its counties and towns/streets only (villages have none), so
the boxes are drawn around town seats; the padding covers villages up to about 8 km beyond them.

A box is generous at a county's corners and can overlap a neighbour, so a point near a border
may pass for either county; a point in another part of the city is refused.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shared.divisions import is_valid_code, level_of
from shared.vocabulary import SKILLS, TeamType

from ..errors import InvalidInput

__all__ = [
    "CITY_PAD_M",
    "COUNTY_PAD_M",
    "MAX_CODE_LENGTH",
    "MAX_COUNT",
    "MAX_BROADCAST_LENGTH",
    "MAX_MEETING_POINT_LENGTH",
    "MAX_KIND_LENGTH",
    "MAX_NAME_LENGTH",
    "MAX_OUTCOME_LENGTH",
    "MAX_REQUIREMENTS",
    "MAX_TITLE_LENGTH",
    "Box",
    "check_broadcast_text",
    "check_callback_phone",
    "check_point",
    "check_requirement",
    "check_text",
]

CITY_PAD_M = 10_000.0
COUNTY_PAD_M = 8_000.0
#: More than this many people (or teams) for one requirement is refused as absurd.
MAX_COUNT = 2_000
#: Longest free text accepted from operators, in characters (Unicode code points). A title and a kind
#: travel in every call-out event and message (an SMS is 70 Chinese characters), an outcome in
#: ``IncidentClosed``; unbounded text could exceed Kafka's message size and the providers' limits.
MAX_TITLE_LENGTH = 100
MAX_KIND_LENGTH = 40
MAX_OUTCOME_LENGTH = 500
#: An operator's name (tokens, audit log, timeline), characters.
MAX_NAME_LENGTH = 64
#: A skill code, team type or division code, characters.
MAX_CODE_LENGTH = 40
#: Requirements of one incident.
MAX_REQUIREMENTS = 20
#: A meeting point's text, characters: it goes into every call-out SMS (at most 500 characters in all).
MAX_MEETING_POINT_LENGTH = 40
#: An operator broadcast's text, characters (with the title and signature it stays within 500).
MAX_BROADCAST_LENGTH = 120
_M_PER_DEG_LAT = 111_320.0


@dataclass(frozen=True)
class Box:
    """A WGS84 bounding box, degrees."""

    min_lat: float
    max_lat: float
    min_lon: float
    max_lon: float

    @classmethod
    def around(cls, points: Sequence[tuple[float, float]], pad_m: float) -> Box:
        """The box of ``points`` ((lat, lon) pairs) widened by ``pad_m`` metres on every side."""
        lats = [p[0] for p in points]
        lons = [p[1] for p in points]
        dlat = pad_m / _M_PER_DEG_LAT
        dlon = pad_m / (_M_PER_DEG_LAT * 0.86)  # cos(30.5°) ≈ 0.86 at Shaoxing's latitude
        return cls(min(lats) - dlat, max(lats) + dlat, min(lons) - dlon, max(lons) + dlon)

    def contains(self, lat: float, lon: float) -> bool:
        return self.min_lat <= lat <= self.max_lat and self.min_lon <= lon <= self.max_lon


def check_text(field: str, value: str, max_length: int) -> None:
    """Refuse empty (blank) ``value`` or one longer than ``max_length`` characters.

    Raises:
        InvalidInput: naming ``field`` and the limit.

    """
    if not value.strip():
        raise InvalidInput(f"{field} must not be empty")
    if len(value) > max_length:
        raise InvalidInput(f"{field} is {len(value)} characters long; at most {max_length} are allowed")


# Aliyun "短信模板规范" (help.aliyun.com/document_detail/463270.htm): a notification template may name at
# most two contact numbers, and only landlines (area code + 7-8 digits), 400 numbers or 95 numbers.
_CALLBACK = re.compile(r"0\d{2,3}-?\d{7,8}|400-?\d{3}-?\d{4}|95\d{3,6}")


def check_callback_phone(value: str) -> str:
    """Return the callback number without spaces; refuse one SMS providers do not allow in a notification.

    Accepted (source: Aliyun notification-template rules, help.aliyun.com/document_detail/463270.htm):
    a landline with its area code (``0575-85123456``), a 400 number (``400-123-4567``) or a 95 number
    (``95119``). Mobile numbers are not allowed in notification templates.

    Raises:
        InvalidInput: naming the accepted forms.

    """
    phone = "".join(value.split())
    if not _CALLBACK.fullmatch(phone):
        raise InvalidInput(
            f"callback_phone {phone!r} is not a landline with area code (0575-85123456), a 400 or a 95 number; "
            "SMS notification templates allow no other contact numbers"
        )
    return phone


# Both SMS providers refuse URLs in template variables (Aliyun isv.PARAM_NOT_SUPPORT_URL, Tencent
# InvalidParameterValue.ProhibitedUseUrlInTemplateParameter); a broadcast's text and a meeting point are ones.
# Looked for after NFKC (full-width ＨＴＴＰＳ：／／ is https://) with the ideographic full stops read as dots
# (evil。com): a scheme, www., or any name.name with a top-level domain of two or more letters (bit.ly,
# evil.io), so only a number like 3.5 or a code like B2 stays.
_URL = re.compile(r"[a-z][a-z0-9+.-]*://|www\.|[a-z0-9-]+\.[a-z]{2,}\b", re.IGNORECASE | re.ASCII)
_DOTS = str.maketrans({"。": ".", "｡": ".", "．": "."})


def has_link(text: str) -> bool:
    """True when ``text`` holds something SMS providers would take for a URL (see ``_URL``)."""
    return bool(_URL.search(unicodedata.normalize("NFKC", text).translate(_DOTS)))


def check_broadcast_text(value: str) -> str:
    """Return the broadcast text with runs of spaces folded; refuse an empty, too long or URL-bearing one.

    Raises:
        InvalidInput: blank, longer than :data:`MAX_BROADCAST_LENGTH`, or holding a URL (providers refuse
            URLs in template variables: Aliyun ``isv.PARAM_NOT_SUPPORT_URL``, Tencent
            ``InvalidParameterValue.ProhibitedUseUrlInTemplateParameter``).

    """
    text = " ".join(value.split())
    check_text("text", text, MAX_BROADCAST_LENGTH)
    if has_link(text):
        raise InvalidInput("a broadcast may not contain a link: SMS providers refuse URLs in template variables")
    return text


def check_requirement(*, skill: str | None, team_type: str | None, count: int) -> None:
    """Refuse a requirement that names no known skill or team type, or asks for ≤0 or > :data:`MAX_COUNT`.

    Raises:
        InvalidInput: with a message naming the problem.

    """
    if (skill is None) == (team_type is None):
        raise InvalidInput("a requirement names exactly one of skill or team_type")
    if skill is not None and skill not in {s.code for s in SKILLS}:
        raise InvalidInput(f"unknown skill {skill!r}; known: {', '.join(s.code for s in SKILLS)}")
    if team_type is not None and team_type not in {t.value for t in TeamType}:
        raise InvalidInput(f"unknown team type {team_type!r}; known: {', '.join(t.value for t in TeamType)}")
    if count <= 0:
        raise InvalidInput(f"count must be at least 1, got {count}")
    if count > MAX_COUNT:
        raise InvalidInput(f"count {count} is more than {MAX_COUNT} for one requirement")


def check_point(
    *, lat: float, lon: float, unit_code: str, city: Box, counties: Mapping[str, Box], known: Mapping[str, str]
) -> None:
    """Refuse a point outside the city, an unknown village code, or a village whose county does not contain the point.

    Args:
        lat: the incident's latitude, WGS84 degrees.
        lon: the incident's longitude, WGS84 degrees.
        unit_code: the village/community code the operator gave (12 digits).
        city: the city's box.
        counties: each county code's box.
        known: code → name of every unit in the divisions file.

    Raises:
        InvalidInput: with a message naming the problem.

    """
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise InvalidInput(f"({lat}, {lon}) is not a WGS84 latitude/longitude")
    if not is_valid_code(unit_code) or level_of(unit_code).value != "village":
        raise InvalidInput(f"{unit_code!r} is not a 12-digit village/community code")
    if unit_code not in known:
        raise InvalidInput(f"village/community {unit_code} is not in Shaoxing's division codes")
    if not city.contains(lat, lon):
        raise InvalidInput(f"({lat}, {lon}) is outside the city")
    county = unit_code[:6]
    box = counties.get(county)
    if box is None or not box.contains(lat, lon):
        raise InvalidInput(
            f"({lat}, {lon}) is not in {known.get(county, county)} ({county}), the district of village {unit_code}"
        )
