"""Callback parsing of each provider, from the documents' own examples, and refusal of malformed bodies."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import httpx
import pytest

from services.notify.channels.aliyun import AliyunSms
from services.notify.channels.tencent import TencentSms, tencent_reply_dedup_key
from services.notify.channels.wechat import WeChatTemplate

TEMPLATES = {"callout": "SMS_1", "assigned": "SMS_2", "stand_down": "SMS_3", "reminder": "SMS_4"}


@pytest.fixture(scope="module")
def aliyun() -> AliyunSms:
    return AliyunSms(base_url="http://127.0.0.1:9", access_key_id="id", access_key_secret="s", sign_name="红十字",
                     templates=TEMPLATES)


@pytest.fixture(scope="module")
def tencent() -> TencentSms:
    return TencentSms(base_url="http://127.0.0.1:9", secret_id="id", secret_key="s", sdk_app_id="1400006666",
                      sign_name="红十字", templates=TEMPLATES)


@pytest.fixture(scope="module")
def wechat() -> WeChatTemplate:
    return WeChatTemplate(http=httpx.AsyncClient(), base_url="http://127.0.0.1:9", app_id="wx", app_secret="s",
                          templates=TEMPLATES)


# --- Aliyun (document_detail/101867.html, smsup-http) ---------------------------------------------------


def test_aliyun_smsreport_example(aliyun: AliyunSms) -> None:
    mid = uuid.uuid4()
    body = json.dumps([{"phone_number": "13811112222", "send_time": "2017-01-01 00:00:00",
                        "report_time": "2017-01-01 00:00:05", "success": True, "err_code": "DELIVERED",
                        "err_msg": "用户接收成功", "sms_size": "1", "biz_id": "12345", "out_id": str(mid)},
                       {"phone_number": "13811113333", "send_time": "2017-01-01 00:00:00",
                        "report_time": "2017-01-01 00:00:07", "success": False, "err_code": "MK:0001",
                        "err_msg": "失败", "sms_size": "1", "biz_id": "12345", "out_id": "b0123"}],
                      ensure_ascii=False).encode()
    ok, failed = aliyun.parse_receipts(body, "application/json")
    assert ok.message_id == mid and ok.delivered and ok.error_code is None
    assert ok.recipient == "+8613811112222"
    assert ok.provider_message_id == aliyun.provider_message_id(str(mid), "+8613811112222")
    assert ok.reported_at == datetime(2016, 12, 31, 16, 0, 5, tzinfo=UTC)  # Asia/Shanghai → UTC
    assert failed.message_id is None  # a batch OutId names no single message
    assert (failed.delivered, failed.error_code) == (False, "MK:0001")
    assert failed.provider_message_id == aliyun.provider_message_id("b0123", "+8613811113333")


def test_aliyun_provider_message_id_does_not_carry_the_mobile(aliyun: AliyunSms) -> None:
    """The id goes into notify.delivery.v1 and notify's tables: OutId plus a keyed digest, never the number."""
    body = json.dumps([{"phone_number": "13811113333", "report_time": "2017-01-01 00:00:07", "success": True,
                        "out_id": "b0123"}]).encode()
    [receipt] = aliyun.parse_receipts(body, "application/json")
    assert receipt.provider_message_id is not None
    assert receipt.provider_message_id.startswith("b0123:")
    assert "13811113333" not in receipt.provider_message_id and "1113333" not in receipt.provider_message_id
    # one number, one id; two numbers of one batch, two ids; another key, another id (keyed, not a plain hash)
    assert receipt.provider_message_id == aliyun.provider_message_id("b0123", "+86 138 1111 3333")
    assert receipt.provider_message_id != aliyun.provider_message_id("b0123", "+8613811112222")
    other = AliyunSms(base_url="http://127.0.0.1:9", access_key_id="id", access_key_secret="s", sign_name="红十字",
                      templates=TEMPLATES, id_key=b"another key")
    assert other.provider_message_id("b0123", "+8613811113333") != receipt.provider_message_id


