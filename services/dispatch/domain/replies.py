"""Reply transitions: what one volunteer's reply does to their call-out.

Rule (issue #4, "replies"): accept → assigned while the requirement still needs people,
otherwise answered "filled, thank you, stand down"; decline; ETA (an accept with minutes);
arrived (check-in); no reply by the deadline → timed out, and a later accept still counts while
the need is open. Duplicate, late and out-of-order replies never over-fill and never double-count:

* a reply older (``received_at``) than the last one applied to the call-out is out of order and
  is recorded only;
* a reply after the incident closed, or after a stand-down, is recorded only;
* an accept on an assigned call-out is a duplicate (an ETA on it updates the ETA);
* a decline after an accept withdraws the person (filled − 1, the need reopens);
* an accept (or a check-in) from someone already assigned in another open incident is refused: the
  call-out is declined (note ``engaged_elsewhere``, issue #14: nobody is booked twice) and they are
  told which incident they are on; the wave goes on as after any decline.

Every reply is recorded by the caller whatever the outcome; :class:`ReplyOutcome` says what to apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from shared.events import ReplyIntent

from .model import CallOutState

__all__ = ["ReplyNote", "ReplyOutcome", "apply_reply"]


class ReplyNote(StrEnum):
    """Why a reply had the effect it had (stored with the reply, shown on the board)."""

    ASSIGNED = "assigned"
    FILLED_STAND_DOWN = "filled_stand_down"
    DECLINED = "declined"
    WITHDRAWN = "withdrawn"
    ETA_UPDATED = "eta_updated"
    ARRIVED = "arrived"
    DUPLICATE = "duplicate"
    LATE = "late"
    OUT_OF_ORDER = "out_of_order"
    AFTER_STAND_DOWN = "after_stand_down"
    NOT_ACTIONABLE = "not_actionable"
    ENGAGED_ELSEWHERE = "engaged_elsewhere"


@dataclass(frozen=True)
class ReplyOutcome:
    """The effect of one reply.

    Attributes:
        state: the call-out's state afterwards.
        note: why (see :class:`ReplyNote`).
        filled_delta: +1, 0 or −1 to the requirement's filled count.
        confirm: send the assignment confirmation (``CallOutAssigned``).
        stand_down: tell them "filled, thank you, stand down" (``CallOutCancelled`` reason ``filled``).
        eta_minutes: the ETA to store (None = leave as is).

    """

    state: CallOutState
    note: ReplyNote
    filled_delta: int = 0
    confirm: bool = False
    stand_down: bool = False
    eta_minutes: int | None = None

    @property
    def applied(self) -> bool:
        """True when the reply changed the call-out (state, count or ETA)."""
        return self.note not in {
            ReplyNote.DUPLICATE, ReplyNote.LATE, ReplyNote.OUT_OF_ORDER,
            ReplyNote.AFTER_STAND_DOWN, ReplyNote.NOT_ACTIONABLE,
        }


_WAITING = {CallOutState.REQUESTED, CallOutState.TIMED_OUT, CallOutState.DECLINED}


def apply_reply(
    *,
    state: CallOutState,
    intent: ReplyIntent,
    eta_minutes: int | None,
    outstanding: int,
    incident_open: bool,
    received_at: datetime,
    last_reply_at: datetime | None,
    engaged_elsewhere: bool = False,
) -> ReplyOutcome:
    """Decide what a reply does to a call-out in ``state``.

    Args:
        state: the call-out's current state.
        intent: the parsed reply (from notify's ``ReplyReceived``).
        eta_minutes: minutes, for ``eta`` replies.
        outstanding: people the call-out's requirement still needs now (≥ 0).
        incident_open: the incident is still open.
        received_at: when the reply reached the provider (UTC).
        last_reply_at: ``received_at`` of the last reply applied to this call-out, or None.
        engaged_elsewhere: the volunteer is assigned (or arrived) through another call-out in an open
            incident; an outcome that would assign them here becomes declined (``ENGAGED_ELSEWHERE``).

    Returns:
        The outcome; ``filled_delta`` is +1 only when ``outstanding > 0`` and the volunteer is not engaged
        elsewhere, so a requirement is never over-filled and nobody is counted in two incidents.

    """
    same = ReplyOutcome(state=state, note=ReplyNote.NOT_ACTIONABLE)
    if intent in (ReplyIntent.UNSUBSCRIBE, ReplyIntent.UNRECOGNISED):
        return same
    if not incident_open:
        return ReplyOutcome(state=state, note=ReplyNote.LATE)
    if last_reply_at is not None and received_at < last_reply_at:
        return ReplyOutcome(state=state, note=ReplyNote.OUT_OF_ORDER)
    if state is CallOutState.CANCELLED:
        return ReplyOutcome(state=state, note=ReplyNote.AFTER_STAND_DOWN)
    if (engaged_elsewhere and state in _WAITING and outstanding > 0
            and intent in (ReplyIntent.ACCEPT, ReplyIntent.ETA, ReplyIntent.ARRIVED)):
        return ReplyOutcome(CallOutState.DECLINED, ReplyNote.ENGAGED_ELSEWHERE)

    if intent in (ReplyIntent.ACCEPT, ReplyIntent.ETA):
        eta = eta_minutes if intent is ReplyIntent.ETA else None
        if state in _WAITING:
            if outstanding > 0:
                return ReplyOutcome(CallOutState.ASSIGNED, ReplyNote.ASSIGNED, 1, confirm=True, eta_minutes=eta)
            return ReplyOutcome(CallOutState.CANCELLED, ReplyNote.FILLED_STAND_DOWN, stand_down=True)
        if state is CallOutState.ASSIGNED and eta is not None:
            return ReplyOutcome(state, ReplyNote.ETA_UPDATED, eta_minutes=eta)
        return ReplyOutcome(state=state, note=ReplyNote.DUPLICATE)

    if intent is ReplyIntent.DECLINE:
        if state in (CallOutState.REQUESTED, CallOutState.TIMED_OUT):
            return ReplyOutcome(CallOutState.DECLINED, ReplyNote.DECLINED)
        if state is CallOutState.ASSIGNED:
            return ReplyOutcome(CallOutState.DECLINED, ReplyNote.WITHDRAWN, -1)
        return ReplyOutcome(state=state, note=ReplyNote.DUPLICATE)

    # ARRIVED: a check-in
    if state is CallOutState.ASSIGNED:
        return ReplyOutcome(CallOutState.ARRIVED, ReplyNote.ARRIVED)
    if state in _WAITING:
        if outstanding > 0:
            return ReplyOutcome(CallOutState.ARRIVED, ReplyNote.ARRIVED, 1)
        return ReplyOutcome(CallOutState.CANCELLED, ReplyNote.FILLED_STAND_DOWN, stand_down=True)
    return ReplyOutcome(state=state, note=ReplyNote.DUPLICATE)
