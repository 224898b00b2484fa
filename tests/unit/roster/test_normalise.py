from datetime import date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.roster.domain.normalise import (
    NormaliseError,
    parse_date,
    parse_mobile,
    parse_openid,
    parse_skills,
)


@pytest.mark.parametrize(
    "raw",
    [
        "13800138000",
        "138 0013 8000",
        "138-0013-8000",
        "+86 138 0013 8000",
        "+8613800138000",
        "0086-138-0013-8000",
        "0086 13800138000",
        "8613800138000",
        "１３８００１３８０００",
        "＋８６ １３８－００１３－８０００",
        " 138.0013.8000 ",
        "(138)0013-8000",
        13800138000,
        13800138000.0,
    ],
)
def test_mobiles_in_every_usual_writing_become_e164(raw: object) -> None:
    assert parse_mobile(raw) == "+8613800138000"


@pytest.mark.parametrize(
    "raw",
    ["", None, "12345", "0571-88888888", "12800138000", "1380013800", "138001380001", "+1 415 555 0100",
     "abc13800138000", "+86 0571 8888 8888"],
)
def test_non_mainland_mobiles_are_errors(raw: object) -> None:
    with pytest.raises(NormaliseError):
        parse_mobile(raw)


@given(st.integers(min_value=3, max_value=9), st.integers(min_value=0, max_value=999_999_999))
def test_any_mainland_mobile_round_trips(second: int, rest: int) -> None:
    digits = f"1{second}{rest:09d}"
    spaced = f"+86 {digits[:3]} {digits[3:7]}-{digits[7:]}"
    assert parse_mobile(spaced) == "+86" + digits
    assert parse_mobile(digits) == "+86" + digits


@pytest.mark.parametrize(
    "raw",
    ["2024-03-01", "2024/3/1", "2024.3.1", "2024年3月1日", "2024 年 3 月 1 日", "20240301", "２０２４－０３－０１",
     "45352", "45352.0", 45352, 45352.0, date(2024, 3, 1), datetime(2024, 3, 1, 0, 0)],
)
def test_dates_in_every_usual_writing(raw: object) -> None:
    assert parse_date(raw) == date(2024, 3, 1)


@pytest.mark.parametrize("raw", ["", None, "  "])
def test_empty_dates_are_none(raw: object) -> None:
    assert parse_date(raw) is None


@pytest.mark.parametrize("raw", ["2024-02-30", "2023-13-01", "20230229", "2024年2月31日", "next tuesday", "123", "99999",
                                 "1.5", "2024/3"])
def test_impossible_or_unreadable_dates_are_errors(raw: object) -> None:
    with pytest.raises(NormaliseError):
        parse_date(raw)


def test_leap_day_is_a_date() -> None:
    assert parse_date("2024-02-29") == date(2024, 2, 29)


@pytest.mark.parametrize(
    ("raw", "codes"),
    [
        ("救护员、CPR", ("first_aid", "cpr_aed")),
        ("救护员，心肺复苏,驾驶员;后勤", ("first_aid", "cpr_aed", "driver", "logistics")),
        ("救护员 水上救援 搜救", ("first_aid", "water_rescue", "search_rescue")),
        ("first aid, search and rescue", ("first_aid", "search_rescue")),
        ("First-Aid；CPR/AED", ("first_aid", "cpr_aed")),
        ("救护员、救护员、急救", ("first_aid",)),
        ("water_rescue", ("water_rescue",)),
        ("医生 心理援助", ("medical", "psych_support")),
        ("", ()),
    ],
)
def test_skills_from_names_codes_and_aliases(raw: str, codes: tuple[str, ...]) -> None:
    found, unknown = parse_skills(raw)
    assert found == codes
    assert unknown == []


def test_unknown_skills_are_reported() -> None:
    found, unknown = parse_skills("救护员、游泳、开挖掘机")
    assert found == ("first_aid",)
    assert unknown == ["游泳", "开挖掘机"]


def test_openids() -> None:
    assert parse_openid("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o") == "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
    assert parse_openid("") is None
    with pytest.raises(NormaliseError):
        parse_openid("not an openid!")
