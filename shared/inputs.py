r"""Input hygiene shared by the services' request models: text PostgreSQL and SMS can carry, bounded numbers.

Pydantic types (``Annotated``) for the fields of request bodies and query parameters; a refused value is
FastAPI's 422 with the field's path in ``loc``. Rules and their sources:

- **Text** (:data:`SingleLine`, :data:`MultiLine`, :func:`check_text`): no NUL (PostgreSQL's ``text`` cannot
  hold ``U+0000``), no unpaired surrogate (``"\\ud800"`` in JSON; not encodable as UTF-8), no control
  characters (Unicode category ``Cc``: ESC, BEL, DEL, C1 controls; they end up in SMS texts and terminals).
  A multi-line field keeps ``\\n``; nothing keeps ``\\r`` or ``\\t``.
- **Spreadsheet formulas** (:func:`is_formula`, :func:`neutralise_cell`): a cell starting with ``=``, ``+``,
  ``-`` or ``@`` (or tab / carriage return) is run by Excel as a formula (OWASP "CSV Injection"). Imports
  flag such cells; exports prefix them with ``'`` so they are shown as text.
- **Numbers**: :data:`Int64` is what a PostgreSQL ``bigint`` stores, :data:`Int32` an ``integer``;
  :data:`StrictInt` takes no string (``"2"``) and no boolean (``true``); :data:`FiniteFloat` no NaN or
  infinity (Python's JSON parser reads ``NaN`` and ``Infinity``).
- **Dates** (:data:`PlausibleDate`, :data:`PlausibleDatetime`): years :data:`MIN_YEAR` .. :data:`MAX_YEAR`
  (a certificate issued in 448 or a volunteer unavailable until 9999 is a typo).
"""

from __future__ import annotations

import unicodedata
from datetime import date, datetime
from typing import Annotated, TypeVar

from pydantic import AfterValidator, Field, Strict

__all__ = [
    "FORMULA_PREFIXES",
    "INT32_MAX",
    "INT64_MAX",
    "MAX_YEAR",
    "MIN_YEAR",
    "FiniteFloat",
    "Int32",
    "Int64",
    "MultiLine",
    "PlausibleDate",
    "PlausibleDatetime",
    "SingleLine",
    "StrictBool",
    "StrictInt",
    "check_text",
    "is_formula",
    "neutralise_cell",
    "plausible_year",
    "storable",
    "text_problem",
]

INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1
MIN_YEAR = 1900
MAX_YEAR = 2100
#: First characters that make a spreadsheet cell a formula (OWASP CSV Injection; tab and CR too).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


# Unicode's explicit bidirectional formatting characters (UAX #9: LRE RLE PDF LRO RLO, LRI RLI FSI PDI):
# an RLO in a title or broadcast reverses what the volunteer reads ("Trojan Source", CVE-2021-42574).
_BIDI_CONTROLS = frozenset((*range(0x202A, 0x202F), *range(0x2066, 0x206A)))


def text_problem(value: str, *, multiline: bool = False) -> str | None:
    r"""What makes ``value`` unfit to store or send, or None when it is fine.

    Args:
        value: the text.
        multiline: ``\\n`` is allowed (a free-text field of several lines).

    """
    for i, ch in enumerate(value):
        o = ord(ch)
        if o == 0:
            return f"contains a NUL character (U+0000) at position {i}"
        if 0xD800 <= o <= 0xDFFF:
            return f"contains an unpaired surrogate (U+{o:04X}) at position {i}"
        if ch == "\n" and multiline:
            continue
        if unicodedata.category(ch) == "Cc":
            return f"contains a control character (U+{o:04X}) at position {i}"
        if o in _BIDI_CONTROLS:
            return f"contains a bidirectional control character (U+{o:04X}) at position {i}"
    return None


def check_text(value: str, *, multiline: bool = False) -> str:
    """Return ``value`` unchanged, or raise ``ValueError`` saying what is wrong (see :func:`text_problem`)."""
    problem = text_problem(value, multiline=multiline)
    if problem is not None:
        raise ValueError(problem)
    return value


def storable(value: str) -> str:
    r"""``value`` with what :func:`text_problem` refuses taken out, for text a service must keep, not refuse.

    For input nobody can be asked to correct (a volunteer's SMS reply relayed by a provider): NUL and control
    characters other than ``\n`` are dropped, unpaired surrogates become U+FFFD.
    """
    if text_problem(value, multiline=True) is None:
        return value
    return "".join("\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in value
                   if ch == "\n" or unicodedata.category(ch) != "Cc")


def _single(value: str) -> str:
    return check_text(value)


def _multi(value: str) -> str:
    return check_text(value, multiline=True)


def is_formula(value: object) -> bool:
    """True when ``value`` is text a spreadsheet would run as a formula (its first character; a lone ``-`` is not)."""
    return isinstance(value, str) and len(value) > 1 and value.startswith(FORMULA_PREFIXES)


def neutralise_cell(value: object) -> object:
    """``value`` made safe for a CSV/XLSX export: a formula-like text gets a leading ``'`` (OWASP)."""
    return "'" + value if isinstance(value, str) and is_formula(value) else value


_D = TypeVar("_D", bound=date)


def plausible_year(value: _D) -> _D:
    """``value`` (a date or datetime) when its year is in :data:`MIN_YEAR` .. :data:`MAX_YEAR`; else ValueError."""
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValueError(f"year {value.year} is outside {MIN_YEAR}..{MAX_YEAR}")
    return value


SingleLine = Annotated[str, AfterValidator(_single)]
"""One line of text: no NUL, unpaired surrogate or control character (422 naming the field)."""
MultiLine = Annotated[str, AfterValidator(_multi)]
"""Text of several lines: as :data:`SingleLine`, but ``\\n`` is allowed."""
StrictInt = Annotated[int, Strict()]
"""An integer given as a JSON integer: ``"2"`` and ``true`` are refused."""
StrictBool = Annotated[bool, Strict()]
"""A boolean given as JSON ``true``/``false``: ``"yes"`` and ``1`` are refused."""
Int64 = Annotated[int, Field(ge=-INT64_MAX - 1, le=INT64_MAX)]
Int32 = Annotated[int, Field(ge=-INT32_MAX - 1, le=INT32_MAX)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
PlausibleDate = Annotated[date, AfterValidator(plausible_year)]
"""A calendar date in years :data:`MIN_YEAR` .. :data:`MAX_YEAR`."""
PlausibleDatetime = Annotated[datetime, AfterValidator(plausible_year)]
"""A time in years :data:`MIN_YEAR` .. :data:`MAX_YEAR`."""
