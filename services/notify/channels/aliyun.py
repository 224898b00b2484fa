"""Alibaba Cloud SMS (Dysmsapi 2017-05-25) as a :class:`ChannelProvider`, through the official async SDK.

* One message → ``SendSms`` with ``OutId`` = the message id (our idempotency key).
* Several messages of one kind → ``SendBatchSms`` (up to 100 numbers, per-number ``TemplateParamJson``) with
  ``OutId`` = ``b`` + a batch id (Aliyun has one ``OutId`` and one ``BizId`` per request).
* Aliyun's ``BizId`` is per request, so the per-message ``provider_message_id`` is ``"{OutId}:{digest}"``,
  ``digest`` = the first 20 hex digits of HMAC-SHA256 of the 11 national digits under ``id_key``: delivery
  receipts (``out_id`` + ``phone_number``) and ``QuerySendDetails`` records (``OutId`` + ``PhoneNum``) carry
  both, so every path yields the same id, and the id (stored in ``messages``/``early_receipts``, published on
  ``notify.delivery.v1``) does not carry the mobile (PIPL Art. 51; issue #14). 80 bits keep the ids of one
  batch (at most 100 numbers) apart.
* A batch refused with ``isv.MOBILE_NUMBER_ILLEGAL`` (Aliyun does not say which number) is re-sent one
  ``SendSms`` per message, so only the bad numbers fail. Nothing was accepted, so nothing is duplicated.

Sources: help.aliyun.com/document_detail/55284.html (SendSms), .../api-dysmsapi-2017-05-25-sendbatchsms,
document_detail/101867.html (SmsReport), .../smsup-http (SmsUp), error codes document_detail/101346.html.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from alibabacloud_dysmsapi20170525 import models as sms_models
from alibabacloud_dysmsapi20170525.client import Client as DysmsapiClient
from alibabacloud_tea_openapi.utils_models import Config
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from darabonba.exceptions import DaraException
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from Tea.exceptions import TeaException

from services.notify.channels._common import SHANGHAI, chunks, limiter, parse_local_time
from services.notify.channels.base import (
    ChannelProvider,
    DeliveryReceipt,
    OutboundMessage,
    SendResult,
    Uplink,
)
from services.notify.channels.codes import TRANSPORT_ERROR, aliyun_classify, to_e164, to_national
from shared.logging import get_logger
from shared.vocabulary import Channel

__all__ = ["AliyunSms", "aliyun_provider_message_id", "provider_id_key"]

log = get_logger(__name__)
_BATCH_PREFIX = "b"
# A send is stamped (``sending_since``) before its request reaches Aliyun, which files it under the Asia/Shanghai
# date it arrived on: one stamped this close to midnight is looked up on the next day too.
_IN_FLIGHT = timedelta(minutes=10)


_ID_DIGEST_HEX = 20


def provider_id_key(secret: str) -> bytes:
    """The HMAC key of the mobile digest in provider message ids, derived (HKDF-SHA256) from a secret."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"muster.notify.provider-id").derive(
        secret.encode())


def aliyun_provider_message_id(out_id: str, mobile: str, id_key: bytes) -> str:
    """The per-message id: ``"{OutId}:{keyed digest of the 11-digit mobile}"`` (see the module docstring).

    Raises:
        ValueError: ``mobile`` is not a mainland mobile.

    """
    digest = hmac.new(id_key, to_national(mobile).encode(), hashlib.sha256).hexdigest()[:_ID_DIGEST_HEX]
    return f"{out_id}:{digest}"


def _is_batch_id(out_id: str | None) -> bool:
    """A batch's OutId: ``b`` + 32 hex digits (a message's OutId is a UUID with dashes)."""
    return out_id is not None and len(out_id) == 33 and out_id.startswith(_BATCH_PREFIX)


def _message_id_of(out_id: str | None) -> UUID | None:
    if not out_id or _is_batch_id(out_id):
        return None
    try:
        return UUID(out_id)
    except ValueError:
        return None


class _Report(BaseModel):
    """One SmsReport item (document_detail/101867.html)."""

    model_config = ConfigDict(extra="ignore")
    phone_number: str
    send_time: str | None = None
    report_time: str
    success: bool
    err_code: str | None = None
    err_msg: str | None = None
    biz_id: str | None = None
    out_id: str | None = None


class _Up(BaseModel):
    """One SmsUp item (smsup-http; the older page's ``sign_name`` and numeric ``sequence_id`` accepted)."""

    model_config = ConfigDict(extra="ignore")
    phone_number: str
    content: str
    send_time: str
    dest_code: str | None = None
    sequence_id: str | int = Field(union_mode="left_to_right")
    sign_name: str | None = None


_REPORTS = TypeAdapter(list[_Report])
_UPS = TypeAdapter(list[_Up])


