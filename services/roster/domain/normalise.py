"""Normalisation of what people type into a Red Cross register (pure functions, no I/O).

Each ``parse_*`` function returns the normalised value or raises :class:`NormaliseError` with a
reason in plain words (and, where one exists, a suggestion). Rules and their sources:

* Mobiles: mainland China mobile numbers, 11 digits starting ``1[3-9]`` (MIIT numbering plan),
  written with full-width digits, spaces, dashes, dots or brackets, and with ``+86``, ``0086`` or
  ``86`` in front; normalised to E.164 (``+8613800138000``, ITU-T E.164).
* Dates: ``2024-03-01``, ``2024/3/1``, ``2024.3.1``, ``2024年3月1日``, ``20240301``, Excel serial
  day numbers (days since 1899-12-30, the 1900 date system as Excel counts it), or a date/datetime
  value from an XLSX cell; years 1900..2100 (:data:`shared.inputs.MIN_YEAR`, ``MAX_YEAR``). Dates are
  calendar dates in Asia/Shanghai.
* Skills: :data:`shared.vocabulary.SKILLS` codes, Chinese names or aliases (case-insensitive),
  separated by ``、 ， , ; ；`` or spaces.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime, timedelta

from rapidfuzz import fuzz, process

from shared.inputs import MAX_YEAR, MIN_YEAR
from shared.vocabulary import SKILLS

__all__ = [
    "NormaliseError",
    "clean_text",
    "parse_date",
    "parse_mobile",
    "parse_openid",
    "parse_skills",
]

EXCEL_EPOCH = date(1899, 12, 30)
# Serial numbers accepted as Excel dates: 1982-01-01 .. 2099-12-31.
_SERIAL_MIN, _SERIAL_MAX = 29952, 73050


class NormaliseError(ValueError):
    """A value that cannot be normalised: ``reason`` in plain words, ``suggestion`` when one exists."""

    def __init__(self, reason: str, suggestion: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.suggestion = suggestion


def clean_text(value: object) -> str:
    """A cell as text: NFKC-normalised (full-width → half-width), trimmed; None → ``""``."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return unicodedata.normalize("NFKC", str(value)).strip()


_MOBILE_JUNK = re.compile(r"[\s\-–—.()（）_/]")
_MAINLAND = re.compile(r"^1[3-9]\d{9}$")


def parse_mobile(value: object) -> str:
    """A mainland mobile number in E.164 (``+8613800138000``).

    Raises:
        NormaliseError: empty, or not an 11-digit mainland mobile number.

    """
    s = _MOBILE_JUNK.sub("", clean_text(value))
    if not s:
        raise NormaliseError("mobile is missing")
    if s.startswith("+86"):
        s = s[3:]
    elif s.startswith("0086"):
        s = s[4:]
    elif s.startswith("86") and len(s) == 13:
        s = s[2:]
    if not _MAINLAND.match(s):
        raise NormaliseError("not a mainland mobile number (11 digits starting 13-19)")
    return "+86" + s


_YMD = re.compile(r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?$")
_COMPACT = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_SERIAL = re.compile(r"^\d{5}(\.0+)?$")


def parse_date(value: object) -> date | None:
    """A calendar date from any of the writings in the module docstring; empty → None.

    Raises:
        NormaliseError: not a date, or a date that does not exist (2024-02-30).

    """
    if value is None:
        return None
    if isinstance(value, datetime):
        return _plausible(value.date())
    if isinstance(value, date):
        return _plausible(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _from_serial(float(value))
    s = clean_text(value)
    if not s:
        return None
    m = _YMD.match(s) or _COMPACT.match(s)
    if m:
        y, mo, d = (int(g) for g in m.groups())
        try:
            return _plausible(date(y, mo, d))
        except NormaliseError:
            raise
        except ValueError as exc:
            raise NormaliseError(f"{s} is not a real date ({exc})") from None
    if _SERIAL.match(s):
        return _from_serial(float(s))
    raise NormaliseError(f"{s!r} is not a date", "write it as 2024-03-01")


def _plausible(d: date) -> date:
    if not MIN_YEAR <= d.year <= MAX_YEAR:
        raise NormaliseError(f"{d.isoformat()} is not a plausible date (years {MIN_YEAR}..{MAX_YEAR})")
    return d


def _from_serial(n: float) -> date:
    if not (_SERIAL_MIN <= n <= _SERIAL_MAX):
        raise NormaliseError(f"{n:g} is not a date (not an Excel day number between 1982 and 2099)")
    return EXCEL_EPOCH + timedelta(days=int(n))


def _skill_key(s: str) -> str:
    return re.sub(r"[\s\-_]", "", unicodedata.normalize("NFKC", s).casefold())


_SKILL_INDEX: dict[str, str] = {}
for _s in SKILLS:
    for _name in (_s.code, _s.name_zh, *_s.aliases):
        _SKILL_INDEX.setdefault(_skill_key(_name), _s.code)
_SKILL_CHOICES = {k: k for k in _SKILL_INDEX}
_SKILL_SPLIT = re.compile(r"[、,，;；|]+")


def _lookup_skill(token: str) -> str | None:
    return _SKILL_INDEX.get(_skill_key(token))


def _suggest_skill(token: str) -> str | None:
    best = process.extractOne(_skill_key(token), _SKILL_CHOICES, scorer=fuzz.WRatio, score_cutoff=60)
    if best is None:
        return None
    code = _SKILL_INDEX[best[0]]
    return next(s.name_zh for s in SKILLS if s.code == code)


def parse_skills(value: object) -> tuple[tuple[str, ...], list[str]]:
    """Skill codes in the order written, without repeats, and the tokens that are not skills.

    Tokens separated by spaces are joined greedily when together they name a skill
    (``first aid``, ``search and rescue``).

    Returns:
        ``(codes, unknown_tokens)``.

    """
    s = clean_text(value)
    codes: list[str] = []
    unknown: list[str] = []
    for chunk in _SKILL_SPLIT.split(s):
        chunk = chunk.strip()
        if not chunk:
            continue
        code = _lookup_skill(chunk)
        if code:
            codes.append(code)
            continue
        words = chunk.split()
        i = 0
        while i < len(words):
            for j in range(len(words), i, -1):
                code = _lookup_skill(" ".join(words[i:j]))
                if code:
                    codes.append(code)
                    i = j
                    break
            else:
                unknown.append(words[i])
                i += 1
    return tuple(dict.fromkeys(codes)), unknown


def suggest_skill(token: str) -> str | None:
    """The Chinese name of the closest skill to ``token``, or None."""
    return _suggest_skill(token)


_OPENID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def parse_openid(value: object) -> str | None:
    """A WeChat openid (per official account; 28 characters ``o…`` in practice); empty → None.

    Raises:
        NormaliseError: characters or length that no openid has (16–64 of ``[A-Za-z0-9_-]``).

    """
    s = clean_text(value)
    if not s:
        return None
    if not _OPENID.match(s):
        raise NormaliseError("not a WeChat openid (16-64 letters, digits, _ or -)")
    return s
