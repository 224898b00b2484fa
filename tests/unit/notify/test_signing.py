"""Signing against the examples the providers publish (vectors in /work/shared/reference/providers.md).

Both sides are checked: the official SDKs' signers (what the adapters send) and the simulator's verifiers
(written from the documents).
"""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

import pytest
from alibabacloud_tea_openapi.utils import Utils as AliyunUtils
from tencentcloud.common.abstract_client_async import AbstractClient as TencentAsyncClient

from simulator.signing import (
    aliyun_acs3_signature,
    aliyun_rpc_v1_signature,
    parse_acs3_authorization,
    parse_tc3_authorization,
    percent_encode,
    tc3_signature,
    wechat_signature,
)

# Aliyun SMS doc example ("vector B"), GET.
V1_B_PARAMS = {
    "AccessKeyId": "testId",
    "Action": "SendSms",
    "Format": "XML",
    "OutId": "123",
    "PhoneNumbers": "15300000001",
    "RegionId": "cn-hangzhou",
    "SignName": "阿里云短信测试专用",
    "SignatureMethod": "HMAC-SHA1",
    "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466",
    "SignatureVersion": "1.0",
    "TemplateCode": "SMS_71390007",
    "TemplateParam": '{"customer":"test"}',
    "Timestamp": "2017-07-12T02:42:19Z",
    "Version": "2017-05-25",
}
V1_B_SIGNATURE = "zJDF+Lrzhj/ThnlvIToysFRq6t4="

# ECS doc example ("vector A").
V1_A_PARAMS = {
    "AccessKeyId": "testid",
    "Action": "DescribeRegions",
    "Format": "XML",
    "SignatureMethod": "HMAC-SHA1",
    "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
    "SignatureVersion": "1.0",
    "TimeStamp": "2016-02-23T12:46:24Z",
    "Version": "2014-05-26",
}

ACS3_QUERY = {"ImageId": "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd", "RegionId": "cn-shanghai"}
ACS3_HEADERS = {
    "host": "ecs.cn-shanghai.aliyuncs.com",
    "x-acs-action": "RunInstances",
    "x-acs-version": "2014-05-26",
    "x-acs-date": "2023-10-26T10:22:32Z",
    "x-acs-signature-nonce": "3156853299f313e23d1673dc12e1703d",
    "x-acs-content-sha256": hashlib.sha256(b"").hexdigest(),
}
ACS3_SIGNATURE = "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"

TC3_SECRET_KEY = "Gu5t9xGARNpq86cd98joQYCN3*******"
TC3_PAYLOAD = json.dumps({"Limit": 1, "Filters": [{"Values": ["未命名"], "Name": "instance-name"}]}).encode()
TC3_HEADERS = {"Content-Type": "application/json; charset=utf-8", "Host": "cvm.tencentcloudapi.com"}
TC3_SIGNATURE = "2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c"


def test_percent_encode_follows_aliyun_rules() -> None:
    assert percent_encode("a b*c~d/") == "a%20b%2Ac~d%2F"


def test_aliyun_v1_verifier_matches_sms_doc_example() -> None:
    assert aliyun_rpc_v1_signature("GET", V1_B_PARAMS, "testSecret") == V1_B_SIGNATURE


def test_aliyun_v1_verifier_matches_ecs_doc_example() -> None:
    assert aliyun_rpc_v1_signature("GET", V1_A_PARAMS, "testsecret") == "CT9X0VtwR86fNWSnsc6v8YGOjuE="


def test_aliyun_v1_secret_is_case_sensitive() -> None:
    assert aliyun_rpc_v1_signature("GET", V1_B_PARAMS, "testsecret") != V1_B_SIGNATURE


def test_aliyun_sdk_v1_signer_matches_sms_doc_example() -> None:
    assert AliyunUtils.get_rpcsignature(V1_B_PARAMS, "GET", "testSecret") == V1_B_SIGNATURE