def test_aliyun_smsup_both_versions(aliyun: AliyunSms) -> None:
    new = [{"phone_number": "13811112222", "content": "1", "send_time": "2017-09-01 00:00:00",
            "dest_code": "1234", "sequence_id": "1234567890"}]
    old = [{"phone_number": "13811112222", "content": "好", "send_time": "2017-09-01 00:00:00",
            "dest_code": "1234", "sequence_id": 1234567891, "sign_name": "红十字"}]
    [a] = aliyun.parse_uplinks(json.dumps(new).encode(), "application/json")
    [b] = aliyun.parse_uplinks(json.dumps(old, ensure_ascii=False).encode(), "application/json")
    assert (a.sender, a.text, a.dedup_key) == ("+8613811112222", "1", "aliyun:1234567890")
    assert (b.text, b.dedup_key) == ("好", "aliyun:1234567891")


@pytest.mark.parametrize("body", [
    b"", b"not json", b"{}", b'[{"phone_number": "13811112222"}]',
    b'[{"phone_number": "1381111****", "report_time": "2017-01-01 00:00:00", "success": true}]',
    b'[{"phone_number": "13811112222", "report_time": "yesterday", "success": true}]',
])
def test_aliyun_malformed_reports_raise_value_error(aliyun: AliyunSms, body: bytes) -> None:
    with pytest.raises(ValueError):
        aliyun.parse_receipts(body, "application/json")


def test_aliyun_malformed_uplink_raises_value_error(aliyun: AliyunSms) -> None:
    with pytest.raises(ValueError):
        aliyun.parse_uplinks(b'[{"phone_number": "13811112222", "content": "1"}]', "application/json")


# --- Tencent (382/59178, 382/59179) ---------------------------------------------------------------------


def test_tencent_status_example(tencent: TencentSms) -> None:
    mid = uuid.uuid4()
    body = json.dumps([{"user_receive_time": "2015-10-17 08:03:04", "nationcode": "86", "mobile": "13811112222",
                        "report_status": "SUCCESS", "errmsg": "DELIVRD", "description": "用户短信送达成功",
                        "sid": "2433:1", "ext": str(mid)},
                       {"user_receive_time": "2015-10-17 08:03:04", "nationcode": "86", "mobile": "13811113333",
                        "report_status": "FAIL", "errmsg": "MN:0001", "description": "空号", "sid": "2433:2"}],
                      ensure_ascii=False).encode()
    ok, failed = tencent.parse_receipts(body, "application/json")
    assert (ok.provider_message_id, ok.message_id, ok.delivered, ok.recipient) == ("2433:1", mid, True, "+8613811112222")
    assert ok.reported_at == datetime(2015, 10, 17, 0, 3, 4, tzinfo=UTC)
    assert (failed.delivered, failed.error_code, failed.message_id) == (False, "MN:0001", None)


def test_tencent_reply_example_and_dedup_key(tencent: TencentSms) -> None:
    item = {"extend": "", "mobile": "13811112222", "nationcode": "86", "sign": "短信签名", "text": "到了",
            "time": 1457336869}
    [up] = tencent.parse_uplinks(json.dumps(item, ensure_ascii=False).encode(), "application/json")
    assert (up.provider, up.sender, up.text) == ("tencent", "+8613811112222", "到了")
    assert up.received_at == datetime.fromtimestamp(1457336869, tz=UTC)
    assert up.dedup_key == tencent_reply_dedup_key(item)
    assert up.dedup_key != tencent_reply_dedup_key({**item, "time": 1457336870})


@pytest.mark.parametrize("body", [b"[]", b'{"mobile": "13811112222"}', b'{"mobile": "x", "text": "1", "time": 1}',
                                  b'{"mobile": "13811112222", "nationcode": "1", "text": "1", "time": 1}'])
