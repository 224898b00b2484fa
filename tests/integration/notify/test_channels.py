"""The provider adapters against the simulator over real HTTP (free ports, official SDKs signing)."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest
from wechatpy.utils import check_signature

from services.notify.channels import ChannelProvider, OutboundMessage, build_providers, provider_by_name
from services.notify.channels._common import SHANGHAI
from services.notify.channels.codes import TRANSPORT_ERROR
from shared.events import MessageKind
from shared.vocabulary import Channel
from simulator.testing import SimHarness, running_simulator


@pytest.fixture(scope="module")
async def sim() -> AsyncIterator[SimHarness]:
    async with running_simulator() as harness:
        yield harness


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
async def fresh(sim: SimHarness) -> SimHarness:
    await sim.reset()
    return sim


def _mobile() -> str:
    return f"+86139{uuid.uuid4().int % 10**8:08d}"


def _openid() -> str:
    return "o" + hashlib.sha256(uuid.uuid4().bytes).hexdigest()[:27]


def _msg(recipient: str, code: str = "1", kind: MessageKind = MessageKind.CALLOUT, **kw: object) -> OutboundMessage:
    return OutboundMessage(uuid.uuid4(), recipient, kind, f"回复{code}接受", {"code": code}, **kw)  # type: ignore[arg-type]


async def _phone(sim: SimHarness, recipient: str) -> list[dict[str, object]]:
    response = await sim.http.get(f"{sim.url}/sim/phones/{recipient}/messages")
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


async def _provider(sim: SimHarness, http: httpx.AsyncClient, name: str, **overrides: object) -> ChannelProvider:
    return provider_by_name(sim.notify_settings(**overrides), http, name)


# --- registry -----------------------------------------------------------------------------------------


async def test_registry_gives_the_active_sms_channel_and_wechat(sim: SimHarness, http: httpx.AsyncClient) -> None:
    providers = build_providers(sim.notify_settings(sms_provider="tencent"), http)
    assert providers[Channel.SMS].name == "tencent"
    assert providers[Channel.WECHAT].name == "wechat"
    assert build_providers(sim.notify_settings(), http)[Channel.SMS].name == "aliyun"
    for p in providers.values():
        await p.aclose()


# --- Aliyun -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["aliyun", "tencent"])
async def test_sms_single_send_reaches_the_phone_and_its_receipt_parses_back(
    fresh: SimHarness, http: httpx.AsyncClient, name: str
) -> None:
    provider = await _provider(fresh, http, name)
    mobile = _mobile()
    message = _msg(mobile, "7")
    [result] = await provider.send([message])
    assert result.accepted and result.provider_message_id and result.error_code is None
    [seen] = await _phone(fresh, mobile)
    assert seen["out_id"] == str(message.message_id)
    assert seen["provider"] == name and "7" in str(seen["text"])
    route = "report" if name == "aliyun" else "status"
    national = mobile[3:].encode()
    pushes = await fresh.receiver.wait_for(lambda r: any(c.path.endswith(route) and national in c.body for c in r))
    [push] = [c for c in pushes if c.path.endswith(route) and national in c.body]
    assert push.path == f"/callbacks/{name}/{fresh.settings.callback_token.get_secret_value()}/{route}"
    [receipt] = provider.parse_receipts(push.body, push.content_type)
    assert receipt.provider_message_id == result.provider_message_id
    assert receipt.message_id == message.message_id
    assert receipt.recipient == mobile and receipt.delivered
    assert abs((receipt.reported_at - datetime.now(UTC)).total_seconds()) < 60
    await provider.aclose()


@pytest.mark.parametrize("name", ["aliyun", "tencent"])
async def test_sms_fan_out_is_batched_and_every_message_gets_its_own_id(
    fresh: SimHarness, http: httpx.AsyncClient, name: str
) -> None:
    provider = await _provider(fresh, http, name)
    # Tencent batches only equal template values; Aliyun batches per-recipient values.
    messages = [_msg(_mobile(), "1" if name == "tencent" else str(i)) for i in range(250)]
    results = await provider.send(messages)
    assert [r.message_id for r in results] == [m.message_id for m in messages]
    assert all(r.accepted for r in results)
    assert len({r.provider_message_id for r in results}) == 250
    stats = (await fresh.http.get(f"{fresh.url}/sim/stats")).json()
    assert stats[f"requests.{name}"] == (3 if name == "aliyun" else 2)  # 100+100+50 / 200+50 numbers
    await fresh.receiver.wait_for(lambda r: sum(len(orjson.loads(c.body)) for c in r) >= 250)
    ids = {rc.provider_message_id for c in fresh.received for rc in provider.parse_receipts(c.body, c.content_type)}
    assert ids == {r.provider_message_id for r in results}
    await provider.aclose()


@pytest.mark.parametrize("name", ["aliyun", "tencent"])
async def test_rate_limit_is_retryable_and_a_later_send_delivers_once(
    fresh: SimHarness, http: httpx.AsyncClient, name: str
) -> None:
    provider = await _provider(fresh, http, name)
    mobile = _mobile()
    message = _msg(mobile)
    await fresh.http.post(f"{fresh.url}/sim/faults", json={"rate_limit": {name: 1}})
    [refused] = await provider.send([message])
    assert not refused.accepted and refused.retryable and not refused.recipient_permanent
    assert refused.error_code == ("isv.BUSINESS_LIMIT_CONTROL" if name == "aliyun" else "LimitExceeded.DeliveryFrequencyLimit")
    assert await _phone(fresh, mobile) == []
    [accepted] = await provider.send([message])
    assert accepted.accepted
    assert len(await _phone(fresh, mobile)) == 1
    await provider.aclose()


@pytest.mark.parametrize("name", ["aliyun", "tencent"])
async def test_an_invalid_number_in_a_batch_fails_alone(fresh: SimHarness, http: httpx.AsyncClient, name: str) -> None:
    provider = await _provider(fresh, http, name)
    mobiles = [_mobile() for _ in range(5)]
    await fresh.http.post(f"{fresh.url}/sim/faults", json={"invalid_numbers": [mobiles[2]]})
    results = await provider.send([_msg(m, "1") for m in mobiles])
    assert [r.accepted for r in results] == [True, True, False, True, True]
    assert results[2].recipient_permanent and not results[2].retryable
    assert results[2].error_code in ("isv.MOBILE_NUMBER_ILLEGAL", "InvalidParameterValue.IncorrectPhoneNumber")
    for m, expected in zip(mobiles, [1, 1, 0, 1, 1], strict=True):
        assert len(await _phone(fresh, m)) == expected
    await provider.aclose()


async def test_a_malformed_number_is_refused_without_a_request(fresh: SimHarness, http: httpx.AsyncClient) -> None:
    provider = await _provider(fresh, http, "aliyun")
    [result] = await provider.send([_msg("+1555000111")])
    assert result.recipient_permanent and result.error_code == "isv.MOBILE_NUMBER_ILLEGAL"
    assert (await fresh.http.get(f"{fresh.url}/sim/stats")).json().get("requests.aliyun", 0) == 0


@pytest.mark.parametrize(("name", "code"), [("aliyun", "SignatureDoesNotMatch"),
                                            ("tencent", "AuthFailure.SignatureFailure")])
async def test_a_wrong_secret_is_refused_with_the_providers_error(
    fresh: SimHarness, http: httpx.AsyncClient, name: str, code: str
) -> None:
    field = "aliyun_access_key_secret" if name == "aliyun" else "tencent_secret_key"
    provider = await _provider(fresh, http, name, **{field: "not-the-secret"})
    mobile = _mobile()
    [result] = await provider.send([_msg(mobile)])
    assert (result.accepted, result.error_code, result.retryable, result.recipient_permanent) == (False, code, False, False)
    assert await _phone(fresh, mobile) == []
    await provider.aclose()


@pytest.mark.parametrize("name", ["aliyun", "tencent", "wechat"])
async def test_an_unreachable_provider_is_a_retryable_transport_error(http: httpx.AsyncClient, sim: SimHarness,
                                                                      name: str) -> None:
    dead = "http://127.0.0.1:9"  # discard port: connection refused
    provider = await _provider(sim, http, name, aliyun_base_url=dead, tencent_base_url=dead, wechat_base_url=dead,
                               provider_timeout_seconds=1.0)
    recipient = _openid() if name == "wechat" else _mobile()
    [result] = await provider.send([_msg(recipient)])
    assert (result.accepted, result.error_code, result.retryable) == (False, TRANSPORT_ERROR, True)
    await provider.aclose()


async def test_aliyun_query_finds_single_and_batch_sends_and_knows_an_unsent_one(
    fresh: SimHarness, http: httpx.AsyncClient
) -> None:
    provider = await _provider(fresh, http, "aliyun")
    single, a, b = _msg(_mobile(), "11"), _msg(_mobile(), "12"), _msg(_mobile(), "13")
    before = datetime.now(UTC)
    [r_single] = await provider.send([single])
    r_a, r_b = await provider.send([a, b])
    found = await provider.query(single, before)
    assert found is not None and found.accepted and found.provider_message_id == r_single.provider_message_id
    found_b = await provider.query(b, before)
    assert found_b is not None and found_b.accepted and found_b.provider_message_id == r_b.provider_message_id
    never = await provider.query(_msg(_mobile(), "14"), before)
    assert never is not None and not never.accepted


async def test_aliyun_query_finds_a_send_the_provider_filed_under_the_next_day(
    fresh: SimHarness, http: httpx.AsyncClient
) -> None:
    """A send stamped just before midnight (Asia/Shanghai) reaches the provider after it, which files it under
    the next day. The query asked the stamp's day only: "not sent", and the in-doubt message went out again.
    (The test above would fail this way if it ran across 16:00 UTC, midnight in Shanghai.)"""
    provider = await _provider(fresh, http, "aliyun")
    message = _msg(_mobile(), "15")
    [sent] = await provider.send([message])  # filed under today, Asia/Shanghai
    today = datetime.now(SHANGHAI).replace(hour=0, minute=0, second=0, microsecond=0)
    stamped = today - timedelta(milliseconds=1)  # stamped as sending a moment before today began
    found = await provider.query(message, stamped)
    assert found is not None and found.accepted and found.provider_message_id == sent.provider_message_id
    never = await provider.query(_msg(_mobile(), "16"), stamped)  # on neither day: not sent
    assert never is not None and not never.accepted


async def test_tencent_query_finds_a_send_by_its_session_context(fresh: SimHarness, http: httpx.AsyncClient) -> None:
    provider = await _provider(fresh, http, "tencent")
    message = _msg(_mobile())
    before = datetime.now(UTC)
    [sent] = await provider.send([message])
    found = await provider.query(message, before)
    assert found is not None and found.accepted and found.provider_message_id == sent.provider_message_id
    assert await provider.query(_msg(_mobile()), before) is None
    await provider.aclose()


@pytest.mark.parametrize("name", ["aliyun", "tencent"])
async def test_a_phone_reply_arrives_as_the_providers_uplink(fresh: SimHarness, http: httpx.AsyncClient,
                                                             name: str) -> None:
    provider = await _provider(fresh, http, name)
    mobile = _mobile()
    await provider.send([_msg(mobile)])
    answer = (await fresh.http.post(f"{fresh.url}/sim/phones/{mobile}/reply", json={"text": "１ 好的👍"})).json()
    assert answer["provider"] == name
    route = "up" if name == "aliyun" else "reply"
    pushes = await fresh.receiver.wait_for(lambda r: any(c.path.endswith("/" + route) for c in r))
    push = next(c for c in pushes if c.path.endswith("/" + route))
    [uplink] = provider.parse_uplinks(push.body, push.content_type)
    assert (uplink.provider, uplink.sender, uplink.text) == (name, mobile, "１ 好的👍")
    assert uplink.dedup_key == answer["dedup_id"]
    assert provider.parse_uplinks(push.body, push.content_type)[0].dedup_key == uplink.dedup_key  # stable on replay
    await provider.aclose()


# --- WeChat -------------------------------------------------------------------------------------------


async def test_wechat_template_send_caches_the_token_and_pushes_a_signed_receipt(
    fresh: SimHarness, http: httpx.AsyncClient
) -> None:
    provider = await _provider(fresh, http, "wechat")
    openids = [_openid() for _ in range(5)]
    results = await provider.send([_msg(o, url="http://127.0.0.1:8103/r/tok") for o in openids])
    assert all(r.accepted for r in results)
    assert provider.token_fetches == 1  # type: ignore[attr-defined]
    [seen] = await _phone(fresh, openids[0])
    assert seen["url"] == "http://127.0.0.1:8103/r/tok" and seen["channel"] == "wechat"
    pushes = await fresh.receiver.wait_for(lambda r: len(r) >= 5)
    token = fresh.settings.callback_token.get_secret_value()  # type: ignore[union-attr]
    receipts = []
    for push in pushes:
        q = push.query
        check_signature(token, q["signature"], q["timestamp"], q["nonce"])  # raises if forged
        receipts += provider.parse_receipts(push.body, push.content_type)
    assert {r.provider_message_id for r in receipts} == {r.provider_message_id for r in results}
    assert all(r.delivered and r.recipient in openids for r in receipts)


async def test_wechat_refreshes_an_expired_token_and_sends(fresh: SimHarness, http: httpx.AsyncClient) -> None:
    provider = await _provider(fresh, http, "wechat")
    assert (await provider.send([_msg(_openid())]))[0].accepted
    await fresh.http.post(f"{fresh.url}/sim/faults", json={"expire_wechat_tokens": True})
    results = await provider.send([_msg(_openid()) for _ in range(3)])
    assert all(r.accepted for r in results)
    assert provider.token_fetches == 2  # type: ignore[attr-defined]  # one refresh for three concurrent sends


@pytest.mark.parametrize(("fault", "code"), [("not_following", "43004"), ("invalid_numbers", "40003")])
async def test_wechat_permanent_recipient_errors(fresh: SimHarness, http: httpx.AsyncClient, fault: str,
                                                 code: str) -> None:
    provider = await _provider(fresh, http, "wechat")
    openid = _openid()
    await fresh.http.post(f"{fresh.url}/sim/faults", json={fault: [openid]})
    [result] = await provider.send([_msg(openid)])
    assert (result.accepted, result.error_code, result.recipient_permanent, result.retryable) == (False, code, True, False)


async def test_wechat_bizsend_refused_subscription_is_permanent(fresh: SimHarness, http: httpx.AsyncClient) -> None:
    provider = await _provider(fresh, http, "wechat", wechat_use_bizsend=True)
    ok, refused = _openid(), _openid()
    await fresh.http.post(f"{fresh.url}/sim/faults", json={"refused": [refused]})
    r_ok, r_refused = await provider.send([_msg(ok, url="http://x/r/1"), _msg(refused)])
    assert r_ok.accepted and (await _phone(fresh, ok))[0]["url"] == "http://x/r/1"
    assert (r_refused.error_code, r_refused.recipient_permanent) == ("43101", True)


async def test_wechat_client_msg_id_sends_once_and_query_resolves_in_doubt(
    fresh: SimHarness, http: httpx.AsyncClient
) -> None:
    provider = await _provider(fresh, http, "wechat")
    openid = _openid()
    message = _msg(openid)
    [first] = await provider.send([message])
    again = await provider.query(message, datetime.now(UTC))
    [third] = await provider.send([message])
    assert again is not None and again.accepted
    assert first.provider_message_id == again.provider_message_id == third.provider_message_id
    assert len(await _phone(fresh, openid)) == 1


async def test_concurrent_sends_of_many_messages_keep_order(fresh: SimHarness, http: httpx.AsyncClient) -> None:
    provider = await _provider(fresh, http, "wechat")
    messages = [_msg(_openid()) for _ in range(50)]
    results = await asyncio.wait_for(provider.send(messages), 20)
    assert [r.message_id for r in results] == [m.message_id for m in messages]
    assert all(r.accepted for r in results)
