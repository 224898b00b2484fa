"""select_volunteers' per-wave predicate (_eligibility) answers exactly as is_eligible, the rule as written."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from uuid import uuid4

from hypothesis import given, settings
from hypothesis import strategies as st

from services.dispatch.domain.model import Certificate, VolunteerCandidate
from services.dispatch.domain.selection import _eligibility, is_eligible
from shared.events import Availability

AT = datetime(2026, 7, 1, 17, 0, tzinfo=UTC)  # 01:00 on 2 July in Shanghai: the dates differ
UNITS = ["330603101201", "330603101202", "330603102201", "330604101201", "331000000000"]
DAYS = st.sampled_from([None, date(2026, 7, 1), date(2026, 7, 2), date(2026, 7, 3)])

candidates = st.builds(
    VolunteerCandidate,
    volunteer_id=st.uuids(),
    unit_code=st.sampled_from(UNITS),
    lat=st.none() | st.floats(29.9, 30.1),
    lon=st.none() | st.floats(120.4, 120.6),
    skills=st.frozensets(st.sampled_from(["first_aid", "driver", "water_rescue"]), max_size=3),
    certificates=st.lists(st.builds(Certificate, skill=st.sampled_from(["first_aid", "water_rescue"]),
                                    issued_on=DAYS, expires_on=DAYS), max_size=3).map(tuple),
    availability=st.sampled_from(list(Availability)),
    unavailable_until=st.none() | st.sampled_from([AT - timedelta(hours=1), AT, AT + timedelta(hours=1)]),
    consent=st.booleans(),
    active=st.booleans(),
    engaged=st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(vols=st.lists(candidates, max_size=20), skill=st.sampled_from(["first_aid", "driver", "water_rescue"]),
       unit=st.sampled_from(["330603101201", "330603101", "330603", "330600"]), data=st.data())
def test_same_answer_as_is_eligible(vols: list[VolunteerCandidate], skill: str, unit: str, data: st.DataObject) -> None:
    called = data.draw(st.sets(st.sampled_from([v.volunteer_id for v in vols] + [uuid4()])))
    eligible = _eligibility(skill, unit, AT, called)
    assert [eligible(v) for v in vols] == [is_eligible(v, skill=skill, unit=unit, at=AT, called=called) for v in vols]
