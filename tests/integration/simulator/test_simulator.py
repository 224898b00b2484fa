"""The simulator as a provider: signature and parameter checks, faults, callbacks, phone API, its own log.

Requests here are signed by hand with the published algorithms (the SDK paths are covered by
tests/integration/notify/test_channels.py), so that wrong, expired and replayed signatures can be sent.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from simulator.signing import aliyun_rpc_v1_signature, tc3_signature
from simulator.testing import SimHarness, running_simulator


@pytest.fixture(scope="module")
async def log_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sim") / "delivered.jsonl"


@pytest.fixture(scope="module")
async def sim(log_path: Path) -> AsyncIterator[SimHarness]:
    async with running_simulator(log_path=log_path, callback_minute_seconds=0.05) as harness:
        yield harness


@pytest.fixture
async def fresh(sim: SimHarness) -> SimHarness:
    await sim.reset()
    return sim


def _mobile() -> str:
    return f"139{uuid.uuid4().int % 10**8:08d}"


def _stamp(offset: float = 0) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset))


async def aliyun_v1(sim: SimHarness, action: str, params: dict[str, str], *, secret: str | None = None,
                    stamp: str | None = None, nonce: str | None = None) -> httpx.Response:
    """An RPC V1 (HMAC-SHA1) signed GET, as in the SMS document's example."""
    full = {
        "AccessKeyId": sim.settings.aliyun_access_key_id, "Action": action, "Format": "JSON",
        "RegionId": "cn-hangzhou", "SignatureMethod": "HMAC-SHA1", "SignatureNonce": nonce or uuid.uuid4().hex,
        "SignatureVersion": "1.0", "Timestamp": stamp or _stamp(), "Version": "2017-05-25", **params,
    }
    key = secret or sim.settings.aliyun_access_key_secret.get_secret_value()  # type: ignore[union-attr]
    full["Signature"] = aliyun_rpc_v1_signature("GET", full, key)
    return await sim.http.get(f"{sim.url}/", params=full)


async def tencent(sim: SimHarness, action: str, params: dict[str, Any], *, secret: str | None = None,
                  timestamp: int | None = None) -> dict[str, Any]:
    """A TC3-HMAC-SHA256 signed POST, as Tencent's API 3.0 document describes."""
    body = json.dumps(params).encode()
    ts = timestamp or int(time.time())
    host = sim.url.removeprefix("http://")
    headers = {"Content-Type": "application/json; charset=utf-8", "Host": host, "X-TC-Action": action,
               "X-TC-Timestamp": str(ts), "X-TC-Version": "2021-01-11"}
    key = secret or sim.settings.tencent_secret_key.get_secret_value()  # type: ignore[union-attr]
    sig = tc3_signature(method="POST", path="/", query="", headers=headers, signed_headers=("content-type", "host"),
                        payload=body, timestamp=ts, service="sms", secret_key=key)
    date = time.strftime("%Y-%m-%d", time.gmtime(ts))
    headers["Authorization"] = (f"TC3-HMAC-SHA256 Credential={sim.settings.tencent_secret_id}/{date}/sms/tc3_request, "
                                f"SignedHeaders=content-type;host, Signature={sig}")
    response = await sim.http.post(f"{sim.url}/", content=body, headers=headers)
    assert response.status_code == 200
    return response.json()["Response"]  # type: ignore[no-any-return]


def _send(numbers: list[str], **extra: str) -> dict[str, str]:
    return {"PhoneNumbers": ",".join(numbers), "SignName": "红十字志愿者", "TemplateCode": "SMS_900001",
            "TemplateParam": '{"code":"1"}', "OutId": str(uuid.uuid4()), **extra}


# --- Aliyun: signatures ---------------------------------------------------------------------------------


async def test_aliyun_v1_signed_send_is_accepted(fresh: SimHarness) -> None:
    mobile = _mobile()
    response = await aliyun_v1(fresh, "SendSms", _send([mobile]))
    assert response.status_code == 200 and response.json()["Code"] == "OK"
    assert response.json()["BizId"].endswith("^0")


async def test_aliyun_forged_signature_is_refused_and_nothing_is_sent(fresh: SimHarness) -> None:
    mobile = _mobile()
    response = await aliyun_v1(fresh, "SendSms", _send([mobile]), secret="forged")
    assert response.status_code == 403 and response.json()["Code"] == "SignatureDoesNotMatch"
    assert (await fresh.http.get(f"{fresh.url}/sim/phones/{mobile}/messages")).json() == []


