"""Tencent Cloud SMS (API 3.0, SendSms 2021-01-11) as a :class:`ChannelProvider`, through the official async SDK.

* ``SendSms`` takes up to 200 numbers but ONE ``TemplateParamSet`` and ONE ``SessionContext`` per request, so
  messages are batched only when their kind and template values are equal. A single message carries
  ``SessionContext`` = the message id (our idempotency key); a batch carries ``b`` + a batch id.
* Per-number answers come back in ``SendStatusSet`` (``Code`` ``Ok`` = accepted, ``SerialNo`` = the
  provider message id, which status callbacks return as ``sid``); a request-level ``Error`` applies to all.
* Template values are positional (``{1}``, ``{2}``…): the values of ``template_params`` in their order.

Sources: cloud.tencent.com/document/api/382/55981 (SendSms), /382/59178 (status callback),
/382/59179 (reply callback), ``tencentcloud/sms/v20210111/errorcodes.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit
from uuid import UUID

import httpx
from pydantic import BaseModel, ConfigDict, TypeAdapter
from tencentcloud.common.credential import Credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.sms.v20210111 import models as sms_models
from tencentcloud.sms.v20210111.sms_client_async import SmsClient

from services.notify.channels._common import chunks, limiter, parse_local_time
from services.notify.channels.base import (
    ChannelProvider,
    DeliveryReceipt,
    OutboundMessage,
    SendResult,
    Uplink,
)
from services.notify.channels.codes import TRANSPORT_ERROR, tencent_classify, to_e164
from shared.logging import get_logger
from shared.vocabulary import Channel

__all__ = ["TencentSms", "tencent_reply_dedup_key"]

log = get_logger(__name__)
_BATCH_PREFIX = "b"
_NETWORK_CODES = frozenset({"ClientNetworkError", "ServerNetworkError"})


class _Status(BaseModel):
    """One status-callback item (cloud.tencent.com/document/api/382/59178)."""

    model_config = ConfigDict(extra="ignore")
    user_receive_time: str
    nationcode: str = "86"
    mobile: str
    report_status: str
    errmsg: str | None = None
    description: str | None = None
    sid: str
    ext: str | None = None


class _Reply(BaseModel):
    """The reply callback object (cloud.tencent.com/document/api/382/59179)."""

    model_config = ConfigDict(extra="ignore")
    extend: str = ""
    mobile: str
    nationcode: str = "86"
    sign: str | None = None
    text: str
    time: int


_STATUSES = TypeAdapter(list[_Status])


def _uuid_or_none(value: str | None) -> UUID | None:
    if not value or (len(value) == 33 and value.startswith(_BATCH_PREFIX)):  # a batch's context
        return None
    try:
        return UUID(value)
    except ValueError:
        return None


class TencentSms(ChannelProvider):
    """Tencent Cloud SMS.

    Args:
        base_url: ``http://127.0.0.1:8190`` (simulator) or ``https://sms.tencentcloudapi.com``.
        secret_id / secret_key: the API key (requests are signed TC3-HMAC-SHA256 by the SDK).
        sdk_app_id: ``SmsSdkAppId``; sign_name: the approved signature content.
        templates: ``TemplateId`` per :class:`MessageKind` value.
        rate_per_second: client-side request limit (Tencent's default is 3,000 requests/s).
        timeout_seconds: request timeout (the SDK takes whole seconds; at least 1).

    """

    name = "tencent"
    channel = Channel.SMS
    max_batch = 200

    def __init__(self, *, base_url: str, secret_id: str, secret_key: str, sdk_app_id: str, sign_name: str,
                 templates: Mapping[str, str], region: str = "ap-guangzhou", rate_per_second: float = 100.0,
                 timeout_seconds: float = 5.0) -> None:
        parts = urlsplit(base_url)
        http_profile = HttpProfile(protocol=parts.scheme or "https", endpoint=parts.netloc,
                                   reqTimeout=max(1, round(timeout_seconds)), keepAlive=True)
        self._client = SmsClient(Credential(secret_id, secret_key), region, ClientProfile(httpProfile=http_profile))
        self.sdk_app_id = sdk_app_id
        self.sign_name = sign_name
        self.templates = dict(templates)
        self.rate_per_second = rate_per_second
        self._limiter = limiter(rate_per_second)

    async def aclose(self) -> None:
        await self._client.close()

    async def send(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        """Send each message; one result per message, in order."""
        groups: dict[tuple[str, tuple[str, ...]], list[OutboundMessage]] = {}
        for m in messages:
            groups.setdefault((str(m.kind), tuple(m.template_params.values())), []).append(m)
        requests = [c for group in groups.values() for c in chunks(group, self.max_batch)]
        results: dict[UUID, SendResult] = {}
        for chunk_results in await asyncio.gather(*(self._send_chunk(c) for c in requests)):
            for r in chunk_results:
                results[r.message_id] = r
        return [results[m.message_id] for m in messages]

    async def _send_chunk(self, chunk: Sequence[OutboundMessage]) -> list[SendResult]:
        first = chunk[0]
        context = str(first.message_id) if len(chunk) == 1 else _BATCH_PREFIX + uuid.uuid4().hex
        request = sms_models.SendSmsRequest()
        request.PhoneNumberSet = [m.recipient for m in chunk]
        request.SmsSdkAppId = self.sdk_app_id
        request.SignName = self.sign_name
        request.TemplateId = self.templates[str(first.kind)]
        request.TemplateParamSet = list(first.template_params.values())
        request.SessionContext = context
        async with self._limiter:
            try:
                response = await self._client.SendSms(request)
            except TencentCloudSDKException as exc:
                code = exc.get_code() or TRANSPORT_ERROR
                code = TRANSPORT_ERROR if code in _NETWORK_CODES else code
                log.warning("tencent_request_failed", code=code)
                return [self._failed(m, code) for m in chunk]
            except (httpx.HTTPError, OSError, TimeoutError) as exc:
                log.warning("tencent_request_failed", code=TRANSPORT_ERROR, error_type=type(exc).__name__)
                return [self._failed(m, TRANSPORT_ERROR) for m in chunk]
        by_number: dict[str, sms_models.SendStatus] = {}
        for status in response.SendStatusSet or []:
            by_number[_e164_or_raw(status.PhoneNumber)] = status
        results = []
        for m in chunk:
            status = by_number.get(_e164_or_raw(m.recipient))
            if status is None:
                results.append(self._failed(m, "InternalError.SendAndRecvFail"))
            elif status.Code == "Ok":
                results.append(SendResult(m.message_id, True, status.SerialNo))
            else:
                results.append(self._failed(m, status.Code))
        return results

    @staticmethod
    def _failed(m: OutboundMessage, code: str) -> SendResult:
        retryable, permanent = tencent_classify(code)
        return SendResult(m.message_id, False, None, code, retryable=retryable, recipient_permanent=permanent)

    async def query(self, message: OutboundMessage, sent_at: datetime) -> SendResult | None:
        """Look the message up with ``PullSmsSendStatusByPhoneNumber`` (status records since ``sent_at``).

        Returns accepted when a record carries our ``SessionContext``; None otherwise (Tencent keeps status
        records only once a receipt came back, so "no record" does not prove "not sent").
        """
        request = sms_models.PullSmsSendStatusByPhoneNumberRequest()
        request.BeginTime = int((sent_at - timedelta(minutes=1)).timestamp())
        request.EndTime = int(datetime.now(UTC).timestamp()) + 60
        request.Offset = 0
        request.Limit = 100
        request.PhoneNumber = message.recipient
        request.SmsSdkAppId = self.sdk_app_id
        async with self._limiter:
            try:
                response = await self._client.PullSmsSendStatusByPhoneNumber(request)
            except (TencentCloudSDKException, httpx.HTTPError, OSError, TimeoutError) as exc:
                log.warning("tencent_query_failed", error_type=type(exc).__name__)
                return None
        for status in response.PullSmsSendStatusSet or []:
            if status.SessionContext == str(message.message_id):
                return SendResult(message.message_id, True, status.SerialNo)
        return None

    def parse_receipts(self, body: bytes, content_type: str) -> list[DeliveryReceipt]:
        """Parse a status callback (JSON array, at most 100 items).

        Raises:
            ValueError: not a JSON array of status items.

        """
        return [
            DeliveryReceipt(
                provider_message_id=s.sid, message_id=_uuid_or_none(s.ext), recipient=_e164_or_raw(s.mobile),
                delivered=s.report_status == "SUCCESS",
                error_code=None if s.report_status == "SUCCESS" else (s.errmsg or s.report_status),
                reported_at=parse_local_time(s.user_receive_time),
            )
            for s in _STATUSES.validate_json(body)
        ]

    def parse_uplinks(self, body: bytes, content_type: str) -> list[Uplink]:
        """Parse a reply callback (ONE JSON object); ``dedup_key`` = ``tencent:`` + SHA-256 of the canonical item.

        Raises:
            ValueError: not a reply object, or the sender is not a mainland mobile.

        """
        reply = _Reply.model_validate_json(body)
        if reply.nationcode != "86":
            raise ValueError("only mainland numbers are served")
        return [Uplink(provider="tencent", sender=to_e164(reply.mobile), text=reply.text,
                       received_at=datetime.fromtimestamp(reply.time, tz=UTC), dedup_key=_dedup_key(reply))]


def _dedup_key(reply: _Reply) -> str:
    canonical = json.dumps(reply.model_dump(), sort_keys=True, ensure_ascii=False).encode()
    return "tencent:" + hashlib.sha256(canonical).hexdigest()[:32]


def tencent_reply_dedup_key(item: Mapping[str, object]) -> str:
    """The :class:`Uplink` ``dedup_key`` of a reply-callback object (Tencent sends no id: a hash of the item).

    Raises:
        ValueError: not a reply object.

    """
    return _dedup_key(_Reply.model_validate(item))


def _e164_or_raw(number: str) -> str:
    try:
        return to_e164(number)
    except ValueError:
        return number
