"""The channel port: one interface for every notification provider (Aliyun SMS, Tencent SMS, WeChat).

Notify's pipeline never names a vendor: it asks the registry (:func:`services.notify.channels.build_providers`)
for "the active SMS channel" or "the WeChat channel" and talks to this interface. Each provider is a plugin
(a subclass of :class:`ChannelProvider`); the model is Netflix/dispatch's plugin registry.

Data shapes
    * :class:`OutboundMessage` — one message to one recipient. ``message_id`` is notify's id and THE
      idempotency key carried to the provider: Aliyun ``OutId``, Tencent ``SessionContext``, WeChat
      ``client_msg_id``.
    * :class:`SendResult` — the provider's answer for one message (in the order of the messages sent).
    * :class:`DeliveryReceipt` — one delivery receipt parsed from a provider's callback.
    * :class:`Uplink` — one inbound reply (SMS uplink) parsed from a provider's callback.

All datetimes are timezone-aware UTC. Providers report local times in Asia/Shanghai (``2017-01-01 00:00:00``);
the parsers convert them.

Errors
    Provider *business* errors never raise: they come back as :class:`SendResult` with ``accepted=False`` and
    the provider's own ``error_code``, classified into two flags (source: ``/work/shared/reference/providers.md``,
    the providers' error-code tables)::

        SendResult(accepted=False)
        ├── retryable=True            rate limit (isv.BUSINESS_LIMIT_CONTROL, LimitExceeded.*, WeChat -1/43117/45009),
        │                             system busy (isp.SYSTEM_ERROR, InternalError.*), timeout / network error
        │                             → the pipeline tries again later, with backoff (query() first when in doubt)
        ├── recipient_permanent=True  invalid number (isv.MOBILE_NUMBER_ILLEGAL, InvalidParameterValue.IncorrectPhoneNumber),
        │                             blacklist (FailedOperation.PhoneNumberInBlacklist), invalid openid (40003),
        │                             not following (43004), refused (43101)
        │                             → fall back to another channel / give up for this recipient
        └── neither                   configuration or programming error (bad template, signature, balance):
                                      → fail the message, alert operators

    Raised exceptions::

        ValueError            parse_receipts / parse_uplinks on a malformed callback body (→ answer 4xx)
        ChannelConfigError    (a ValueError) a provider is selected in settings but its credentials are missing
        anything else         a programming error; never a provider's business answer
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from shared.events import MessageKind
from shared.vocabulary import Channel

__all__ = [
    "ChannelConfigError",
    "ChannelProvider",
    "DeliveryReceipt",
    "OutboundMessage",
    "SendResult",
    "Uplink",
]


class ChannelConfigError(ValueError):
    """A provider is selected in settings but cannot be built (missing credentials, unknown name)."""


@dataclass(frozen=True)
class OutboundMessage:
    """One message to one recipient.

    Attributes:
        message_id: notify's id; the idempotency key sent to the provider as ``OutId`` (Aliyun),
            ``SessionContext`` (Tencent) or ``client_msg_id`` (WeChat).
        recipient: E.164 mobile (``+8613812341234``) for SMS, the openid for WeChat.
        kind: what the message is about (call-out, stand-down, reminder...).
        text: the rendered Chinese text (SMS body without the ``【signature】``; for WeChat, the summary).
        template_params: values for the provider's template, strings only (Aliyun refuses non-strings
            with ``isv.INVALID_JSON_PARAM``).
        url: WeChat only: link to the reply page.
        drill: the message belongs to a drill.

    """

    message_id: UUID
    recipient: str
    kind: MessageKind
    text: str
    template_params: Mapping[str, str] = field(default_factory=dict)
    url: str | None = None
    drill: bool = False


@dataclass(frozen=True)
class SendResult:
    """The provider's answer for one :class:`OutboundMessage`.

    Attributes:
        message_id: the message this answers.
        accepted: the provider accepted it (Aliyun ``OK``, Tencent ``Ok``, WeChat ``errcode 0``).
        provider_message_id: Aliyun ``BizId``, Tencent ``SerialNo``, WeChat ``msgid``; None when refused.
        error_code: the provider's own error code (``isv.MOBILE_NUMBER_ILLEGAL``, ``LimitExceeded.AppDailyLimit``,
            ``43004``...), or ``network`` / ``timeout`` for transport failures; None when accepted.
        retryable: try again later (rate limit, system busy, timeout).
        recipient_permanent: this recipient cannot be reached on this channel (invalid number or openid,
            not following, refused, blacklisted): fall back or give up.

    """

    message_id: UUID
    accepted: bool
    provider_message_id: str | None
    error_code: str | None = None
    retryable: bool = False
    recipient_permanent: bool = False


@dataclass(frozen=True)
class DeliveryReceipt:
    """A delivery receipt parsed from a provider's callback.

    Attributes:
        provider_message_id: BizId / sid (SerialNo) / MsgID, when the provider sends it.
        message_id: notify's id (Aliyun ``out_id``, Tencent ``ext``) when present.
        recipient: E.164 mobile or openid, when present.
        delivered: the phone received it.
        error_code: the provider's status code when not delivered (``failed:user block``, ``MK:0001``...).
        reported_at: when the provider says it happened, UTC.

    """

    provider_message_id: str | None
    message_id: UUID | None
    recipient: str | None
    delivered: bool
    error_code: str | None
    reported_at: datetime


@dataclass(frozen=True)
class Uplink:
    """An inbound reply (SMS uplink) parsed from a provider's callback.

    Attributes:
        provider: ``aliyun`` | ``tencent``.
        sender: E.164 mobile (``+8613812341234``) or openid.
        text: what the volunteer typed, unchanged.
        received_at: when the provider received it, UTC.
        dedup_key: the provider's sequence id, or a hash of the item when the provider sends none
            (Tencent); the same callback redelivered gives the same key.

    """

    provider: str
    sender: str
    text: str
    received_at: datetime
    dedup_key: str


class ChannelProvider(ABC):
    """One notification provider, as a plugin.

    Attributes:
        name: ``aliyun`` | ``tencent`` | ``wechat``.
        channel: the channel it serves.
        max_batch: recipients per request (Aliyun SendBatchSms 100, Tencent 200, WeChat 1).
        rate_per_second: the client-side request limit the caller should respect.

    """

    name: str
    channel: Channel
    max_batch: int
    rate_per_second: float

    async def aclose(self) -> None:
        """Release the provider's own connections (SDK clients); the default has none."""
        return None

    @abstractmethod
    async def send(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        """Send ``messages`` (at most :attr:`max_batch` is efficient; more are split) and return one result each.

        Returns results in the order of ``messages``. Never raises for provider business errors or
        transport failures (those are ``SendResult(accepted=False, retryable=...)``); raises only on
        programming errors.
        """

    @abstractmethod
    async def query(self, message: OutboundMessage, sent_at: datetime) -> SendResult | None:
        """Resolve an in-doubt send: did the provider already accept ``message.message_id``.

        Args:
            message: the message whose send outcome is unknown (crash or timeout mid-send).
            sent_at: when the send was attempted, UTC (providers query by day, Asia/Shanghai).

        Returns:
            an accepted :class:`SendResult` when the provider has it, a not-accepted one when the provider
            certainly does not have it, None when the provider cannot tell.

        """

    @abstractmethod
    def parse_receipts(self, body: bytes, content_type: str) -> list[DeliveryReceipt]:
        """Parse a delivery-receipt callback body in the provider's format.

        Raises:
            ValueError: the body is malformed (not the provider's format).

        """

    @abstractmethod
    def parse_uplinks(self, body: bytes, content_type: str) -> list[Uplink]:
        """Parse an uplink (reply) callback body in the provider's format.

        Raises:
            ValueError: the body is malformed, or the provider has no uplinks (WeChat).

        """