async def test_aliyun_expired_timestamp_and_replayed_nonce_are_refused(fresh: SimHarness) -> None:
    old = await aliyun_v1(fresh, "SendSms", _send([_mobile()]), stamp=_stamp(-16 * 60))
    assert (old.status_code, old.json()["Code"]) == (400, "InvalidTimeStamp.Expired")
    nonce = uuid.uuid4().hex
    first = await aliyun_v1(fresh, "SendSms", _send([_mobile()]), nonce=nonce)
    replay = await aliyun_v1(fresh, "SendSms", _send([_mobile()]), nonce=nonce)
    assert first.json()["Code"] == "OK"
    assert (replay.status_code, replay.json()["Code"]) == (400, "SignatureNonceUsed")


async def test_aliyun_unsigned_request_is_refused(fresh: SimHarness) -> None:
    response = await fresh.http.get(f"{fresh.url}/", params={"Action": "SendSms", **_send([_mobile()])})
    assert response.status_code == 400 and response.json()["Code"] == "MissingSignature"


# --- Aliyun: parameters ---------------------------------------------------------------------------------


async def test_aliyun_missing_parameter(fresh: SimHarness) -> None:
    params = _send([_mobile()])
    del params["PhoneNumbers"]
    response = await aliyun_v1(fresh, "SendSms", params)
    assert (response.status_code, response.json()["Code"]) == (400, "MissingPhoneNumbers")


async def test_aliyun_number_limits(fresh: SimHarness) -> None:
    over = await aliyun_v1(fresh, "SendSms", _send([_mobile() for _ in range(1001)]))
    assert over.json()["Code"] == "isv.MOBILE_COUNT_OVER_LIMIT"
    numbers = [_mobile() for _ in range(101)]
    batch = {"PhoneNumberJson": json.dumps(numbers), "SignNameJson": json.dumps(["红十字志愿者"] * 101),
             "TemplateCode": "SMS_900001", "TemplateParamJson": json.dumps([{"code": "1"}] * 101)}
    assert (await aliyun_v1(fresh, "SendBatchSms", batch)).json()["Code"] == "isv.MOBILE_COUNT_OVER_LIMIT"
    ok = await aliyun_v1(fresh, "SendSms", _send([_mobile() for _ in range(1000)]))
    assert ok.json()["Code"] == "OK"


async def test_aliyun_template_values_must_be_strings(fresh: SimHarness) -> None:
    response = await aliyun_v1(fresh, "SendSms", _send([_mobile()], TemplateParam='{"code": 1}'))
    assert response.json()["Code"] == "isv.INVALID_JSON_PARAM"


async def test_aliyun_batch_arrays_must_align(fresh: SimHarness) -> None:
    batch = {"PhoneNumberJson": json.dumps([_mobile(), _mobile()]), "SignNameJson": json.dumps(["红十字志愿者"]),
             "TemplateCode": "SMS_900001", "TemplateParamJson": json.dumps([{"code": "1"}] * 2)}
    assert (await aliyun_v1(fresh, "SendBatchSms", batch)).json()["Code"] == "isv.INVALID_JSON_PARAM"


async def test_aliyun_query_send_details_returns_out_id(fresh: SimHarness) -> None:
    mobile = _mobile()
    params = _send([mobile])
    await aliyun_v1(fresh, "SendSms", params)
    day = time.strftime("%Y%m%d", time.gmtime(time.time() + 8 * 3600))
    response = await aliyun_v1(fresh, "QuerySendDetails",
                               {"PhoneNumber": mobile, "SendDate": day, "PageSize": "10", "CurrentPage": "1"})
    body = response.json()
    assert body["Code"] == "OK" and body["TotalCount"] == 1
    [record] = body["SmsSendDetailDTOs"]["SmsSendDetailDTO"]
    assert record["OutId"] == params["OutId"] and record["SendStatus"] == 3


# --- Tencent ----------------------------------------------------------------------------------------------


def _tencent_send(numbers: list[str], **extra: Any) -> dict[str, Any]:
    return {"PhoneNumberSet": numbers, "SmsSdkAppId": "1400006666", "SignName": "红十字志愿者", "TemplateId": "1900001",
            "TemplateParamSet": ["1"], "SessionContext": str(uuid.uuid4()), **extra}


