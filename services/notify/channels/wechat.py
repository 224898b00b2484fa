"""WeChat Official Account (Service Account) messages as a :class:`ChannelProvider`, over ``httpx``.

wechatpy has no asyncio, so this small client is written here:

* ``access_token`` from ``POST /cgi-bin/stable_token`` (normal mode: WeChat returns the same token while it is
  valid, so several notify instances share it), cached until 5 minutes before ``expires_in`` runs out, and
  refreshed with ``force_refresh`` when WeChat answers 40001 / 40014 / 42001 (then the request is tried once
  more). Source: developers.weixin.qq.com/doc/service/api/base/api_getstableaccesstoken.
* Template message ``POST /cgi-bin/message/template/send`` with ``client_msg_id`` = the message id: WeChat
  sends one message per openid and ``client_msg_id`` within 10 minutes (api_sendtemplatemessage.md).
* Or, with ``use_bizsend``, the subscribe notice ``POST /cgi-bin/message/subscribe/bizsend`` (no dedup key).
* Delivery: the ``TEMPLATESENDJOBFINISH`` event push (XML) correlates by ``MsgID`` = the send's ``msgid``.
* Replies on this channel are taps on the reply page (``url``); text a user types into the account's chat
  arrives as a ``text`` message push and is parsed as an :class:`Uplink` too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import xmltodict

from services.notify.channels._common import limiter
from services.notify.channels.base import (
    ChannelProvider,
    DeliveryReceipt,
    OutboundMessage,
    SendResult,
    Uplink,
)
from services.notify.channels.codes import TRANSPORT_ERROR, WECHAT_TOKEN_ERRORS, wechat_classify
from shared.logging import get_logger
from shared.vocabulary import Channel

__all__ = ["WeChatTemplate"]

log = get_logger(__name__)
CLIENT_MSG_ID_WINDOW = timedelta(minutes=10)
"""How long WeChat deduplicates a ``client_msg_id`` per openid."""
_TOKEN_EARLY_SECONDS = 300
_JSON = {"content-type": "application/json"}


class WeChatTemplate(ChannelProvider):
    """WeChat template messages (or subscribe notices).

    Args:
        http: the shared ``httpx.AsyncClient`` (injected; not closed here).
        base_url: ``http://127.0.0.1:8190`` (simulator) or ``https://api.weixin.qq.com``.
        app_id / app_secret: the Official Account's credentials.
        templates: ``template_id`` per :class:`MessageKind` value; ``template_params`` become
            ``data: {key: {value}}``.
        use_bizsend: send subscribe notices instead of template messages.
        rate_per_second: client-side request limit.
        concurrency: requests in flight at once.

    """

    name = "wechat"
    channel = Channel.WECHAT
    max_batch = 1

    def __init__(self, *, http: httpx.AsyncClient, base_url: str, app_id: str, app_secret: str,
                 templates: Mapping[str, str], use_bizsend: bool = False, rate_per_second: float = 200.0,
                 concurrency: int = 32, timeout_seconds: float = 5.0) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._app_id = app_id
        self._app_secret = app_secret
        self.templates = dict(templates)
        self.use_bizsend = use_bizsend
        self.rate_per_second = rate_per_second
        self._limiter = limiter(rate_per_second)
        self._slots = asyncio.Semaphore(concurrency)
        self._timeout = timeout_seconds
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = asyncio.Lock()
        self.token_fetches = 0
        """How many times a token was fetched (for tests and metrics)."""

    # --- access token -----------------------------------------------------------------------------------

    async def access_token(self, *, force_refresh: bool = False, stale: str | None = None) -> str:
        """The cached access token, fetched from ``stable_token`` when missing, near expiry or refused.

        Args:
            force_refresh: ask WeChat for a new token (after it refused ``stale``).
            stale: the token WeChat refused; if another task already replaced it, no second fetch happens.

        Raises:
            httpx.HTTPError: WeChat could not be reached.
            RuntimeError: WeChat refused the credentials (errcode in the message).

        """
        async with self._token_lock:
            if self._token and time.monotonic() < self._token_expires and not force_refresh:
                return self._token
            if force_refresh and stale is not None and self._token not in (None, stale):
                return self._token  # another task already refreshed
            response = await self._http.post(
                f"{self._base}/cgi-bin/stable_token", timeout=self._timeout,
                json={"grant_type": "client_credential", "appid": self._app_id, "secret": self._app_secret,
                      "force_refresh": force_refresh},
            )
            data = response.json()
            if "access_token" not in data:
                raise RuntimeError(f"stable_token refused: errcode={data.get('errcode')}")
            self.token_fetches += 1
            self._token = str(data["access_token"])
            lifetime = max(int(data.get("expires_in", 7200)) - _TOKEN_EARLY_SECONDS, 30)
            self._token_expires = time.monotonic() + lifetime
            return self._token

    # --- send -------------------------------------------------------------------------------------------

    async def send(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        """Send each message (one request each, concurrently); one result per message, in order."""
        return list(await asyncio.gather(*(self._send_one(m) for m in messages)))

    def _payload(self, m: OutboundMessage) -> tuple[str, dict[str, Any]]:
        data = {k: {"value": v} for k, v in m.template_params.items()}
        template_id = self.templates[str(m.kind)]
        if self.use_bizsend:
            body: dict[str, Any] = {"touser": m.recipient, "template_id": template_id, "data": data}
            if m.url:
                body["page"] = m.url
            return "/cgi-bin/message/subscribe/bizsend", body
        body = {"touser": m.recipient, "template_id": template_id, "data": data,
                "client_msg_id": str(m.message_id)}
        if m.url:
            body["url"] = m.url
        return "/cgi-bin/message/template/send", body

    async def _send_one(self, m: OutboundMessage) -> SendResult:
        path, body = self._payload(m)
        content = orjson.dumps(body)
        async with self._slots:
            stale: str | None = None
            for attempt in range(2):
                try:
                    token = await self.access_token(force_refresh=stale is not None, stale=stale)
                    async with self._limiter:
                        response = await self._http.post(
                            f"{self._base}{path}?access_token={quote(token, safe='')}", content=content,
                            headers=_JSON, timeout=self._timeout,
                        )
                    data = orjson.loads(response.content)
                except (httpx.HTTPError, ValueError, RuntimeError) as exc:
                    log.warning("wechat_request_failed", error_type=type(exc).__name__)
                    return SendResult(m.message_id, False, None, TRANSPORT_ERROR, retryable=True)
                errcode = int(data.get("errcode", 0))
                if errcode == 0:
                    return SendResult(m.message_id, True, str(data["msgid"]))
                if str(errcode) in WECHAT_TOKEN_ERRORS and attempt == 0:
                    stale = token
                    continue
                retryable, permanent = wechat_classify(errcode)
                return SendResult(m.message_id, False, None, str(errcode), retryable=retryable,
                                  recipient_permanent=permanent)
        raise AssertionError("unreachable")  # pragma: no cover

    async def query(self, message: OutboundMessage, sent_at: datetime) -> SendResult | None:
        """WeChat has no status query; within the ``client_msg_id`` window a re-send is deduplicated by WeChat.

        Returns the re-send's result while ``sent_at`` is less than 9 minutes ago (template messages only);
        None otherwise.
        """
        if self.use_bizsend or datetime.now(UTC) - sent_at > CLIENT_MSG_ID_WINDOW - timedelta(minutes=1):
            return None
        return (await self.send([message]))[0]

    # --- callbacks --------------------------------------------------------------------------------------

    @staticmethod
    def _parse_xml(body: bytes) -> dict[str, Any]:
        try:
            doc = xmltodict.parse(body, disable_entities=True)
        except Exception as exc:  # xmltodict raises expat errors of several types
            raise ValueError("not XML") from exc
        xml = doc.get("xml") if isinstance(doc, dict) else None
        if not isinstance(xml, dict) or "FromUserName" not in xml or "CreateTime" not in xml:
            raise ValueError("not a WeChat push")
        return xml

    def parse_receipts(self, body: bytes, content_type: str) -> list[DeliveryReceipt]:
        """Parse an event push; a ``TEMPLATESENDJOBFINISH`` event gives one receipt, other pushes none.

        ``Status`` is ``success``, ``failed:user block`` or ``failed: system failed``.

        Raises:
            ValueError: not a WeChat XML push, or a finish event without ``MsgID`` / ``Status``.

        """
        xml = self._parse_xml(body)
        if xml.get("MsgType") != "event" or xml.get("Event") != "TEMPLATESENDJOBFINISH":
            return []
        try:
            status = str(xml["Status"])
            return [DeliveryReceipt(
                provider_message_id=str(xml["MsgID"]), message_id=None, recipient=str(xml["FromUserName"]),
                delivered=status == "success", error_code=None if status == "success" else status,
                reported_at=datetime.fromtimestamp(int(xml["CreateTime"]), tz=UTC),
            )]
        except (KeyError, TypeError) as exc:
            raise ValueError("incomplete TEMPLATESENDJOBFINISH event") from exc

    def parse_uplinks(self, body: bytes, content_type: str) -> list[Uplink]:
        """Parse a ``text`` message push (a user typing into the account's chat); other pushes give none.

        Raises:
            ValueError: not a WeChat XML push.

        """
        xml = self._parse_xml(body)
        if xml.get("MsgType") != "text":
            return []
        sender = str(xml["FromUserName"])
        return [Uplink(provider="wechat", sender=sender, text=str(xml.get("Content") or ""),
                       received_at=datetime.fromtimestamp(int(xml["CreateTime"]), tz=UTC),
                       dedup_key=f"wechat:{xml.get('MsgId') or sender + ':' + str(xml['CreateTime'])}")]
