from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.dispatch.domain.model import COUNTED_STATES, CallOutState
from services.dispatch.domain.replies import ReplyNote, apply_reply
from services.dispatch.domain.waves import (
    LEVEL_ORDER,
    CallWave,
    Escalate,
    Filled,
    FlagUnfilled,
    deadline_seconds,
    decide,
    reply_code,
    wave_size,
)
from shared.events import IncidentMode, ReplyIntent
from shared.vocabulary import Level

T0 = datetime(2026, 7, 1, 4, 0, tzinfo=UTC)


@pytest.mark.parametrize(("outstanding", "factor", "size"), [(1, 2, 2), (3, 1.5, 5), (5, 2, 10), (0, 2, 0), (7, 1, 7)])
def test_wave_size_rounds_up(outstanding: int, factor: float, size: int) -> None:
    assert wave_size(outstanding, factor) == size


def test_wave_size_refuses_factor_below_one() -> None:
    with pytest.raises(ValueError):
        wave_size(3, 0.5)


def test_deadlines() -> None:
    assert deadline_seconds(IncidentMode.EMERGENCY, None) == 180
    assert deadline_seconds(IncidentMode.EVENT, None) == 1800
    assert deadline_seconds(IncidentMode.DRILL, 15) == 15
    with pytest.raises(ValueError):
        deadline_seconds(IncidentMode.DRILL, None)


def test_decide_cases() -> None:
    assert decide(outstanding=0, level=Level.VILLAGE, max_level=Level.CITY, eligible_left=9) == Filled()
    assert decide(outstanding=2, level=Level.VILLAGE, max_level=Level.CITY, eligible_left=9) == CallWave(Level.VILLAGE, 4)
    assert decide(outstanding=2, level=Level.VILLAGE, max_level=Level.CITY, eligible_left=1) == CallWave(Level.VILLAGE, 1)
    assert decide(outstanding=2, level=Level.TOWN, max_level=Level.CITY, eligible_left=0) == Escalate(Level.TOWN,
                                                                                                    Level.COUNTY)
    assert decide(outstanding=2, level=Level.TOWN, max_level=Level.TOWN, eligible_left=0) == FlagUnfilled(Level.TOWN, 2)
    assert decide(outstanding=1, level=Level.CITY, max_level=Level.CITY, eligible_left=0) == FlagUnfilled(Level.CITY, 1)


@settings(max_examples=200, deadline=None)
@given(
    start=st.sampled_from(LEVEL_ORDER), top=st.sampled_from(LEVEL_ORDER),
    supply=st.lists(st.integers(0, 3), min_size=1, max_size=30), need=st.integers(1, 10),
)
def test_escalation_only_upward_and_never_above_max(start: Level, top: Level, supply: list[int], need: int) -> None:
    if LEVEL_ORDER.index(start) > LEVEL_ORDER.index(top):
        start = top
    level, seen = start, [start]
    for left in supply:
        d = decide(outstanding=need, level=level, max_level=top, eligible_left=left)
        if isinstance(d, Escalate):
            assert LEVEL_ORDER.index(d.to_level) == LEVEL_ORDER.index(d.from_level) + 1
            level = d.to_level
            seen.append(level)
        elif isinstance(d, FlagUnfilled):
            assert level == top or LEVEL_ORDER.index(level) == len(LEVEL_ORDER) - 1
            break
        elif isinstance(d, CallWave):
            assert 1 <= d.size <= left
    assert [LEVEL_ORDER.index(x) for x in seen] == sorted(LEVEL_ORDER.index(x) for x in seen)
    assert LEVEL_ORDER.index(level) <= LEVEL_ORDER.index(top)


def test_reply_codes_unique_among_open() -> None:
    taken: set[str] = set()
    for i in range(200):  # two characters while the 136 two-character codes last, then three
        code = reply_code(uuid4(), taken)
        assert code not in taken and len(code) == (2 if i < 136 else 3)
        taken.add(code)


def test_reply_code_is_reproducible() -> None:
    cid = uuid4()
    assert reply_code(cid, ()) == reply_code(cid, ())