async def test_tencent_signatures(fresh: SimHarness) -> None:
    ok = await tencent(fresh, "SendSms", _tencent_send(["+86" + _mobile()]))
    assert ok["SendStatusSet"][0]["Code"] == "Ok"
    forged = await tencent(fresh, "SendSms", _tencent_send(["+86" + _mobile()]), secret="forged")
    assert forged["Error"]["Code"] == "AuthFailure.SignatureFailure"
    old = await tencent(fresh, "SendSms", _tencent_send(["+86" + _mobile()]), timestamp=int(time.time()) - 600)
    assert old["Error"]["Code"] == "AuthFailure.SignatureExpire"


async def test_tencent_parameters(fresh: SimHarness) -> None:
    missing = await tencent(fresh, "SendSms", {"SmsSdkAppId": "1400006666", "TemplateId": "1"})
    assert missing["Error"]["Code"] == "MissingParameter"
    over = await tencent(fresh, "SendSms", _tencent_send(["+86" + _mobile() for _ in range(201)]))
    assert over["Error"]["Code"] == "LimitExceeded.PhoneNumberCountLimit"
    app = await tencent(fresh, "SendSms", _tencent_send(["+86" + _mobile()], SmsSdkAppId="1400000000"))
    assert app["Error"]["Code"] == "InvalidParameterValue.SdkAppIdNotExist"
    mixed = await tencent(fresh, "SendSms", _tencent_send(["+86" + _mobile(), "+8612345"]))
    assert [s["Code"] for s in mixed["SendStatusSet"]] == ["Ok", "InvalidParameterValue.IncorrectPhoneNumber"]
    assert mixed["SendStatusSet"][1]["SerialNo"] == ""


# --- WeChat -----------------------------------------------------------------------------------------------


async def test_wechat_tokens(fresh: SimHarness) -> None:
    s = fresh.settings
    secret = s.wechat_app_secret.get_secret_value()  # type: ignore[union-attr]
    wrong = (await fresh.http.get(f"{fresh.url}/cgi-bin/token", params={
        "grant_type": "client_credential", "appid": s.wechat_app_id, "secret": "nope"})).json()
    assert wrong["errcode"] == 40125
    body = {"grant_type": "client_credential", "appid": s.wechat_app_id, "secret": secret}
    a = (await fresh.http.post(f"{fresh.url}/cgi-bin/stable_token", json=body)).json()
    b = (await fresh.http.post(f"{fresh.url}/cgi-bin/stable_token", json=body)).json()
    c = (await fresh.http.post(f"{fresh.url}/cgi-bin/stable_token", json={**body, "force_refresh": True})).json()
    assert a["access_token"] == b["access_token"] != c["access_token"]
    send = {"touser": "o" + "x" * 27, "template_id": "TPL_callout", "data": {"code": {"value": "1"}}}
    url = f"{fresh.url}/cgi-bin/message/template/send"
    bad = (await fresh.http.post(url, params={"access_token": "nope"}, json=send)).json()
    assert bad["errcode"] == 40001
    ok = (await fresh.http.post(url, params={"access_token": c["access_token"]}, json=send)).json()
    assert ok["errcode"] == 0 and ok["msgid"] > 0
    await fresh.http.post(f"{fresh.url}/sim/faults", json={"expire_wechat_tokens": True})
    expired = (await fresh.http.post(url, params={"access_token": c["access_token"]}, json=send)).json()
    assert expired["errcode"] == 42001
    malformed = (await fresh.http.post(url, params={"access_token": (await fresh.http.post(
        f"{fresh.url}/cgi-bin/stable_token", json=body)).json()["access_token"]}, content=b"{not json")).json()
    assert malformed["errcode"] == 47001


# --- callbacks, faults, phone API, log --------------------------------------------------------------------


async def test_receipts_are_retried_until_notify_answers(fresh: SimHarness) -> None:
    fresh.receiver.fail = 2
    mobile = _mobile()
    await aliyun_v1(fresh, "SendSms", _send([mobile]))
    pushes = await fresh.receiver.wait_for(lambda r: len(r) >= 1)
    [item] = orjson.loads(pushes[0].body)
    assert item["phone_number"] == mobile and item["success"] is True and item["err_code"] == "DELIVERED"
    stats = (await fresh.http.get(f"{fresh.url}/sim/stats")).json()
    assert stats["callback_failures"] == 2 and stats["receipts_sent"] == 1