class AliyunSms(ChannelProvider):
    """Aliyun Dysmsapi SMS.

    Args:
        base_url: ``http://127.0.0.1:8190`` (simulator) or ``https://dysmsapi.aliyuncs.com``.
        access_key_id / access_key_secret: the RAM user's AccessKey (requests are signed ACS3-HMAC-SHA256
            by the SDK).
        sign_name: the approved signature, without ``【】``.
        templates: approved TemplateCode per :class:`MessageKind` value.
        rate_per_second: client-side request limit (Aliyun's own is 5,000 QPS per account).
        timeout_seconds: connect and read timeout.
        id_key: HMAC key of the mobile digest in ``provider_message_id`` (:func:`provider_id_key`); by default
            derived from ``access_key_secret``. Changing it orphans the ids of messages awaiting a receipt.

    """

    name = "aliyun"
    channel = Channel.SMS
    max_batch = 100

    def __init__(self, *, base_url: str, access_key_id: str, access_key_secret: str, sign_name: str,
                 templates: Mapping[str, str], rate_per_second: float = 100.0, timeout_seconds: float = 5.0,
                 id_key: bytes | None = None) -> None:
        parts = urlsplit(base_url)
        self._client = DysmsapiClient(Config(
            access_key_id=access_key_id, access_key_secret=access_key_secret, endpoint=parts.netloc,
            protocol=parts.scheme or "https", region_id="cn-hangzhou",
            read_timeout=int(timeout_seconds * 1000), connect_timeout=int(timeout_seconds * 1000),
        ))
        self.sign_name = sign_name
        self.templates = dict(templates)
        self.rate_per_second = rate_per_second
        self._limiter = limiter(rate_per_second)
        self._id_key = id_key if id_key is not None else provider_id_key(access_key_secret)

    def provider_message_id(self, out_id: str, mobile: str) -> str:
        """The account's id of the message ``out_id`` to ``mobile`` (:func:`aliyun_provider_message_id`)."""
        return aliyun_provider_message_id(out_id, mobile, self._id_key)

    # --- send -------------------------------------------------------------------------------------------

    async def send(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        """Send each message; one result per message, in order (see the module docstring for batching)."""
        results: dict[UUID, SendResult] = {}
        by_kind: dict[str, list[OutboundMessage]] = {}
        for m in messages:
            try:
                to_national(m.recipient)
            except ValueError:
                results[m.message_id] = SendResult(m.message_id, False, None, "isv.MOBILE_NUMBER_ILLEGAL",
                                                   retryable=False, recipient_permanent=True)
                continue
            by_kind.setdefault(str(m.kind), []).append(m)
        groups = [chunk for group in by_kind.values() for chunk in chunks(group, self.max_batch)]
        for batch_results in await asyncio.gather(*(self._send_chunk(c) for c in groups)):
            for r in batch_results:
                results[r.message_id] = r
        return [results[m.message_id] for m in messages]

    async def _send_chunk(self, chunk: Sequence[OutboundMessage]) -> list[SendResult]:
        if len(chunk) == 1:
            return [await self._send_one(chunk[0])]
        results = await self._send_batch(chunk)
        if results[0].error_code == "isv.MOBILE_NUMBER_ILLEGAL":
            singles = await asyncio.gather(*(self._send_one(m) for m in chunk))
            return list(singles)
        return results

    def _template(self, message: OutboundMessage) -> str:
        return self.templates[str(message.kind)]

    async def _send_one(self, m: OutboundMessage) -> SendResult:
        out_id = str(m.message_id)
        request = sms_models.SendSmsRequest(
            phone_numbers=to_national(m.recipient), sign_name=self.sign_name, template_code=self._template(m),
            template_param=json.dumps(dict(m.template_params), ensure_ascii=False), out_id=out_id,
        )
        code, biz_id = await self._call(lambda: self._client.send_sms_async(request))
        return self._result(m, code, out_id, biz_id)

    async def _send_batch(self, chunk: Sequence[OutboundMessage]) -> list[SendResult]:
        out_id = _BATCH_PREFIX + uuid.uuid4().hex
        request = sms_models.SendBatchSmsRequest(
            phone_number_json=json.dumps([to_national(m.recipient) for m in chunk]),
            sign_name_json=json.dumps([self.sign_name] * len(chunk), ensure_ascii=False),
            template_code=self._template(chunk[0]),
            template_param_json=json.dumps([dict(m.template_params) for m in chunk], ensure_ascii=False),
            out_id=out_id,
        )
        code, biz_id = await self._call(lambda: self._client.send_batch_sms_async(request))
        return [self._result(m, code, out_id, biz_id) for m in chunk]

    async def _call(self, fn: Any) -> tuple[str, str | None]:
        """Run one SDK call under the rate limit; ``(Code, BizId)``, transport failures as :data:`TRANSPORT_ERROR`."""
        async with self._limiter:
            try:
                response = await fn()
            except (TeaException, DaraException) as exc:  # HTTP 4xx/5xx answers and network errors
                code = getattr(exc, "code", None) or TRANSPORT_ERROR
                if code in ("UnretryableException", "RetryError"):
                    code = TRANSPORT_ERROR
                log.warning("aliyun_request_failed", code=code, error_type=type(exc).__name__)
                return code, None
            except (OSError, TimeoutError) as exc:
                log.warning("aliyun_request_failed", code=TRANSPORT_ERROR, error_type=type(exc).__name__)
                return TRANSPORT_ERROR, None
        body = response.body
        return body.code or "isp.SYSTEM_ERROR", body.biz_id

    def _result(self, m: OutboundMessage, code: str, out_id: str, biz_id: str | None) -> SendResult:
        if code == "OK":
            return SendResult(m.message_id, True, self.provider_message_id(out_id, m.recipient))
        retryable, permanent = aliyun_classify(code)
        return SendResult(m.message_id, False, None, code, retryable=retryable, recipient_permanent=permanent)

    # --- in-doubt resolution ----------------------------------------------------------------------------

    async def query(self, message: OutboundMessage, sent_at: datetime) -> SendResult | None:
        """Look the message up with ``QuerySendDetails`` (by mobile and the Asia/Shanghai send date).

        Aliyun files a send under the date it arrived (Asia/Shanghai): a send stamped (``sent_at``, UTC)
        less than 10 minutes before midnight is looked up on the next day too, once that day has begun.

        Returns accepted when a record carries our ``OutId`` (or, for a batch send, our template with all our
        template values in its content); not accepted when the provider has no record of this template
        to this number on those days; None when the provider cannot be asked (error) or the answer is ambiguous.
        """
        mobile = to_national(message.recipient)
        first = sent_at.astimezone(SHANGHAI).date()
        last = min(sent_at + _IN_FLIGHT, datetime.now(UTC)).astimezone(SHANGHAI).date()
        dtos: list[Any] = []
        for day in sorted({first, last}):
            request = sms_models.QuerySendDetailsRequest(phone_number=mobile, send_date=day.strftime("%Y%m%d"),
                                                         page_size=50, current_page=1)
            async with self._limiter:
                try:
                    response = await self._client.query_send_details_async(request)
                except (TeaException, DaraException, OSError, TimeoutError) as exc:
                    log.warning("aliyun_query_failed", error_type=type(exc).__name__)
                    return None
            body = response.body
            if body.code != "OK":
                return None
            dtos += body.sms_send_detail_dtos.sms_send_detail_dto if body.sms_send_detail_dtos else []
        template = self._template(message)
        values = [v for v in message.template_params.values() if v]
        candidates = [d for d in dtos if d.template_code == template]
        for d in candidates:
            if d.out_id == str(message.message_id):
                return SendResult(message.message_id, True, self.provider_message_id(d.out_id, mobile))
        for d in candidates:
            if _is_batch_id(d.out_id) and values and all(v in (d.content or "") for v in values):
                return SendResult(message.message_id, True, self.provider_message_id(d.out_id, mobile))
        if not candidates:
            return SendResult(message.message_id, False, None, "not_found", retryable=True)
        return None

    # --- callbacks --------------------------------------------------------------------------------------

    def parse_receipts(self, body: bytes, content_type: str) -> list[DeliveryReceipt]:
        """Parse an SmsReport push (JSON array).

        Raises:
            ValueError: not a JSON array of SmsReport items.

        """
        receipts = []
        for r in _REPORTS.validate_json(body):
            recipient = to_e164(r.phone_number)
            receipts.append(DeliveryReceipt(
                provider_message_id=self.provider_message_id(r.out_id, recipient) if r.out_id else None,
                message_id=_message_id_of(r.out_id),
                recipient=recipient,
                delivered=r.success,
                error_code=None if r.success else (r.err_code or "UNKNOWN"),
                reported_at=parse_local_time(r.report_time),
            ))
        return receipts

    def parse_uplinks(self, body: bytes, content_type: str) -> list[Uplink]:
        """Parse an SmsUp push (JSON array); ``dedup_key`` = ``aliyun:{sequence_id}``.

        Raises:
            ValueError: not a JSON array of SmsUp items, or a sender that is not a mainland mobile.

        """
        return [
            Uplink(provider="aliyun", sender=to_e164(u.phone_number), text=u.content,
                   received_at=parse_local_time(u.send_time), dedup_key=f"aliyun:{u.sequence_id}")
            for u in _UPS.validate_json(body)
        ]