def reply(state: CallOutState, intent: ReplyIntent, outstanding: int = 1, *, eta: int | None = None,
          open_: bool = True, at: datetime = T0, last: datetime | None = None):  # type: ignore[no-untyped-def]
    return apply_reply(state=state, intent=intent, eta_minutes=eta, outstanding=outstanding, incident_open=open_,
                       received_at=at, last_reply_at=last)


def test_accept_while_needed_assigns_and_confirms() -> None:
    o = reply(CallOutState.REQUESTED, ReplyIntent.ACCEPT)
    assert (o.state, o.filled_delta, o.confirm, o.note) == (CallOutState.ASSIGNED, 1, True, ReplyNote.ASSIGNED)


def test_accept_when_filled_is_stood_down() -> None:
    o = reply(CallOutState.REQUESTED, ReplyIntent.ACCEPT, outstanding=0)
    assert (o.state, o.filled_delta, o.stand_down) == (CallOutState.CANCELLED, 0, True)


def test_late_accept_after_timeout_counts_while_open() -> None:
    o = reply(CallOutState.TIMED_OUT, ReplyIntent.ETA, eta=15)
    assert (o.state, o.filled_delta, o.eta_minutes) == (CallOutState.ASSIGNED, 1, 15)


def test_duplicate_accept_does_not_double_count_but_eta_updates() -> None:
    assert reply(CallOutState.ASSIGNED, ReplyIntent.ACCEPT).note is ReplyNote.DUPLICATE
    o = reply(CallOutState.ASSIGNED, ReplyIntent.ETA, eta=7)
    assert (o.note, o.filled_delta, o.eta_minutes) == (ReplyNote.ETA_UPDATED, 0, 7)


def test_decline_then_withdrawal() -> None:
    assert reply(CallOutState.REQUESTED, ReplyIntent.DECLINE).state is CallOutState.DECLINED
    o = reply(CallOutState.ASSIGNED, ReplyIntent.DECLINE)
    assert (o.state, o.filled_delta, o.note) == (CallOutState.DECLINED, -1, ReplyNote.WITHDRAWN)


def test_arrival() -> None:
    assert reply(CallOutState.ASSIGNED, ReplyIntent.ARRIVED).state is CallOutState.ARRIVED
    o = reply(CallOutState.REQUESTED, ReplyIntent.ARRIVED)
    assert (o.state, o.filled_delta) == (CallOutState.ARRIVED, 1)


def test_late_out_of_order_and_after_stand_down_are_not_applied() -> None:
    assert not reply(CallOutState.REQUESTED, ReplyIntent.ACCEPT, open_=False).applied
    o = reply(CallOutState.REQUESTED, ReplyIntent.ACCEPT, at=T0, last=T0 + timedelta(seconds=5))
    assert o.note is ReplyNote.OUT_OF_ORDER and not o.applied
    assert reply(CallOutState.CANCELLED, ReplyIntent.ACCEPT).note is ReplyNote.AFTER_STAND_DOWN
    assert reply(CallOutState.REQUESTED, ReplyIntent.UNRECOGNISED).note is ReplyNote.NOT_ACTIONABLE


reply_st = st.tuples(st.integers(0, 7), st.sampled_from(list(ReplyIntent)), st.integers(0, 600))


@settings(max_examples=300, deadline=None)
@given(count=st.integers(1, 4), replies=st.lists(reply_st, max_size=60))
def test_replies_never_over_fill_and_never_double_count(count: int, replies: list[tuple[int, ReplyIntent, int]]) -> None:
    """Any sequence of duplicate, late and out-of-order replies over 8 call-outs of one requirement."""
    states = [CallOutState.REQUESTED] * 8
    last: list[datetime | None] = [None] * 8
    filled = 0
    for i, intent, sec in replies:
        at = T0 + timedelta(seconds=sec)
        o = apply_reply(state=states[i], intent=intent, eta_minutes=5, outstanding=count - filled,
                        incident_open=True, received_at=at, last_reply_at=last[i])
        if o.applied:
            states[i] = o.state
            last[i] = at
            filled += o.filled_delta
        else:
            assert o.filled_delta == 0 or o.state == states[i]
        assert 0 <= filled <= count
        assert filled == sum(1 for s in states if s in COUNTED_STATES)
