"""Delivery decisions: which channel, when to try again, which call-out a reply answers.

Pure: no I/O.

Channel rule (issues #5, #14): the volunteer's ``preferred_channel`` (from the roster) when it can
reach them, else the other one. WeChat can reach them when they have an openid and follow the account
(``wechat_subscribed``); SMS when they have a mobile and SMS consent (roster's ``sms_consent``, no
TD/退订 reply since). Without a preference WeChat comes first. A channel that already failed for a
message is not chosen again, which is how a WeChat message falls back to SMS (and an SMS to WeChat).

Missing WeChat delivery receipt (:func:`receipt_overdue_reason`): sent again by SMS only when that can
tell the volunteer something. See the function for the rule and why.

Retries (only on errors the provider marks retryable: rate limits, system busy, timeouts):
exponential backoff ``base * 2**(attempt-1)`` seconds, capped, at most ``max_attempts`` tries.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from shared.vocabulary import CARDIAC_ARREST, Channel

__all__ = ["CROSSING_SECONDS", "NORMAL_PRIORITY", "URGENT_PRIORITY", "ContactView", "RecentCallOut", "choose_channel",
           "match_callout", "priority_of", "receipt_overdue_reason", "retry_delay"]


@dataclass(frozen=True)
class ContactView:
    """What routing needs of a volunteer's contact channels (plain values, decrypted).

    Attributes:
        mobile: E.164 mobile or None.
        openid: WeChat openid or None.
        wechat_subscribed: follows the Official Account.
        sms_consent: SMS allowed (roster's consent and no TD/退订 since).
        preferred: the volunteer's preferred channel (roster's ``preferred_channel``); None: WeChat first.

    """

    mobile: str | None
    openid: str | None
    wechat_subscribed: bool
    sms_consent: bool
    preferred: Channel | None = None


def choose_channel(contact: ContactView | None, *, exclude: Collection[Channel] = ()) -> Channel | None:
    """The channel to use for ``contact``, or None when none is left.

    Args:
        contact: the volunteer's channels; None when notify has no contact for them.
        exclude: channels that already failed for this message.

    """
    if contact is None:
        return None
    reachable = {
        Channel.WECHAT: bool(contact.openid and contact.wechat_subscribed),
        Channel.SMS: bool(contact.mobile and contact.sms_consent),
    }
    order = (Channel.SMS, Channel.WECHAT) if contact.preferred is Channel.SMS else (Channel.WECHAT, Channel.SMS)
    return next((c for c in order if reachable[c] and c not in exclude), None)


def receipt_overdue_reason(
    *, kind: str, callout_state: str | None, answered: bool, sent_before_listening: bool, sms_possible: bool,
    expired: bool = False,
) -> str | None:
    """Why a WeChat message past its receipt time-out is *not* sent again by SMS; None: send it by SMS.

    WeChat reports a template message's fate in a TEMPLATESENDJOBFINISH event (``success``,
    ``failed:user block``, ``failed: system failed``), pushed to our callback and re-pushed only 3 times
    5 s apart ("接收事件推送", WeChat Official Account documents). A *failed* event falls back to SMS at
    once; this decides what no event at all means, once ``wechat_receipt_timeout_seconds`` has passed:

    - ``"answered"``: a ``callout`` the volunteer has replied to, or has accepted (``callout_state``
      ``assigned``): the reply proves the message arrived.
    - ``"closed"``: the call-out is closed (filled, stood down, incident closed): a call-out or
      assignment sent again now would be followed by its stand-down.
    - ``"listener_gap"``: the message was sent before this notify process started listening
      (``sent_before_listening``): its event may have been pushed, and given up, while no notify was
      there to answer (a crash or restart), so the silence says nothing about delivery. Sending again
      would reach most volunteers twice (fault drill run 5: 181 call-outs); the call-out stays ``sent``
      without receipt, and a volunteer who does not answer is covered by the call-out's deadline and the
      next wave, as any silent volunteer is.
    - ``"expired"``: a ``callout`` past its ``respond_by``: dispatch has timed it out and called the next
      wave; sending it again by SMS would ask for an answer already given up on (a late "1" still counts).
    - ``"no_sms"``: no mobile, or SMS consent withdrawn: nothing to fall back to.

    Args:
        kind: ``callout`` | ``assigned`` | ``stand_down`` | ``reminder``.
        callout_state: notify's view of the call-out: ``open`` | ``assigned`` | ``closed``; None if unknown.
        answered: a reply to this call-out was recorded.
        sent_before_listening: the message's ``sent_at`` is before this process started.
        sms_possible: the volunteer has a mobile and SMS consent.
        expired: the call-out's ``respond_by`` (UTC) has passed.

    """
    if kind == "callout" and (answered or callout_state == "assigned"):
        return "answered"
    if kind in ("callout", "assigned", "reminder") and callout_state == "closed":
        return "closed"
    if kind == "callout" and expired:
        return "expired"
    if sent_before_listening:
        return "listener_gap"
    if not sms_possible:
        return "no_sms"
    return None


def retry_delay(attempt: int, *, base: float = 2.0, cap: float = 300.0) -> float:
    """Seconds to wait after failed try number ``attempt`` (1-based): 2, 4, 8, … up to ``cap``."""
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    return float(min(cap, base * 2 ** (attempt - 1)))


# How long after a stand-down a reply without a code may still be meant for the stood-down call-out: the
# stand-down SMS crossed the volunteer's "好的" on the way, or they answered the message they had just read
# before reading the next one. Ten minutes covers an SMS delivery and a volunteer reading it (carriers
# deliver most SMS within a minute; a volunteer driving reads it at the next stop).
CROSSING_SECONDS = 600.0


@dataclass(frozen=True)
class RecentCallOut:
    """One of a volunteer's call-outs within the reply window, as reply matching sees it.

    Attributes:
        callout_id: the call-out.
        reply_code: its code (tells it apart among the volunteer's call-outs).
        requested_at: when it was requested, UTC.
        open: not closed in notify (no stand-down, decline or incident close yet).
        stood_down_at: when a stand-down (or the volunteer's decline) closed it, UTC; None while open or when
            it closed with its incident (no message then, so nothing to cross).
        answered: the volunteer has already replied to it.
        assigned: dispatch confirmed them on it (``CallOutAssigned``): they are on their way or there.

    """

    callout_id: UUID
    reply_code: str
    requested_at: datetime
    open: bool = True
    stood_down_at: datetime | None = None
    answered: bool = False
    assigned: bool = False


def match_callout(recent: Sequence[RecentCallOut], code: str | None, *, now: datetime | None = None,
                  arrival: bool = False) -> UUID | None:
    """The call-out a reply answers, or None when the volunteer has none in the window.

    With a ``code``: the call-out with that code, open or closed (the volunteer typed the code of the
    message they read; a stand-down may have crossed it). Without one: the newest call-out the volunteer
    may mean, which is an open one or one stood down less than :data:`CROSSING_SECONDS` before ``now``
    (UTC, default the current time) that they have not answered: a "好的" sent as the stand-down crossed
    it answers the message they read, not an older open call-out of another incident (issue #14: a
    drill's phone accepted a live incident that way). When there is none of those, the newest call-out
    (dispatch records the reply as late). An ``arrival`` ("到了") without a code answers the call-out they
    are assigned on, if any: the confirmation asks for "到了" without a code, and a newer call-out of
    another incident (an operator's manual add) must not swallow the check-in.
    """
    if not recent:
        return None
    if code is not None:
        for c in recent:
            if c.reply_code.lower() == code.lower():
                return c.callout_id
    if arrival and (mine := [c for c in recent if c.assigned and c.open]):
        return max(mine, key=lambda c: c.requested_at).callout_id
    at = now or datetime.now(UTC)
    live = [c for c in recent if c.open or (
        c.stood_down_at is not None and not c.answered and (at - c.stood_down_at).total_seconds() <= CROSSING_SECONDS)]
    return max(live or recent, key=lambda c: c.requested_at).callout_id


#: Send-queue priorities (``messages.priority``): the sender claims higher first, then by due time.
NORMAL_PRIORITY = 0
#: A cardiac arrest's call-outs and assignments (issue #17): claimed ahead of any mass fan-out, even while the
#: fan-out's requests fill the sender's in-flight limit, through a provider gate of their own.
URGENT_PRIORITY = 10


def priority_of(incident_kind: str) -> int:
    """A call-out's send priority: :data:`URGENT_PRIORITY` for a cardiac arrest, else :data:`NORMAL_PRIORITY`."""
    return URGENT_PRIORITY if incident_kind == CARDIAC_ARREST else NORMAL_PRIORITY
