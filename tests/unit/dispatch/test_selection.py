from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from uuid import UUID, uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.dispatch.domain.model import Certificate, TeamCandidate, VolunteerCandidate
from services.dispatch.domain.selection import select_teams, select_volunteers, within_unit
from shared.events import Availability
from shared.vocabulary import Level, TeamType

AT = datetime(2026, 7, 1, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai
VILLAGE = "330603101201"
LAT, LON = 30.0, 120.5


def vol(
    unit: str = VILLAGE, *, skills: tuple[str, ...] = ("search_rescue",), lat: float | None = LAT, lon: float | None = LON,
    vid: UUID | None = None, **kw: object,
) -> VolunteerCandidate:
    return VolunteerCandidate(volunteer_id=vid or uuid4(), unit_code=unit, lat=lat, lon=lon, skills=frozenset(skills),
                              **kw)  # type: ignore[arg-type]


def pick(vols: list[VolunteerCandidate], *, skill: str = "search_rescue", level: Level = Level.VILLAGE,
         called: frozenset[UUID] = frozenset(), limit: int = 100) -> list[VolunteerCandidate]:
    return [v for v, _ in select_volunteers(vols, skill=skill, lat=LAT, lon=LON, unit_code=VILLAGE, level=level,
                                            at=AT, called=called, limit=limit)]


def test_within_unit_by_level() -> None:
    assert within_unit("330603101201", "330603101")
    assert not within_unit("330603102201", "330603101")
    assert within_unit("330604101201", "330600")
    assert not within_unit("330603", "330603101")  # a county team is not inside a town


@pytest.mark.parametrize(
    ("field", "value"),
    [("active", False), ("consent", False), ("engaged", True), ("availability", Availability.OFF_DUTY)],
)
def test_ineligible_flags(field: str, value: object) -> None:
    ok = vol()
    bad = vol(**{field: value})
    assert pick([ok, bad]) == [ok]


def test_unavailable_until_passed_is_available_again() -> None:
    back = vol(availability=Availability.UNAVAILABLE, unavailable_until=AT - timedelta(minutes=1))
    away = vol(availability=Availability.UNAVAILABLE, unavailable_until=AT + timedelta(hours=1))
    assert pick([back, away]) == [back]


def test_skill_and_certificate_valid_on_the_shanghai_date() -> None:
    # 2026-06-30 23:30 UTC is already 2026-07-01 in Shanghai: a certificate that expired on 06-30 is invalid then.
    at = datetime(2026, 6, 30, 23, 30, tzinfo=UTC)
    valid = vol(skills=("first_aid",), certificates=(Certificate("first_aid", expires_on=date(2026, 7, 1)),))
    expired = vol(skills=("first_aid",), certificates=(Certificate("first_aid", expires_on=date(2026, 6, 30)),))
    none = vol(skills=("first_aid",))
    other = vol(skills=("first_aid",), certificates=(Certificate("water_rescue"),))
    chosen = select_volunteers([valid, expired, none, other], skill="first_aid", lat=LAT, lon=LON,
                               unit_code=VILLAGE, level=Level.VILLAGE, at=at, called=(), limit=10)
    assert [v for v, _ in chosen] == [valid]


def test_unit_of_current_level() -> None:
    here = vol(VILLAGE)
    same_town = vol("330603101202")
    same_county = vol("330603102201")
    other_county = vol("330604101201")
    everyone = [here, same_town, same_county, other_county]
    assert set(pick(everyone)) == {here}
    assert set(pick(everyone, level=Level.TOWN)) == {here, same_town}
    assert set(pick(everyone, level=Level.COUNTY)) == {here, same_town, same_county}
    assert set(pick(everyone, level=Level.CITY)) == set(everyone)


def test_ranking_distance_then_fairness_then_id() -> None:
    far = vol(lat=LAT + 0.05)
    near_busy = vol(lat=LAT + 0.001, recent_callouts=5)
    near_a = vol(lat=LAT + 0.001, recent_callouts=0, vid=UUID(int=1))
    near_b = vol(lat=LAT + 0.001, recent_callouts=0, vid=UUID(int=2))
    unknown = vol(lat=None, lon=None)
    assert pick([unknown, far, near_busy, near_b, near_a]) == [near_a, near_b, near_busy, far, unknown]


def test_distance_is_metres() -> None:
    v = vol(lat=LAT + 0.01)
    [(_, d)] = select_volunteers([v], skill="search_rescue", lat=LAT, lon=LON, unit_code=VILLAGE,
                                 level=Level.VILLAGE, at=AT, called=(), limit=1)
    assert 1100 < d < 1125  # 0.01° of latitude ≈ 1,112 m


def test_unknown_skill_raises() -> None:
    with pytest.raises(KeyError):
        pick([vol()], skill="juggling")


def test_teams_called_through_leader_and_counted_once() -> None:
    leader = vol()
    team = TeamCandidate(team_id=uuid4(), team_type=TeamType.WATER, unit_code="330603", leader=leader)
    leaderless = TeamCandidate(team_id=uuid4(), team_type=TeamType.WATER, unit_code="330603", leader=None)
    wrong_type = TeamCandidate(team_id=uuid4(), team_type=TeamType.USAR, unit_code="330603", leader=vol())

    def teams(level: Level, called: frozenset[UUID] = frozenset()) -> list[TeamCandidate]:
        return [t for t, _ in select_teams([team, leaderless, wrong_type], team_type=TeamType.WATER, lat=LAT, lon=LON,
                                           unit_code=VILLAGE, level=level, at=AT, called=called, limit=5)]

    second = TeamCandidate(team_id=uuid4(), team_type=TeamType.WATER, unit_code="330603", leader=leader, lat=LAT + 0.2,
                           lon=LON)
    both = select_teams([second, team], team_type=TeamType.WATER, lat=LAT, lon=LON, unit_code=VILLAGE,
                        level=Level.CITY, at=AT, called=(), limit=5)
    assert [t for t, _ in both] == [team]  # one leader of two teams is called once, for the nearer team
    assert teams(Level.TOWN) == []  # a county team is outside the town
    assert teams(Level.COUNTY) == [team]
    assert teams(Level.COUNTY, frozenset({leader.volunteer_id})) == []  # leader already called


volunteers_st = st.lists(
    st.builds(
        vol,
        unit=st.sampled_from([VILLAGE, "330603101202", "330603102201", "330604101201"]),
        skills=st.sampled_from([("search_rescue",), ("driver",), ("search_rescue", "driver")]),
        lat=st.floats(29.9, 30.1),
        lon=st.floats(120.4, 120.6),
        recent_callouts=st.integers(0, 5),
        consent=st.booleans(),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(vols=volunteers_st, limit=st.integers(0, 50), level=st.sampled_from(list(Level)), data=st.data())
def test_selection_properties(vols: list[VolunteerCandidate], limit: int, level: Level, data: st.DataObject) -> None:
    called = frozenset(data.draw(st.sets(st.sampled_from([v.volunteer_id for v in vols]))) if vols else set())
    chosen = select_volunteers(vols, skill="search_rescue", lat=LAT, lon=LON, unit_code=VILLAGE, level=level,
                               at=AT, called=called, limit=limit)
    ids = [v.volunteer_id for v, _ in chosen]
    assert len(ids) == len(set(ids)) <= limit  # nobody twice, never more than asked
    assert not set(ids) & called  # nobody called twice in one incident
    assert all(v.consent and "search_rescue" in v.skills for v, _ in chosen)
    dists = [d for _, d in chosen]
    assert dists == sorted(dists)
    eligible = [v for v in vols if v.consent and "search_rescue" in v.skills and v.volunteer_id not in called
                and within_unit(v.unit_code, {Level.VILLAGE: VILLAGE, Level.TOWN: VILLAGE[:9],
                                              Level.COUNTY: VILLAGE[:6], Level.CITY: "330600"}[level])]
    assert len(ids) == min(limit, len(eligible))


@settings(max_examples=100, deadline=None)
@given(vols=volunteers_st, need=st.integers(1, 6), accept_every=st.integers(1, 4), factor=st.sampled_from([1.0, 1.5, 2.0]))
def test_waves_over_an_incident_never_call_anyone_twice(
    vols: list[VolunteerCandidate], need: int, accept_every: int, factor: float
) -> None:
    """Waves and escalation composed as the ticker composes them, until filled or unfilled."""
    from services.dispatch.domain.waves import LEVEL_ORDER, CallWave, Escalate, decide, wave_size

    called: list[UUID] = []
    level, filled, levels_seen = Level.VILLAGE, 0, [Level.VILLAGE]
    for _ in range(50):
        outstanding = need - filled
        picked = select_volunteers(vols, skill="search_rescue", lat=LAT, lon=LON, unit_code=VILLAGE, level=level,
                                   at=AT, called=frozenset(called), limit=wave_size(outstanding, factor))
        d = decide(outstanding=outstanding, level=level, max_level=Level.CITY, eligible_left=len(picked),
                   factor=factor)
        if isinstance(d, CallWave):
            wave = [v.volunteer_id for v, _ in picked[: d.size]]
            called.extend(wave)
            filled += min(len(wave[::accept_every]), outstanding)  # some of them accept, never beyond the need
        elif isinstance(d, Escalate):
            level = d.to_level
            levels_seen.append(level)
        else:
            break
    assert len(called) == len(set(called))
    assert filled <= need
    assert [LEVEL_ORDER.index(x) for x in levels_seen] == sorted(LEVEL_ORDER.index(x) for x in levels_seen)