async def test_fail_callbacks_fault_and_giving_up(fresh: SimHarness) -> None:
    await fresh.http.post(f"{fresh.url}/sim/faults", json={"fail_callbacks": 4})  # Aliyun: 1 try + 3 re-pushes
    await aliyun_v1(fresh, "SendSms", _send([_mobile()]))
    pusher = fresh.app.state.runtime["pusher"]
    await pusher.drain(timeout=10)
    stats = (await fresh.http.get(f"{fresh.url}/sim/stats")).json()
    assert stats["callbacks_given_up"] == 1 and stats.get("receipts_sent", 0) == 0
    assert fresh.received == []


async def test_withheld_receipts_are_not_pushed(fresh: SimHarness) -> None:
    held, normal = _mobile(), _mobile()
    await fresh.http.post(f"{fresh.url}/sim/faults", json={"withhold_receipts": ["+86" + held]})
    await aliyun_v1(fresh, "SendSms", _send([held, normal]))
    await fresh.app.state.runtime["pusher"].drain(timeout=10)
    phones = [item["phone_number"] for c in fresh.received for item in orjson.loads(c.body)]
    assert phones == [normal]


async def test_message_feed_long_polls(fresh: SimHarness) -> None:
    start = (await fresh.http.get(f"{fresh.url}/sim/messages", params={"after": 0})).json()["last_seq"]
    waiting = asyncio.create_task(fresh.http.get(f"{fresh.url}/sim/messages",
                                                 params={"after": start, "wait": 5, "limit": 10}))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    mobile = _mobile()
    await aliyun_v1(fresh, "SendSms", _send([mobile]))
    feed = (await asyncio.wait_for(waiting, 5)).json()
    assert [m["recipient"] for m in feed["messages"]] == ["+86" + mobile]
    assert feed["last_seq"] == start + 1


async def test_reply_needs_a_known_number_and_text(fresh: SimHarness) -> None:
    unknown = await fresh.http.post(f"{fresh.url}/sim/phones/+86{_mobile()}/reply", json={"text": "1"})
    assert unknown.status_code == 404
    empty = await fresh.http.post(f"{fresh.url}/sim/phones/+86{_mobile()}/reply", json={"text": ""})
    assert empty.status_code == 422
    named = await fresh.http.post(f"{fresh.url}/sim/phones/+86{_mobile()}/reply", json={"text": "到了", "provider": "tencent"})
    assert named.status_code == 200 and named.json()["dedup_id"].startswith("tencent:")
    pushes = await fresh.receiver.wait_for(lambda r: len(r) >= 1)
    assert orjson.loads(pushes[0].body)["text"] == "到了"


async def test_faults_validate_and_clear(fresh: SimHarness) -> None:
    bad = await fresh.http.post(f"{fresh.url}/sim/faults", json={"rate_limit": {"smoke-signals": 1}})
    assert bad.status_code == 422
    set_ = (await fresh.http.post(f"{fresh.url}/sim/faults", json={"rate_limit": {"aliyun": 2}})).json()
    assert set_["rate_limit"] == {"aliyun": 2}
    assert (await fresh.http.delete(f"{fresh.url}/sim/faults")).json()["rate_limit"] == {}
    assert (await aliyun_v1(fresh, "SendSms", _send([_mobile()]))).json()["Code"] == "OK"


async def test_delivered_messages_are_in_the_jsonl_log(fresh: SimHarness, log_path: Path) -> None:
    mobile = _mobile()
    params = _send([mobile])
    await aliyun_v1(fresh, "SendSms", params)
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    mine = [line for line in lines if line["recipient"] == "+86" + mobile]
    assert len(mine) == 1 and mine[0]["out_id"] == params["OutId"] and mine[0]["provider"] == "aliyun"
    assert set(mine[0]) == {"seq", "provider", "channel", "recipient", "text", "url", "out_id",
                            "provider_message_id", "received_at"}


async def test_reset_clears_messages(fresh: SimHarness) -> None:
    mobile = _mobile()
    await aliyun_v1(fresh, "SendSms", _send([mobile]))
    await fresh.http.post(f"{fresh.url}/sim/reset")
    assert (await fresh.http.get(f"{fresh.url}/sim/phones/{mobile}/messages")).json() == []
    assert (await fresh.http.get(f"{fresh.url}/sim/stats")).json()["messages"] == 0

