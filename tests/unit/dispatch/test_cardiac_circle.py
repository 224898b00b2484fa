"""The cardiac-arrest circle (issue #17): rings, cap, certificates, nearest first; roles and AED runs."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from uuid import UUID, uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.dispatch.domain.cardiac import (
    CIRCLE_SKILL,
    AedSite,
    AedStatus,
    CirclePolicy,
    Responder,
    Role,
    RoleKind,
    assign_roles,
    circle_step,
    open_at,
    select_circle,
)
from services.dispatch.domain.model import Certificate, VolunteerCandidate
from shared.divisions import distance_m

AT = datetime(2026, 7, 1, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai
DAY = date(2026, 7, 1)
LAT, LON = 30.0, 120.58  # 鲁迅故里, roughly
M_PER_DEG_LAT = 111_195.0


def offset(north_m: float, east_m: float) -> tuple[float, float]:
    return LAT + north_m / M_PER_DEG_LAT, LON + east_m / (M_PER_DEG_LAT * math.cos(math.radians(LAT)))


def vol(north_m: float = 0.0, east_m: float = 0.0, *, certified: bool = True, expires: date | None = None,
        unit: str = "330602001001", skills: tuple[str, ...] = (CIRCLE_SKILL,), **kw: object) -> VolunteerCandidate:
    lat, lon = offset(north_m, east_m)
    certs = (Certificate(CIRCLE_SKILL, None, expires or DAY + timedelta(days=30)),) if certified else ()
    return VolunteerCandidate(volunteer_id=uuid4(), unit_code=unit, lat=lat, lon=lon, skills=frozenset(skills),
                              certificates=certs, **kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- rings


def test_default_policy_steps() -> None:
    p = CirclePolicy()
    assert p.rings_m == (700.0, 900.0, 1100.0, 1300.0)
    assert p.step_seconds == 40.0
    assert [p.called_by(s) for s in range(4)] == [3, 12, 21, 30]
    first = circle_step(p, step=0, called=0, accepted=0)
    assert first is not None and (first.size, first.radius_m, first.last) == (3, 700.0, False)
    last = circle_step(p, step=3, called=21, accepted=1)
    assert last is not None and (last.size, last.radius_m, last.last) == (9, 1300.0, True)
    assert circle_step(p, step=4, called=30, accepted=0) is None  # after the window: no more steps
    assert circle_step(p, step=1, called=3, accepted=3) is None  # enough accepted
    assert circle_step(p, step=0, called=0, accepted=0, scene_unsafe=True) is None


@pytest.mark.parametrize("bad", [dict(rings_m=()), dict(rings_m=(900.0, 700.0)), dict(first=0),
                                 dict(first=5, cap=4), dict(reply_window_s=0), dict(wanted=0)])
def test_policy_refuses_nonsense(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        CirclePolicy(**bad)  # type: ignore[arg-type]


def test_across_division_borders_and_only_certified_on_the_day() -> None:
    other_county = vol(100, 0, unit="330603101201")  # another county, 100 m away
    uncertified = vol(50, 0, certified=False)
    expired = vol(60, 0, expires=DAY - timedelta(days=1))
    first_aid_only = vol(70, 0, skills=("first_aid",))
    picked = [v for v, _ in select_circle([other_county, uncertified, expired, first_aid_only], lat=LAT, lon=LON,
                                          at=AT, radius_m=700, called=(), limit=30)]
    assert picked == [other_county]


def test_opted_out_and_engaged_not_alerted() -> None:
    a, b, c = vol(10, 0), vol(20, 0, engaged=True), vol(30, 0)
    picked = [v for v, _ in select_circle([a, b, c], lat=LAT, lon=LON, at=AT, radius_m=700, called=(), limit=30,
                                          opted_out={a.volunteer_id})]
    assert picked == [c]


people = st.lists(
    st.tuples(st.floats(-2000, 2000), st.floats(-2000, 2000), st.booleans(), st.booleans(), st.integers(0, 5)),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(people, st.integers(0, 5), st.data())
def test_circle_invariants(rows: list[tuple[float, float, bool, bool, int]], steps_done: int, data: st.DataObject) -> None:
    """Run the circle's steps: only certified, never more than the cap, nobody beyond the ring, nearest first."""
    vols = [vol(n, e, certified=cert, skills=(CIRCLE_SKILL,) if skill else ("first_aid",), recent_callouts=r)
            for n, e, cert, skill, r in rows]
    by_id = {v.volunteer_id: v for v in vols}
    p = CirclePolicy(cap=data.draw(st.integers(3, 40)), first=3)
    called: list[UUID] = []
    for step in range(steps_done + 1):
        decided = circle_step(p, step=step, called=len(called), accepted=0)
        if decided is None:
            break
        picked = select_circle(vols, lat=LAT, lon=LON, at=AT, radius_m=decided.radius_m, called=called,
                               limit=decided.size)
        dists = [d for _, d in picked]
        assert dists == sorted(dists)  # nearest first
        for v, d in picked:
            assert CIRCLE_SKILL in v.skills and v.certificates  # only certified people
            assert d <= decided.radius_m + 1e-6  # nobody beyond the current ring
            assert d == pytest.approx(distance_m(LAT, LON, v.lat, v.lon))  # type: ignore[arg-type]
        # nobody nearer, eligible and left out in favour of someone farther
        left_out = [v for v in vols if v.volunteer_id not in called and v.volunteer_id not in {x.volunteer_id for x, _ in picked}
                    and CIRCLE_SKILL in v.skills and v.certificates
                    and distance_m(LAT, LON, v.lat, v.lon) <= decided.radius_m]  # type: ignore[arg-type]
        if left_out and picked:
            assert len(picked) == decided.size
            assert min(distance_m(LAT, LON, v.lat, v.lon) for v in left_out) >= dists[-1] - 1e-6  # type: ignore[arg-type]
        called.extend(v.volunteer_id for v, _ in picked)
        assert len(called) <= p.cap  # never more than the cap
        assert len(called) <= p.called_by(step)
    assert len(set(called)) == len(called)  # nobody twice
    assert all(by_id[c].certificates for c in called)


