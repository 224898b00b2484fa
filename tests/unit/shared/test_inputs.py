"""shared.inputs: the text, number and date rules every service's request models use (issue #20, findings 4 and 6)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from shared.inputs import (
    FiniteFloat,
    Int64,
    MultiLine,
    PlausibleDate,
    SingleLine,
    StrictInt,
    is_formula,
    neutralise_cell,
    storable,
    text_problem,
)


class Body(BaseModel):
    line: SingleLine = "x"
    lines: MultiLine = "x"
    count: StrictInt = 1
    page: Int64 = 1
    ratio: FiniteFloat = 1.0
    day: PlausibleDate = date(2026, 1, 1)


@pytest.mark.parametrize(("field", "value"), [
    ("line", "a\x00b"), ("line", "a\ud800"), ("line", "\x1b[31m"), ("line", "bell\x07"), ("line", "two\nlines"),
    ("line", "tab\there"), ("line", "del\x7f"), ("line", "c1\x85"), ("lines", "a\x00"), ("lines", "cr\r\n"),
    ("line", "rlo\u202eevil"), ("lines", "\u2066x"),  # bidi controls (break-it review: an RLO reached phones)
    ("count", "2"), ("count", True), ("count", 2.0), ("page", 2**63), ("page", -(2**63) - 1),
    ("ratio", float("nan")), ("ratio", float("inf")), ("day", "0448-01-01"), ("day", "2101-01-01"),
])
def test_refused_values_name_their_field(field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as e:
        Body.model_validate({field: value})
    assert e.value.errors()[0]["loc"] == (field,)


def test_accepted_values() -> None:
    b = Body.model_validate({"line": "王小明 Zhang-San", "lines": "救出\n移交120", "count": 2, "page": 2**63 - 1,
                             "ratio": 2.5, "day": "1900-01-01"})
    assert b.lines == "救出\n移交120" and b.page == 2**63 - 1
    assert text_problem("柯桥区鉴湖溺水") is None


@pytest.mark.parametrize(("cell", "formula"), [
    ("=1+1", True), ("+86138", True), ("-1+1", True), ("@SUM(A1)", True), ("\t=1", True), ("-", False),
    ("王小明", False), ("", False), (12, False),
])
def test_formulas_are_recognised_and_neutralised(cell: object, formula: bool) -> None:
    assert is_formula(cell) is formula
    assert neutralise_cell(cell) == ("'" + cell if formula and isinstance(cell, str) else cell)


def test_storable_drops_what_postgres_and_sms_cannot_carry() -> None:
    assert storable("a\x00b\n\x1bc\ud800") == "ab\nc\ufffd"
    assert storable("好的 1") == "好的 1"