def test_tencent_malformed_reply_raises_value_error(tencent: TencentSms, body: bytes) -> None:
    with pytest.raises(ValueError):
        tencent.parse_uplinks(body, "application/json")


def test_tencent_status_must_be_an_array(tencent: TencentSms) -> None:
    with pytest.raises(ValueError):
        tencent.parse_receipts(b'{"sid": "1"}', "application/json")


# --- WeChat (TEMPLATESENDJOBFINISH) ---------------------------------------------------------------------

OPENID = "oABCDEFGHIJKLMNOPQRSTUVWXYZ0"


def _event(status: str) -> bytes:
    return (f"<xml><ToUserName><![CDATA[gh_7f083739789a]]></ToUserName><FromUserName><![CDATA[{OPENID}]]>"
            "</FromUserName><CreateTime>1395658920</CreateTime><MsgType><![CDATA[event]]></MsgType>"
            "<Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event><MsgID>200163836</MsgID>"
            f"<Status><![CDATA[{status}]]></Status></xml>").encode()


@pytest.mark.parametrize(("status", "delivered"), [("success", True), ("failed:user block", False),
                                                    ("failed: system failed", False)])
def test_wechat_finish_event(wechat: WeChatTemplate, status: str, delivered: bool) -> None:
    [r] = wechat.parse_receipts(_event(status), "text/xml")
    assert (r.provider_message_id, r.recipient, r.delivered) == ("200163836", OPENID, delivered)
    assert r.error_code == (None if delivered else status)
    assert r.reported_at == datetime.fromtimestamp(1395658920, tz=UTC)


def test_wechat_other_pushes_give_no_receipt_and_text_is_an_uplink(wechat: WeChatTemplate) -> None:
    text = (f"<xml><ToUserName>gh_1</ToUserName><FromUserName>{OPENID}</FromUserName><CreateTime>1</CreateTime>"
            "<MsgType>text</MsgType><Content>收到，20分钟到</Content><MsgId>42</MsgId></xml>").encode()
    assert wechat.parse_receipts(text, "text/xml") == []
    [up] = wechat.parse_uplinks(text, "text/xml")
    assert (up.sender, up.text, up.dedup_key) == (OPENID, "收到，20分钟到", "wechat:42")
    assert wechat.parse_uplinks(_event("success"), "text/xml") == []


@pytest.mark.parametrize("body", [b"", b"<xml>", b"<notxml/>", b"{}",
                                  b"<xml><FromUserName>o</FromUserName><CreateTime>1</CreateTime><MsgType>event"
                                  b"</MsgType><Event>TEMPLATESENDJOBFINISH</Event></xml>",
                                  b'<!DOCTYPE x [<!ENTITY e "boom">]><xml>&e;</xml>'])
def test_wechat_malformed_xml_raises_value_error(wechat: WeChatTemplate, body: bytes) -> None:
    with pytest.raises(ValueError):
        wechat.parse_receipts(body, "text/xml")


@pytest.mark.parametrize("provider", ["aliyun", "tencent"])
def test_a_message_id_starting_with_b_is_not_taken_for_a_batch_id(aliyun: AliyunSms, tencent: TencentSms,
                                                                   provider: str) -> None:
    mid = uuid.UUID("b86723a4-7f40-445c-b66b-45da22cffc67")
    if provider == "aliyun":
        body = [{"phone_number": "13811112222", "report_time": "2017-01-01 00:00:05", "success": True,
                 "out_id": str(mid)}]
        [r] = aliyun.parse_receipts(json.dumps(body).encode(), "application/json")
    else:
        body = [{"user_receive_time": "2015-10-17 08:03:04", "mobile": "13811112222", "report_status": "SUCCESS",
                 "sid": "1", "ext": str(mid)}]
        [r] = tencent.parse_receipts(json.dumps(body).encode(), "application/json")
    assert r.message_id == mid
