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
from datetime import datetime
from uuid import UUID

from shared.vocabulary import Channel

__all__ = ["ContactView", "OpenCallOut", "choose_channel", "match_callout", "receipt_overdue_reason", "retry_delay"]


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


@dataclass(frozen=True)
class OpenCallOut:
    """A call-out a volunteer may still answer.

    Attributes:
        callout_id: the call-out.
        reply_code: its code (tells it apart among the volunteer's open ones).
        requested_at: when it was requested, UTC.

    """

    callout_id: UUID
    reply_code: str
    requested_at: datetime


def match_callout(open_callouts: Sequence[OpenCallOut], code: str | None) -> UUID | None:
    """The call-out a reply answers: the one with ``code``, else the latest open one; None when none is open."""
    if not open_callouts:
        return None
    if code is not None:
        for c in open_callouts:
            if c.reply_code.lower() == code.lower():
                return c.callout_id
    return max(open_callouts, key=lambda c: c.requested_at).callout_id