# --------------------------------------------------------------------------- AEDs


def aed(north_m: float, east_m: float, **kw: object) -> AedSite:
    lat, lon = offset(north_m, east_m)
    return AedSite(aed_id=uuid4(), lat=lat, lon=lon, **kw)  # type: ignore[arg-type]


def test_open_at_uses_shanghai_time() -> None:
    assert open_at("24/7", AT)
    assert open_at("Mo-Su 08:00-18:00", AT)  # 12:00 in Shanghai
    assert not open_at("Mo-Su 08:00-18:00", AT + timedelta(hours=8))  # 20:00
    assert open_at("Mo-Su 22:00-06:00", AT + timedelta(hours=15))  # 03:00 next day
    assert not open_at("", AT) and not open_at("garbage", AT)


def test_usable_at_status_and_expiry() -> None:
    assert aed(0, 0).usable_at(AT)
    assert not aed(0, 0, status=AedStatus.OUT_OF_SERVICE).usable_at(AT)
    assert not aed(0, 0, pads_expire_on=DAY - timedelta(days=1)).usable_at(AT)
    assert aed(0, 0, pads_expire_on=DAY).usable_at(AT)
    assert not aed(0, 0, battery_expire_on=date(2026, 6, 30)).usable_at(AT)
    assert not aed(0, 0, hours="Mo-Su 18:00-20:00").usable_at(AT)


def responder(north_m: float, east_m: float) -> Responder:
    lat, lon = offset(north_m, east_m)
    return Responder(uuid4(), lat, lon)


def test_nearest_does_cpr_others_fetch_by_path_through_aed() -> None:
    near, mid, far = responder(100, 0), responder(300, 0), responder(0, 600)
    on_way = aed(250, 0)  # on mid's way to the patient
    beside_far = aed(0, 550)
    closed = aed(290, 0, hours="Mo-Su 20:00-21:00")
    roles = assign_roles(patient_lat=LAT, patient_lon=LON, new=[far, mid, near], existing={},
                         aeds=[closed, beside_far, on_way], at=AT)
    assert roles[near.volunteer_id] == Role(RoleKind.CPR)
    assert roles[mid.volunteer_id].aed_id == on_way.aed_id
    assert roles[far.volunteer_id].aed_id == beside_far.aed_id


def test_aed_already_fetched_not_given_again_and_no_aed_means_cpr() -> None:
    a = aed(200, 0)
    first = responder(300, 0)
    existing = {uuid4(): Role(RoleKind.CPR), first.volunteer_id: Role(RoleKind.FETCH_AED, a.aed_id, 500.0)}
    late = responder(310, 0)
    roles = assign_roles(patient_lat=LAT, patient_lon=LON, new=[late], existing=existing, aeds=[a], at=AT)
    assert roles == {late.volunteer_id: Role(RoleKind.CPR)}


