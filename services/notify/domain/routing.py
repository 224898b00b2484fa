"""Delivery decisions: which channel, when to try again, which call-out a reply answers.

Pure: no I/O.

Channel rule (issue #5): WeChat when the volunteer has an openid and follows the account
(``wechat_subscribed``), SMS otherwise; never SMS when SMS consent is withdrawn (roster's
``sms_consent`` or a TD/退订 reply). A channel that already failed for a message is not chosen again,
which is how a WeChat message falls back to SMS.

Retries (only on errors the provider marks retryable: rate limits, system busy, timeouts):
exponential backoff ``base * 2**(attempt-1)`` seconds, capped, at most ``max_attempts`` tries.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from shared.vocabulary import Channel

__all__ = ["ContactView", "OpenCallOut", "choose_channel", "match_callout", "retry_delay"]


@dataclass(frozen=True)
class ContactView:
    """What routing needs of a volunteer's contact channels (plain values, decrypted).

    Attributes:
        mobile: E.164 mobile or None.
        openid: WeChat openid or None.
        wechat_subscribed: follows the Official Account.
        sms_consent: SMS allowed (roster's consent and no TD/退订 since).

    """

    mobile: str | None
    openid: str | None
    wechat_subscribed: bool
    sms_consent: bool


def choose_channel(contact: ContactView | None, *, exclude: Collection[Channel] = ()) -> Channel | None:
    """The channel to use for ``contact``, or None when none is left.

    Args:
        contact: the volunteer's channels; None when notify has no contact for them.
        exclude: channels that already failed for this message.

    """
    if contact is None:
        return None
    if contact.openid and contact.wechat_subscribed and Channel.WECHAT not in exclude:
        return Channel.WECHAT
    if contact.mobile and contact.sms_consent and Channel.SMS not in exclude:
        return Channel.SMS
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