def test_aliyun_acs3_verifier_matches_published_example() -> None:
    signed = tuple(sorted(ACS3_HEADERS))
    got = aliyun_acs3_signature("POST", "/", ACS3_QUERY, ACS3_HEADERS, signed, ACS3_HEADERS["x-acs-content-sha256"],
                                "YourAccessKeySecret")
    assert got == ACS3_SIGNATURE


def test_aliyun_acs3_verifier_detects_a_changed_parameter() -> None:
    signed = tuple(sorted(ACS3_HEADERS))
    query = {**ACS3_QUERY, "RegionId": "cn-hangzhou"}
    got = aliyun_acs3_signature("POST", "/", query, ACS3_HEADERS, signed, ACS3_HEADERS["x-acs-content-sha256"],
                                "YourAccessKeySecret")
    assert got != ACS3_SIGNATURE


def test_aliyun_sdk_acs3_signer_matches_published_example() -> None:
    request = SimpleNamespace(method="POST", pathname="/", query=ACS3_QUERY, headers=ACS3_HEADERS)
    auth = AliyunUtils.get_authorization(request, "ACS3-HMAC-SHA256", ACS3_HEADERS["x-acs-content-sha256"],
                                         "YourAccessKeyId", "YourAccessKeySecret")
    parsed = parse_acs3_authorization(auth)
    assert parsed.access_key_id == "YourAccessKeyId"
    assert parsed.signature == ACS3_SIGNATURE
    assert set(parsed.signed_headers) == set(ACS3_HEADERS)


def test_tc3_verifier_matches_published_example() -> None:
    got = tc3_signature(method="POST", path="/", query="", headers=TC3_HEADERS, signed_headers=("content-type", "host"),
                        payload=TC3_PAYLOAD, timestamp=1551113065, service="cvm", secret_key=TC3_SECRET_KEY)
    assert got == TC3_SIGNATURE


def test_tc3_verifier_detects_a_changed_body() -> None:
    got = tc3_signature(method="POST", path="/", query="", headers=TC3_HEADERS, signed_headers=("content-type", "host"),
                        payload=TC3_PAYLOAD.replace(b"1", b"2"), timestamp=1551113065, service="cvm",
                        secret_key=TC3_SECRET_KEY)
    assert got != TC3_SIGNATURE


def test_tencent_sdk_tc3_signer_matches_published_example() -> None:
    headers = {**TC3_HEADERS, "X-TC-Timestamp": "1551113065"}
    got = TencentAsyncClient._get_tc3_signature("POST", "/", "", TC3_PAYLOAD, headers, "2019-02-25", "cvm",
                                                TC3_SECRET_KEY, {})
    assert got == TC3_SIGNATURE


def test_parse_tc3_authorization() -> None:
    header = (f"TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******/2019-02-25/cvm/tc3_request, "
              f"SignedHeaders=content-type;host, Signature={TC3_SIGNATURE}")
    parsed = parse_tc3_authorization(header)
    assert (parsed.date, parsed.service, parsed.signed_headers) == ("2019-02-25", "cvm", ("content-type", "host"))


@pytest.mark.parametrize("header", ["", "HMAC-SHA1 abc", "TC3-HMAC-SHA256 Credential=x/y", "ACS3-HMAC-SHA256 Foo=1"])
def test_malformed_authorization_headers_are_refused(header: str) -> None:
    with pytest.raises(ValueError):
        if header.startswith("ACS3") or not header.startswith("TC3"):
            parse_acs3_authorization(header)
        else:
            parse_tc3_authorization(header)


def test_wechat_signature_is_sha1_of_sorted_parts() -> None:
    # Same algorithm as wechatpy.utils.check_signature.
    from wechatpy.utils import check_signature

    sig = wechat_signature("tok", "1700000000", "n0nce")
    assert sig == hashlib.sha1(b"".join(sorted([b"tok", b"1700000000", b"n0nce"]))).hexdigest()
    check_signature("tok", sig, "1700000000", "n0nce")  # raises InvalidSignatureException if wrong
