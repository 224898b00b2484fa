"""One volunteer, two open incidents: whatever the order of their replies, they are counted in at most one.

The domain side of issue #14's "no double booking" (the database side, a primary key on the volunteer,
is tested in tests/integration/dispatch/test_engagements.py): :func:`apply_reply` is told whether the
volunteer is engaged through the *other* call-out, exactly what the ``engagements`` row says.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.dispatch.domain.model import COUNTED_STATES, CallOutState
from services.dispatch.domain.replies import ReplyNote, apply_reply
from shared.events import ReplyIntent

T0 = datetime(2026, 7, 1, 4, 0, tzinfo=UTC)
INTENTS = (ReplyIntent.ACCEPT, ReplyIntent.ETA, ReplyIntent.DECLINE, ReplyIntent.ARRIVED, ReplyIntent.UNRECOGNISED)

# a reply: (which incident's call-out, 0 or 1; intent; seconds after T0 it reached the provider)
replies = st.lists(st.tuples(st.integers(0, 1), st.sampled_from(INTENTS), st.integers(0, 30)), max_size=25)


@settings(max_examples=400, deadline=None)
@given(replies=replies, needs=st.tuples(st.integers(1, 2), st.integers(1, 2)))
def test_never_counted_in_two_incidents(replies: list[tuple[int, ReplyIntent, int]], needs: tuple[int, int]) -> None:
    states = [CallOutState.REQUESTED, CallOutState.REQUESTED]
    last: list[datetime | None] = [None, None]
    filled = [0, 0]
    for which, intent, second in replies:
        other = 1 - which
        engaged = states[other] in COUNTED_STATES
        at = T0 + timedelta(seconds=second)
        out = apply_reply(state=states[which], intent=intent, eta_minutes=5 if intent is ReplyIntent.ETA else None,
                          outstanding=needs[which] - filled[which], incident_open=True, received_at=at,
                          last_reply_at=last[which], engaged_elsewhere=engaged)
        if out.note is ReplyNote.ENGAGED_ELSEWHERE:
            # refused only while really engaged in the other incident, and recorded as a decline
            assert engaged and out.state is CallOutState.DECLINED and out.filled_delta == 0 and not out.confirm
        if out.applied:
            states[which], last[which] = out.state, at
            filled[which] += out.filled_delta
        assert not (states[0] in COUNTED_STATES and states[1] in COUNTED_STATES), (states, replies)
        assert filled == [int(s in COUNTED_STATES) for s in states]  # the counts follow the states


@settings(max_examples=200, deadline=None)
@given(intent=st.sampled_from((ReplyIntent.ACCEPT, ReplyIntent.ETA, ReplyIntent.ARRIVED)),
       state=st.sampled_from((CallOutState.REQUESTED, CallOutState.TIMED_OUT, CallOutState.DECLINED)))
def test_free_again_after_release(intent: ReplyIntent, state: CallOutState) -> None:
    """Once the other engagement is released (withdrawn, stood down, closed) the same accept assigns."""
    kw = {"state": state, "intent": intent, "eta_minutes": 3, "outstanding": 1, "incident_open": True,
          "received_at": T0, "last_reply_at": None}
    assert apply_reply(**kw, engaged_elsewhere=True).note is ReplyNote.ENGAGED_ELSEWHERE  # type: ignore[arg-type]
    assert apply_reply(**kw, engaged_elsewhere=False).filled_delta == 1  # type: ignore[arg-type]


def test_engaged_elsewhere_does_not_touch_the_own_assignment() -> None:
    """An ETA or a check-in on the call-out they hold is not refused (the engagement is this one)."""
    for intent, note in ((ReplyIntent.ETA, ReplyNote.ETA_UPDATED), (ReplyIntent.ARRIVED, ReplyNote.ARRIVED)):
        out = apply_reply(state=CallOutState.ASSIGNED, intent=intent, eta_minutes=4, outstanding=0,
                          incident_open=True, received_at=T0, last_reply_at=None, engaged_elsewhere=True)
        assert out.note is note