def test_too_long_a_run_goes_to_the_patient() -> None:
    r = responder(500, 0)
    roles = assign_roles(patient_lat=LAT, patient_lon=LON, new=[r], existing={uuid4(): Role(RoleKind.CPR)},
                         aeds=[aed(-1500, 0)], at=AT)
    assert roles[r.volunteer_id].kind is RoleKind.CPR


aed_rows = st.lists(st.tuples(st.floats(-1500, 1500), st.floats(-1500, 1500), st.booleans(), st.booleans(),
                              st.booleans()), max_size=12)
resp_rows = st.lists(st.tuples(st.floats(-1500, 1500), st.floats(-1500, 1500)), min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(aed_rows, resp_rows, st.integers(1, 4))
def test_roles_invariants(a_rows: list[tuple[float, float, bool, bool, bool]], r_rows: list[tuple[float, float]],
                          batches: int) -> None:
    """No AED assigned twice; only in-service, unexpired, open-now AEDs; one CPR first, the nearest of its batch."""
    aeds = [aed(n, e, status=AedStatus.IN_SERVICE if ok else AedStatus.OUT_OF_SERVICE,
                pads_expire_on=DAY if fresh else DAY - timedelta(days=1),
                hours="24/7" if open_now else "Mo-Su 20:00-21:00") for n, e, ok, fresh, open_now in a_rows]
    usable = {a.aed_id for a in aeds if a.usable_at(AT)}
    people = [responder(n, e) for n, e in r_rows]
    existing: dict[UUID, Role] = {}
    size = max(1, len(people) // batches)
    for i in range(0, len(people), size):
        batch = people[i:i + size]
        roles = assign_roles(patient_lat=LAT, patient_lon=LON, new=batch, existing=existing, aeds=aeds, at=AT)
        assert set(roles) == {r.volunteer_id for r in batch}
        if not existing:  # the nearest of the first batch goes to the patient (ties: any of the nearest)
            d = {r.volunteer_id: distance_m(LAT, LON, r.lat, r.lon) for r in batch}  # type: ignore[arg-type]
            cpr = [v for v, role in roles.items() if role.kind is RoleKind.CPR]
            assert cpr and min(d[v] for v in cpr) == min(d.values())
        existing.update(roles)
        fetched = [r.aed_id for r in existing.values() if r.kind is RoleKind.FETCH_AED]
        assert len(fetched) == len(set(fetched))  # no AED assigned twice
        assert set(fetched) <= usable  # only usable devices
        assert all(r.path_m is not None and r.path_m <= 2000.0 for r in existing.values() if r.aed_id)
    assert sum(r.kind is RoleKind.CPR for r in existing.values()) >= 1


# --------------------------------------------------------------------------- figures


def test_circle_figures_per_ring_and_aed_on_scene() -> None:
    from services.dispatch.domain.model import CallOutState
    from services.dispatch.domain.report import CircleCallOutFact, circle_figures

    t0 = AT
    s = timedelta(seconds=1)
    calls = [
        CircleCallOutFact(1, CallOutState.ARRIVED, t0, t0 + 9 * s, t0 + 200 * s, "cpr"),
        CircleCallOutFact(1, CallOutState.ASSIGNED, t0, t0 + 12 * s, None, "fetch_aed"),
        CircleCallOutFact(1, CallOutState.DECLINED, t0),
        CircleCallOutFact(2, CallOutState.ARRIVED, t0 + 40 * s, t0 + 45 * s, t0 + 300 * s, "fetch_aed"),
        CircleCallOutFact(2, CallOutState.CANCELLED, t0 + 40 * s),
    ]
    f = circle_figures(opened_at=t0, rings_m=(700.0, 900.0), callouts=calls, first_alert_sent_at=t0 + 0.4 * s)
    assert f["seconds_to_first_alert_sent"] == 0.4
    assert f["seconds_to_first_acceptance"] == 9.0
    assert f["seconds_to_first_arrival"] == 200.0
    assert (f["aed_runs"], f["seconds_to_aed_on_scene"]) == (2, 300.0)
    assert f["rings"] == [{"step": 1, "ring_m": 700.0, "alerted": 3, "accepted": 2},
                          {"step": 2, "ring_m": 900.0, "alerted": 2, "accepted": 1}]
    empty = circle_figures(opened_at=t0, rings_m=(), callouts=[], first_alert_sent_at=None)
    assert empty["seconds_to_first_acceptance"] is None and empty["rings"] == []
