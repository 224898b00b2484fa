from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from services.dispatch.domain.model import CallOutState
from services.dispatch.domain.report import CallOutFact, MessageFact, RequirementFact, incident_figures
from services.dispatch.domain.validation import MAX_TITLE_LENGTH, check_requirement, check_text
from services.dispatch.errors import InvalidInput
from services.dispatch.units import units
from shared.divisions import gcj02_to_wgs84
from shared.vocabulary import Level

T0 = datetime(2026, 7, 1, 4, 0, tzinfo=UTC)


def test_figures() -> None:
    r1, r2 = uuid4(), uuid4()
    calls = [
        CallOutFact(r1, Level.VILLAGE, 1, CallOutState.DECLINED, T0),
        CallOutFact(r1, Level.VILLAGE, 1, CallOutState.TIMED_OUT, T0),
        CallOutFact(r1, Level.TOWN, 2, CallOutState.ASSIGNED, T0, T0 + timedelta(seconds=200)),
        CallOutFact(r2, Level.TOWN, 2, CallOutState.ARRIVED, T0, T0 + timedelta(seconds=95)),
    ]
    m1, m2 = uuid4(), uuid4()
    msgs = [MessageFact(m1, "sms", "sent"), MessageFact(m1, "sms", "delivered"), MessageFact(m2, "wechat", "failed")]
    f = incident_figures(
        opened_at=T0,
        requirements=[RequirementFact(r1, 1, 1, Level.TOWN, T0 + timedelta(seconds=200)),
                      RequirementFact(r2, 2, 1, Level.TOWN)],
        callouts=calls, messages=msgs,
    )
    assert f["time_to_first_acceptance_s"] == 95
    assert [r["time_to_fill_s"] for r in f["requirements"]] == [200, None]
    assert f["level_reached"] == "town"
    assert f["waves"] == 2
    assert f["callouts_by_state"] == {"declined": 1, "timed_out": 1, "assigned": 1, "arrived": 1}
    assert f["acceptance_rate_by_level"]["village"] == {"called": 2, "accepted": 0, "rate": 0.0}
    assert f["acceptance_rate_by_level"]["town"] == {"called": 2, "accepted": 2, "rate": 1.0}
    assert f["messages_by_channel"] == {"sms": 1, "wechat": 1}
    assert f["delivery_failures"] == 1


def test_figures_of_an_empty_incident() -> None:
    f = incident_figures(opened_at=T0, requirements=[], callouts=[])
    assert f["time_to_first_acceptance_s"] is None and f["waves"] == 0 and f["level_reached"] is None


@pytest.mark.parametrize(
    ("skill", "team_type", "count", "message"),
    [("juggling", None, 1, "unknown skill"), (None, "submarine", 1, "unknown team type"),
     ("first_aid", None, 0, "at least 1"), ("first_aid", None, -3, "at least 1"),
     ("first_aid", None, 100_000, "more than"), (None, None, 1, "exactly one"), ("first_aid", "water", 1, "exactly one")],
)
def test_bad_requirements(skill: str | None, team_type: str | None, count: int, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        check_requirement(skill=skill, team_type=team_type, count=count)


def _village_centre(code: str) -> tuple[float, float]:
    return units().centres[code[:9]]  # the file has no village centres: its town's seat


def test_point_checks_against_real_divisions() -> None:
    u = units()
    keqiao_village = next(c for c in u.names if c.startswith("330603") and len(c) == 12 and c[:9] in u.centres)
    shengzhou_village = next(c for c in u.names if c.startswith("330683") and len(c) == 12 and c[:9] in u.centres)
    lat, lon = _village_centre(keqiao_village)
    u.check_point(lat, lon, keqiao_village)  # its own centre is fine
    with pytest.raises(InvalidInput, match="outside the city"):
        u.check_point(31.23, 121.47, keqiao_village)  # Shanghai
    slat, slon = _village_centre(shengzhou_village)
    with pytest.raises(InvalidInput, match="is not in"):
        u.check_point(slat, slon, keqiao_village)  # a point in 嵊州 with a 柯桥 village code
    with pytest.raises(InvalidInput, match="not in Shaoxing"):
        u.check_point(lat, lon, "330603999999")
    with pytest.raises(InvalidInput, match="12-digit"):
        u.check_point(lat, lon, "330603")


def test_place_names_county_to_village() -> None:
    u = units()
    code = next(c for c in u.names if len(c) == 12)
    assert u.place(code).startswith(u.names[code[:6]]) and u.place(code).endswith(u.names[code])


def test_centres_are_converted_to_wgs84() -> None:
    lat, lon = gcj02_to_wgs84(30.030192, 120.580364)
    assert units().centres["330600"] == pytest.approx((lat, lon))


def test_text_limits_count_characters_not_bytes() -> None:
    check_text("title", "溺" * MAX_TITLE_LENGTH, MAX_TITLE_LENGTH)  # 100 Chinese characters, 300 bytes: fine
    with pytest.raises(InvalidInput, match=r"title is 101 characters long; at most 100"):
        check_text("title", "溺" * (MAX_TITLE_LENGTH + 1), MAX_TITLE_LENGTH)
    with pytest.raises(InvalidInput, match="must not be empty"):
        check_text("kind", "  ", 40)
