"""The WeChat adapter's token cache and refresh, against httpx.MockTransport (no network)."""

from __future__ import annotations

import json
import uuid

import httpx

from services.notify.channels.base import OutboundMessage
from services.notify.channels.wechat import WeChatTemplate
from shared.events import MessageKind

OPENID = "oABCDEFGHIJKLMNOPQRSTUVWXYZ0"


class FakeWeChat:
    """Answers stable_token and template/send like WeChat; tokens listed in ``expired`` get 42001."""

    def __init__(self) -> None:
        self.issued: list[str] = []
        self.expired: set[str] = set()
        self.force_refreshes = 0
        self.sends: list[dict[str, object]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/cgi-bin/stable_token":
            body = json.loads(request.content)
            assert body["grant_type"] == "client_credential" and body["appid"] == "wx1"
            self.force_refreshes += bool(body["force_refresh"])
            if not self.issued or body["force_refresh"] or self.issued[-1] in self.expired:
                self.issued.append(f"T{len(self.issued)}")
            return httpx.Response(200, json={"access_token": self.issued[-1], "expires_in": 7200})
        if request.url.path == "/cgi-bin/message/template/send":
            token = request.url.params["access_token"]
            if token in self.expired:
                return httpx.Response(200, json={"errcode": 42001, "errmsg": "access_token expired"})
            self.sends.append(json.loads(request.content))
            return httpx.Response(200, json={"errcode": 0, "errmsg": "ok", "msgid": 1000 + len(self.sends)})
        return httpx.Response(404)


def _provider(fake: FakeWeChat) -> WeChatTemplate:
    http = httpx.AsyncClient(transport=httpx.MockTransport(fake))
    return WeChatTemplate(http=http, base_url="https://api.weixin.qq.com", app_id="wx1", app_secret="secret",
                          templates={"callout": "TPL1"})


def _msg() -> OutboundMessage:
    return OutboundMessage(uuid.uuid4(), OPENID, MessageKind.CALLOUT, "t", {"thing1": "演练"}, url="https://x/r/1")


async def test_token_is_fetched_once_and_reused() -> None:
    fake = FakeWeChat()
    provider = _provider(fake)
    results = await provider.send([_msg() for _ in range(5)])
    assert all(r.accepted for r in results)
    assert provider.token_fetches == 1 and fake.issued == ["T0"]


async def test_expired_token_is_force_refreshed_once_and_the_send_retried() -> None:
    fake = FakeWeChat()
    provider = _provider(fake)
    await provider.send([_msg()])
    fake.expired.add("T0")
    results = await provider.send([_msg() for _ in range(4)])
    assert all(r.accepted for r in results)
    assert fake.issued == ["T0", "T1"] and fake.force_refreshes == 1


async def test_payload_carries_client_msg_id_url_and_data() -> None:
    fake = FakeWeChat()
    message = _msg()
    await _provider(fake).send([message])
    [sent] = fake.sends
    assert sent == {"touser": OPENID, "template_id": "TPL1", "data": {"thing1": {"value": "演练"}},
                    "client_msg_id": str(message.message_id), "url": "https://x/r/1"}


async def test_a_token_refused_twice_is_reported_not_looped() -> None:
    fake = FakeWeChat()
    provider = _provider(fake)

    def always_expired(request: httpx.Request) -> httpx.Response:
        response = fake(request)
        if request.url.path.endswith("/send"):
            return httpx.Response(200, json={"errcode": 40001, "errmsg": "invalid credential"})
        return response

    provider._http = httpx.AsyncClient(transport=httpx.MockTransport(always_expired))  # noqa: SLF001
    [result] = await provider.send([_msg()])
    assert (result.accepted, result.error_code, result.retryable) == (False, "40001", True)
    assert len(fake.issued) == 2  # the first fetch and one forced refresh, no more
