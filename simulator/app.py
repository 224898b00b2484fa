"""The provider simulator: one HTTP server that answers as Aliyun SMS, Tencent SMS and WeChat do.

Provider APIs (verified as the providers document them; see ``/work/shared/reference/providers.md``):

* Aliyun Dysmsapi at ``/`` (RPC style): ``SendSms``, ``SendBatchSms``, ``QuerySendDetails``; signed
  ACS3-HMAC-SHA256 (``Authorization`` header, as the official SDK does) or RPC V1 HMAC-SHA1 (``Signature``
  parameter). Refusals: 403 ``SignatureDoesNotMatch``, 400 ``InvalidTimeStamp.Expired`` (skew over 15 min),
  400 ``SignatureNonceUsed`` (replay), 400 ``InvalidAccessKeyId.NotFound``, 400 ``Missing{Parameter}``.
  Business answers are HTTP 200 with ``Code``: ``OK``, ``isv.MOBILE_NUMBER_ILLEGAL``,
  ``isv.MOBILE_COUNT_OVER_LIMIT`` (>1000 SendSms, >100 SendBatchSms), ``isv.INVALID_JSON_PARAM``,
  ``isv.SMS_TEMPLATE_ILLEGAL``, ``isv.BUSINESS_LIMIT_CONTROL`` (on demand).
* Tencent SMS API 3.0 at ``/`` when ``X-TC-Action`` is present: ``SendSms``, ``PullSmsSendStatusByPhoneNumber``;
  TC3-HMAC-SHA256 verified; ``AuthFailure.SignatureFailure``, ``AuthFailure.SignatureExpire`` (skew over 5 min),
  ``AuthFailure.SecretIdNotFound``, ``MissingParameter``, ``LimitExceeded.PhoneNumberCountLimit`` (>200);
  per-number ``Ok``, ``InvalidParameterValue.IncorrectPhoneNumber``, ``LimitExceeded.DeliveryFrequencyLimit``.
* WeChat: ``GET /cgi-bin/token``, ``POST /cgi-bin/stable_token``, ``POST /cgi-bin/message/template/send``
  (``client_msg_id`` deduplicated for 10 minutes per openid), ``POST /cgi-bin/message/subscribe/bizsend``;
  40001 / 42001 for unknown / expired tokens, 40003 invalid openid, 43004 not following, 43101 refused,
  47001 malformed body, -1 system busy (on demand).

Callbacks pushed to notify (``SIMULATOR_NOTIFY_URL``, token ``NOTIFY_CALLBACK_TOKEN``), see
:mod:`simulator.pusher` for batching and retries: ``/callbacks/aliyun/{token}/report`` and ``/up``,
``/callbacks/tencent/{token}/status`` and ``/reply``, ``/callbacks/wechat?signature=&timestamp=&nonce=``
(TEMPLATESENDJOBFINISH XML, ``signature = sha1(sorted(token, timestamp, nonce))``).

The phone API (for tests and the drill):

* ``GET /sim/phones/{recipient}/messages`` → ``[{seq, provider, channel, recipient, text, url, out_id,
  provider_message_id, received_at}]`` in order (recipient: E.164 ``+86…`` or an openid).
* ``GET /sim/messages?after=SEQ&limit=N&wait=SECONDS`` → ``{"messages": [...], "last_seq": n}``: the global
  log after SEQ, long-polling up to ``wait`` seconds (≤30) while empty.
* ``POST /sim/phones/{recipient}/reply`` ``{"text": "1", "provider": optional}`` → the phone replies; the
  simulator pushes it as the uplink of the provider that last delivered an SMS to it (Aliyun SmsUp array or
  Tencent reply object). Answers ``{"provider", "dedup_id"}`` (the :class:`Uplink` ``dedup_key`` notify
  will parse). 404 when no SMS provider ever delivered to that number and none is named.
* ``POST /sim/faults`` (merged into the current faults) ``{"rate_limit": {"aliyun": N, "tencent": N,
  "wechat": N}, "invalid_numbers": [...], "not_following": [openid...], "refused": [openid...],
  "withhold_receipts": [recipient...], "fail_callbacks": N, "expire_wechat_tokens": true}``; ``DELETE``
  clears. Rate limits refuse the next N send requests (Tencent: the next N numbers).
* ``GET /sim/stats`` → counters, ``callbacks_pending`` and ``callbacks_pending_by_stream`` (receipts and
  uplinks queued or waiting for a re-push, per pusher stream); ``POST /sim/reset`` clears messages,
  faults, counters and tokens.

Every delivered message is also appended to a JSONL file (``SIMULATOR_LOG_PATH``), one object per line
in the phone API's shape: the simulator's own log, for fault tests.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

import aiohttp
import orjson
from fastapi import Body, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse

from services.notify.channels.tencent import tencent_reply_dedup_key
from shared.logging import get_logger
from shared.metrics import SIMULATOR_MESSAGES, install_metrics
from simulator.pusher import CallbackPusher, Push
from simulator.settings import SimulatorSettings
from simulator.signing import (
    aliyun_acs3_signature,
    aliyun_rpc_v1_signature,
    parse_acs3_authorization,
    parse_tc3_authorization,
    tc3_signature,
    wechat_signature,
)
from simulator.state import DeliveredMessage, SimState, is_openid, national_mobile, render_template

__all__ = ["create_app"]

log = get_logger(__name__)
SHANGHAI_OFFSET = 8 * 3600


def _local(ts: float) -> str:
    """Unix seconds → ``YYYY-MM-DD HH:MM:SS`` in Asia/Shanghai (UTC+8), as the providers write times."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts + SHANGHAI_OFFSET))


def _request_id() -> str:
    return str(uuid.uuid4()).upper()


def _json(body: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status_code, media_type="application/json")


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        self.status, self.code, self.message = status, code, message


def create_app(settings: SimulatorSettings | None = None) -> FastAPI:
    """The simulator's FastAPI app (state in memory; callbacks pushed from its lifespan's tasks)."""
    settings = settings or SimulatorSettings()
    state = SimState()
    new_message = asyncio.Condition()
    aliyun_records: dict[str, list[dict[str, Any]]] = defaultdict(list)
    tencent_records: dict[str, list[dict[str, Any]]] = defaultdict(list)
    token = settings.callback_token.get_secret_value() if settings.callback_token else ""
    runtime: dict[str, Any] = {}

    # --- callback rendering ---------------------------------------------------------------------------

    def build(stream: str, items: list[Any]) -> tuple[str, bytes, dict[str, str]]:
        base = settings.notify_url.rstrip("/")
        json_headers = {"content-type": "application/json; charset=utf-8"}
        if stream == "aliyun_report":
            return f"{base}/callbacks/aliyun/{token}/report", orjson.dumps(items), json_headers
        if stream == "aliyun_up":
            return f"{base}/callbacks/aliyun/{token}/up", orjson.dumps(items), json_headers
        if stream == "tencent_status":
            return f"{base}/callbacks/tencent/{token}/status", orjson.dumps(items), json_headers
        if stream == "tencent_reply":
            return f"{base}/callbacks/tencent/{token}/reply", orjson.dumps(items[0]), json_headers
        if stream == "wechat_event":
            ev = items[0]
            ts, nonce = str(int(time.time())), secrets.token_hex(8)
            query = urlencode({"signature": wechat_signature(token, ts, nonce), "timestamp": ts, "nonce": nonce,
                               "openid": ev["openid"]})
            xml = (f"<xml><ToUserName><![CDATA[{settings.wechat_account_id}]]></ToUserName>"
                   f"<FromUserName><![CDATA[{ev['openid']}]]></FromUserName><CreateTime>{ts}</CreateTime>"
                   "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event>"
                   f"<MsgID>{ev['msgid']}</MsgID><Status><![CDATA[{ev['status']}]]></Status></xml>")
            return f"{base}/callbacks/wechat?{query}", xml.encode(), {"content-type": "text/xml"}
        raise ValueError(stream)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:
            pusher = CallbackPusher(http=http, state=state, build=build, delay=settings.receipt_delay_seconds,
                                    minute=settings.callback_minute_seconds,
                                    wechat_retry_seconds=settings.wechat_retry_seconds,
                                    batch_seconds=settings.callback_batch_seconds)
            runtime["pusher"] = pusher
            log_file = None
            if settings.log_path is not None:
                settings.log_path.parent.mkdir(parents=True, exist_ok=True)
                log_file = settings.log_path.open("ab")
            runtime["log_file"] = log_file
            try:
                yield
            finally:
                await pusher.aclose()
                if log_file is not None:
                    log_file.close()

    app = FastAPI(title="muster provider simulator", lifespan=lifespan)
    app.state.sim = state
    app.state.runtime = runtime
    install_metrics(app, "simulator")

    async def delivered(messages: list[DeliveredMessage]) -> None:
        for m in messages:
            SIMULATOR_MESSAGES.labels(m.provider).inc()
        log_file = runtime.get("log_file")
        if log_file is not None and messages:
            log_file.write(b"".join(orjson.dumps(m.public()) + b"\n" for m in messages))
            log_file.flush()
        async with new_message:
            new_message.notify_all()

    def sms_text(sign: str, template: str, params: dict[str, str] | list[str]) -> str:
        return f"【{sign}】" + render_template(settings.templates.get(template), params)

    # --- Aliyun ----------------------------------------------------------------------------------------

    def aliyun_verify(request: Request, body: bytes, params: dict[str, str]) -> str:
        """Check the request's signature; returns the action."""
        secret = settings.aliyun_access_key_secret.get_secret_value() if settings.aliyun_access_key_secret else None
        auth = request.headers.get("authorization", "")
        if auth.startswith("ACS3-HMAC-SHA256"):
            try:
                parsed = parse_acs3_authorization(auth)
            except ValueError as exc:
                raise _Refused(400, "IncompleteSignature", str(exc)) from exc
            if parsed.access_key_id != settings.aliyun_access_key_id or secret is None:
                raise _Refused(400, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
            stamp = request.headers.get("x-acs-date", "")
            nonce = request.headers.get("x-acs-signature-nonce", "")
            content_sha = request.headers.get("x-acs-content-sha256", "")
            if content_sha != hashlib.sha256(body).hexdigest():
                raise _Refused(400, "InvalidContentSha256", "x-acs-content-sha256 does not match the body.")
            expected = aliyun_acs3_signature(request.method, request.url.path, params_from_query(request),
                                             request.headers, parsed.signed_headers, content_sha, secret)
            if not secrets.compare_digest(expected, parsed.signature) or "host" not in parsed.signed_headers:
                raise _Refused(403, "SignatureDoesNotMatch", "Specified signature is not matched with our calculation.")
            action = request.headers.get("x-acs-action", "")
        elif "Signature" in params:
            if params.get("AccessKeyId") != settings.aliyun_access_key_id or secret is None:
                raise _Refused(400, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
            expected = aliyun_rpc_v1_signature(request.method, params, secret)
            if not secrets.compare_digest(expected, params["Signature"]):
                raise _Refused(403, "SignatureDoesNotMatch", "Specified signature is not matched with our calculation.")
            stamp, nonce, action = params.get("Timestamp", ""), params.get("SignatureNonce", ""), params.get("Action", "")
        else:
            raise _Refused(400, "MissingSignature", "Signature is mandatory for this action.")
        try:
            at = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
        except ValueError as exc:
            raise _Refused(400, "InvalidTimeStamp.Format", "Specified time stamp is not valid.") from exc
        if abs(time.time() - at) > settings.aliyun_max_skew_seconds:
            raise _Refused(400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.")
        if not nonce or state.nonce_seen(nonce, window_seconds=settings.aliyun_max_skew_seconds):
            raise _Refused(400, "SignatureNonceUsed", "Specified signature nonce was used already.")
        return action

    def params_from_query(request: Request) -> dict[str, str]:
        return dict(parse_qsl(request.url.query, keep_blank_values=True))

    def aliyun_answer(code: str, message: str | None = None, **extra: Any) -> Response:
        body = {"Code": code, "Message": message or ("OK" if code == "OK" else code), "RequestId": _request_id(),
                **extra}
        return _json(body)

    def require(params: dict[str, str], *names: str) -> None:
        for n in names:
            if not params.get(n):
                raise _Refused(400, f"Missing{n}", f"{n} is mandatory for this action.")

    async def aliyun_send(kind: str, numbers: list[str], signs: list[str], template: str,
                          param_list: list[Any], out_id: str | None) -> Response:
        limit = 1000 if kind == "SendSms" else 100
        if len(numbers) > limit:
            state.reject("isv.MOBILE_COUNT_OVER_LIMIT")
            return aliyun_answer("isv.MOBILE_COUNT_OVER_LIMIT", "手机号码数量超过限制")
        if not template.startswith("SMS_"):
            state.reject("isv.SMS_TEMPLATE_ILLEGAL")
            return aliyun_answer("isv.SMS_TEMPLATE_ILLEGAL", "模板不合法")
        for p in param_list:
            if not isinstance(p, dict) or not all(isinstance(v, str) for v in p.values()):
                state.reject("isv.INVALID_JSON_PARAM")
                return aliyun_answer("isv.INVALID_JSON_PARAM", "JSON参数不合法，只接受字符串值")
        if state.take_rate_limit("aliyun"):
            state.reject("isv.BUSINESS_LIMIT_CONTROL")
            return aliyun_answer("isv.BUSINESS_LIMIT_CONTROL", "触发分钟级流控Permits:1")
        nationals = [national_mobile(n) for n in numbers]
        if any(n is None or n in state.faults.invalid_numbers for n in nationals):
            state.reject("isv.MOBILE_NUMBER_ILLEGAL")
            return aliyun_answer("isv.MOBILE_NUMBER_ILLEGAL", "非法手机号")
        biz_id = f"{secrets.randbelow(10**18):018d}^0"
        now = time.time()
        out = []
        for national, sign, params in zip(nationals, signs, param_list, strict=True):
            assert national is not None
            e164 = "+86" + national
            text = sms_text(sign, template, params)
            msg = state.deliver(provider="aliyun", channel="sms", recipient=e164, text=text, url=None,
                                out_id=out_id, provider_message_id=biz_id, template=template)
            out.append(msg)
            withheld = e164 in state.faults.withhold_receipts
            aliyun_records[national].append({
                "PhoneNum": national, "SendStatus": 1 if withheld else 3, "ErrCode": "" if withheld else "DELIVERED",
                "TemplateCode": template, "Content": text, "SendDate": _local(now),
                "ReceiveDate": "" if withheld else _local(now), "OutId": out_id or "",
            })
            if not withheld:
                runtime["pusher"].submit(Push("aliyun_report", "aliyun", {
                    "phone_number": national, "send_time": _local(now), "report_time": _local(now),
                    "success": True, "err_code": "DELIVERED", "err_msg": "用户接收成功",
                    "sms_size": "1" if len(text) <= 70 else str(-(-len(text) // 67)),
                    "biz_id": biz_id, "out_id": out_id or "",
                }))
        await delivered(out)
        return aliyun_answer("OK", BizId=biz_id)

    async def aliyun(request: Request, body: bytes) -> Response:
        state.stats["requests.aliyun"] += 1
        params = params_from_query(request)
        if body and "form" in request.headers.get("content-type", ""):
            params.update(parse_qsl(body.decode(), keep_blank_values=True))
        try:
            action = aliyun_verify(request, body, params)
            if action == "SendSms":
                require(params, "PhoneNumbers", "SignName", "TemplateCode")
                numbers = params["PhoneNumbers"].split(",")
                try:
                    template_params = json.loads(params.get("TemplateParam") or "{}")
                except ValueError:
                    template_params = None
                return await aliyun_send("SendSms", numbers, [params["SignName"]] * len(numbers),
                                         params["TemplateCode"], [template_params] * len(numbers), params.get("OutId"))
            if action == "SendBatchSms":
                require(params, "PhoneNumberJson", "SignNameJson", "TemplateCode")
                try:
                    numbers = json.loads(params["PhoneNumberJson"])
                    signs = json.loads(params["SignNameJson"])
                    plist = json.loads(params.get("TemplateParamJson") or "null") or [{}] * len(numbers)
                except ValueError:
                    state.reject("isv.INVALID_JSON_PARAM")
                    return aliyun_answer("isv.INVALID_JSON_PARAM", "JSON参数不合法")
                if not (isinstance(numbers, list) and isinstance(signs, list) and isinstance(plist, list)
                        and len(numbers) == len(signs) == len(plist)):
                    state.reject("isv.INVALID_JSON_PARAM")
                    return aliyun_answer("isv.INVALID_JSON_PARAM", "号码、签名、参数个数不一致")
                return await aliyun_send("SendBatchSms", [str(n) for n in numbers], signs, params["TemplateCode"],
                                         plist, params.get("OutId"))
            if action == "QuerySendDetails":
                require(params, "PhoneNumber", "SendDate", "PageSize", "CurrentPage")
                day = params["SendDate"]
                records = [r for r in aliyun_records.get(national_mobile(params["PhoneNumber"]) or "", [])
                           if r["SendDate"][:10].replace("-", "") == day]
                size, page = min(int(params["PageSize"]), 50), max(int(params["CurrentPage"]), 1)
                chunk = records[(page - 1) * size : page * size]
                return aliyun_answer("OK", TotalCount=len(records), SmsSendDetailDTOs={"SmsSendDetailDTO": chunk})
            raise _Refused(404, "InvalidAction.NotFound", "Specified api is not found, please check your url and method.")
        except _Refused as exc:
            state.reject(exc.code)
            return _json({"Code": exc.code, "Message": exc.message, "RequestId": _request_id()},
                                  status_code=exc.status)

    # --- Tencent ---------------------------------------------------------------------------------------

    def tencent_verify(request: Request, body: bytes) -> None:
        try:
            auth = parse_tc3_authorization(request.headers.get("authorization", ""))
        except ValueError as exc:
            raise _Refused(200, "AuthFailure.SignatureFailure", f"The provided credentials could not be validated. {exc}") from exc
        secret = settings.tencent_secret_key.get_secret_value() if settings.tencent_secret_key else None
        if auth.secret_id != settings.tencent_secret_id or secret is None:
            raise _Refused(200, "AuthFailure.SecretIdNotFound", "The SecretId is not found.")
        try:
            ts = int(request.headers.get("x-tc-timestamp", ""))
        except ValueError as exc:
            raise _Refused(200, "AuthFailure.SignatureFailure", "X-TC-Timestamp is missing.") from exc
        if abs(time.time() - ts) > settings.tencent_max_skew_seconds:
            raise _Refused(200, "AuthFailure.SignatureExpire", "Signature expired. Timestamp is out of range.")
        expected = tc3_signature(method=request.method, path=request.url.path, query=request.url.query,
                                 headers=request.headers, signed_headers=auth.signed_headers, payload=body,
                                 timestamp=ts, service=auth.service, secret_key=secret)
        date = datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d")
        if auth.date != date or not secrets.compare_digest(expected, auth.signature):
            raise _Refused(200, "AuthFailure.SignatureFailure", "The provided credentials could not be validated.")

    def tencent_answer(payload: dict[str, Any]) -> Response:
        return _json({"Response": {**payload, "RequestId": str(uuid.uuid4())}})

    async def tencent(request: Request, body: bytes) -> Response:
        state.stats["requests.tencent"] += 1
        action = request.headers.get("x-tc-action", "")
        try:
            tencent_verify(request, body)
            try:
                params = json.loads(body or b"{}")
            except ValueError as exc:
                raise _Refused(200, "InvalidParameter", "body is not JSON") from exc
            if action == "SendSms":
                for name in ("PhoneNumberSet", "SmsSdkAppId", "TemplateId"):
                    if not params.get(name):
                        raise _Refused(200, "MissingParameter", f"The request is missing a required parameter `{name}`.")
                if params["SmsSdkAppId"] != settings.tencent_sdk_app_id:
                    raise _Refused(200, "InvalidParameterValue.SdkAppIdNotExist", "SdkAppId does not exist.")
                numbers = params["PhoneNumberSet"]
                if len(numbers) > 200:
                    raise _Refused(200, "LimitExceeded.PhoneNumberCountLimit", "More than 200 numbers.")
                values = params.get("TemplateParamSet") or []
                if not all(isinstance(v, str) for v in values):
                    raise _Refused(200, "InvalidParameterValue.TemplateParameterFormatError", "values must be strings")
                context = params.get("SessionContext") or ""
                if len(context.encode()) >= 512:
                    raise _Refused(200, "InvalidParameterValue.LengthExceedsLimit", "SessionContext too long")
                statuses, out = [], []
                now = time.time()
                for number in numbers:
                    national = national_mobile(str(number))
                    entry = {"PhoneNumber": str(number), "SessionContext": context, "Fee": 0, "IsoCode": "CN",
                             "SerialNo": ""}
                    if national is None or national in state.faults.invalid_numbers:
                        code, message = "InvalidParameterValue.IncorrectPhoneNumber", "incorrect phone number"
                    elif state.take_rate_limit("tencent"):
                        code, message = "LimitExceeded.DeliveryFrequencyLimit", "delivery frequency limit"
                    else:
                        code, message = "Ok", "send success"
                    if code != "Ok" or national is None:
                        state.reject(code)
                        statuses.append({**entry, "Code": code, "Message": message})
                        continue
                    e164 = "+86" + national
                    serial = f"2433:{secrets.randbelow(10**28):028d}"
                    text = sms_text(params.get("SignName") or "", str(params["TemplateId"]), values)
                    out.append(state.deliver(provider="tencent", channel="sms", recipient=e164, text=text, url=None,
                                             out_id=context or None, provider_message_id=serial,
                                             template=str(params["TemplateId"])))
                    statuses.append({**entry, "PhoneNumber": e164, "SerialNo": serial, "Fee": 1, "Code": "Ok",
                                     "Message": message})
                    if e164 not in state.faults.withhold_receipts:
                        tencent_records[national].append({
                            "UserReceiveTime": int(now), "CountryCode": "86", "SubscriberNumber": national,
                            "PhoneNumber": e164, "SerialNo": serial, "ReportStatus": "SUCCESS",
                            "Description": "用户短信送达成功", "SessionContext": context,
                        })
                        runtime["pusher"].submit(Push("tencent_status", "tencent", {
                            "user_receive_time": _local(now), "nationcode": "86", "mobile": national,
                            "report_status": "SUCCESS", "errmsg": "DELIVRD", "description": "用户短信送达成功",
                            "sid": serial, "ext": context,
                        }))
                await delivered(out)
                return tencent_answer({"SendStatusSet": statuses})
            if action == "PullSmsSendStatusByPhoneNumber":
                national = national_mobile(str(params.get("PhoneNumber", ""))) or ""
                begin, end = int(params.get("BeginTime", 0)), int(params.get("EndTime", 2**31))
                rows = [r for r in tencent_records.get(national, []) if begin <= r["UserReceiveTime"] <= end]
                offset, limit = int(params.get("Offset", 0)), min(int(params.get("Limit", 100)), 100)
                return tencent_answer({"PullSmsSendStatusSet": rows[offset : offset + limit]})
            raise _Refused(200, "InvalidAction", f"The action {action} does not exist.")
        except _Refused as exc:
            state.reject(exc.code)
            return tencent_answer({"Error": {"Code": exc.code, "Message": exc.message}})

    @app.api_route("/", methods=["GET", "POST"], include_in_schema=False)
    async def provider_root(request: Request) -> Response:
        body = await request.body()
        if "x-tc-action" in request.headers:
            return await tencent(request, body)
        return await aliyun(request, body)

    # --- WeChat ----------------------------------------------------------------------------------------

    def wechat_error(code: int, message: str) -> Response:
        state.reject(str(code))
        return _json({"errcode": code, "errmsg": message})

    def wechat_credentials_ok(appid: str | None, secret: str | None) -> int:
        if appid != settings.wechat_app_id:
            return 40013
        expected = settings.wechat_app_secret.get_secret_value() if settings.wechat_app_secret else None
        if expected is None or secret is None or not secrets.compare_digest(secret, expected):
            return 40125
        return 0

    @app.get("/cgi-bin/token")
    async def wechat_token(grant_type: str = "", appid: str = "", secret: str = "") -> Response:
        state.stats["requests.wechat_token"] += 1
        if grant_type != "client_credential":
            return wechat_error(40002, "invalid grant_type")
        if code := wechat_credentials_ok(appid, secret):
            return wechat_error(code, "invalid appid or appsecret")
        # A new fetch invalidates the previous token after 5 minutes.
        now = time.monotonic()
        state.wechat_tokens = {t: min(exp, now + 300) for t, exp in state.wechat_tokens.items()}
        token_ = state.issue_token(settings.wechat_token_lifetime_seconds)
        return _json({"access_token": token_, "expires_in": settings.wechat_token_lifetime_seconds})

    @app.post("/cgi-bin/stable_token")
    async def wechat_stable_token(payload: dict[str, Any] = Body(...)) -> Response:  # noqa: B008
        state.stats["requests.wechat_token"] += 1
        if payload.get("grant_type") != "client_credential":
            return wechat_error(40002, "invalid grant_type")
        if code := wechat_credentials_ok(payload.get("appid"), payload.get("secret")):
            return wechat_error(code, "invalid appid or appsecret")
        current = state.wechat_stable
        if payload.get("force_refresh") or current is None or state.token_state(current) != 0:
            current = state.wechat_stable = state.issue_token(settings.wechat_token_lifetime_seconds)
        remaining = int(state.wechat_tokens[current] - time.monotonic())
        return _json({"access_token": current, "expires_in": max(remaining, 1)})

    async def wechat_send(request: Request, *, bizsend: bool) -> Response:
        state.stats["requests.wechat"] += 1
        if code := state.token_state(request.query_params.get("access_token")):
            return wechat_error(code, "access_token expired" if code == 42001 else "invalid credential")
        try:
            payload = orjson.loads(await request.body())
            touser, template_id = str(payload["touser"]), str(payload["template_id"])
            data = payload.get("data") or {}
            params = {k: str(v["value"]) for k, v in data.items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            return wechat_error(47001, "data format error")
        if not is_openid(touser) or touser in state.faults.invalid_numbers:
            return wechat_error(40003, "invalid openid")
        if touser in state.faults.not_following:
            return wechat_error(43004, "require subscribe")
        if bizsend and touser in state.faults.refused:
            return wechat_error(43101, "user refuse to accept the msg")
        client_msg_id = payload.get("client_msg_id") if not bizsend else None
        now = time.monotonic()
        if client_msg_id:
            seen = state.wechat_dedup.get((touser, str(client_msg_id)))
            if seen and now - seen[1] < 600:
                state.stats["wechat_deduplicated"] += 1
                return _json({"errcode": 0, "errmsg": "ok", "msgid": int(seen[0])})
        if state.take_rate_limit("wechat"):
            return wechat_error(-1, "system error")
        msgid = str(secrets.randbelow(10**15) + 10**15)
        url = payload.get("page") if bizsend else payload.get("url")
        msg = state.deliver(provider="wechat", channel="wechat", recipient=touser,
                            text=render_template(settings.templates.get(template_id), params), url=url,
                            out_id=str(client_msg_id) if client_msg_id else None, provider_message_id=msgid,
                            template=template_id)
        if client_msg_id:
            state.wechat_dedup[(touser, str(client_msg_id))] = (msgid, now)
        if not bizsend and touser not in state.faults.withhold_receipts:
            runtime["pusher"].submit(Push("wechat_event", "wechat",
                                          {"openid": touser, "msgid": msgid, "status": "success"}))
        await delivered([msg])
        return _json({"errcode": 0, "errmsg": "ok", "msgid": int(msgid)})

    @app.post("/cgi-bin/message/template/send")
    async def wechat_template_send(request: Request) -> Response:
        return await wechat_send(request, bizsend=False)

    @app.post("/cgi-bin/message/subscribe/bizsend")
    async def wechat_bizsend(request: Request) -> Response:
        return await wechat_send(request, bizsend=True)

    # --- phone API -------------------------------------------------------------------------------------

    def recipient_key(recipient: str) -> str:
        national = national_mobile(recipient)
        return "+86" + national if national else recipient

    @app.get("/sim/phones/{recipient}/messages")
    async def phone_messages(recipient: str) -> list[dict[str, Any]]:
        return [m.public() for m in state.by_recipient.get(recipient_key(recipient), [])]

    @app.get("/sim/messages")
    async def message_feed(after: int = 0, limit: int = 1000, wait: float = 0.0) -> dict[str, Any]:
        limit = max(1, min(limit, 10_000))
        if state.seq <= after and wait > 0:
            try:
                async with new_message:
                    await asyncio.wait_for(new_message.wait_for(lambda: state.seq > after), min(wait, 30.0))
            except TimeoutError:
                pass
        batch = state.after(after, limit)
        return {"messages": [m.public() for m in batch], "last_seq": batch[-1].seq if batch else after}

    @app.post("/sim/phones/{recipient}/reply")
    async def phone_reply(recipient: str, payload: dict[str, Any] = Body(...)) -> dict[str, str]:  # noqa: B008
        text = payload.get("text")
        if not isinstance(text, str) or not text:
            raise HTTPException(422, "text is required")
        key = recipient_key(recipient)
        national = national_mobile(key)
        if national is None:
            raise HTTPException(422, "only SMS numbers reply by text; WeChat users tap the message's url")
        provider = payload.get("provider") or state.last_provider.get(key)
        if provider not in ("aliyun", "tencent"):
            raise HTTPException(404, "no SMS provider delivered to this number; name one with 'provider'")
        now = time.time()
        state.uplink_seq += 1
        if provider == "aliyun":
            sequence_id = str(int(now * 1000) * 1000 + state.uplink_seq % 1000)
            item: dict[str, Any] = {"phone_number": national, "content": text, "send_time": _local(now),
                                    "dest_code": "", "sequence_id": sequence_id, "sign_name": ""}
            runtime["pusher"].submit(Push("aliyun_up", "aliyun", item))
            return {"provider": provider, "dedup_id": f"aliyun:{sequence_id}"}
        item = {"extend": "", "mobile": national, "nationcode": "86", "sign": "", "text": text,
                "time": int(now)}
        runtime["pusher"].submit(Push("tencent_reply", "tencent", item))
        return {"provider": provider, "dedup_id": tencent_reply_dedup_key(item)}

    @app.post("/sim/faults")
    async def set_faults(payload: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
        f = state.faults
        for provider, count in (payload.get("rate_limit") or {}).items():
            if provider not in ("aliyun", "tencent", "wechat") or not isinstance(count, int) or count < 0:
                raise HTTPException(422, "rate_limit: {aliyun|tencent|wechat: count ≥ 0}")
            f.rate_limit[provider] += count
        for number in payload.get("invalid_numbers") or []:
            f.invalid_numbers.add(national_mobile(str(number)) or str(number))
        f.not_following.update(map(str, payload.get("not_following") or []))
        f.refused.update(map(str, payload.get("refused") or []))
        f.withhold_receipts.update(recipient_key(str(r)) for r in payload.get("withhold_receipts") or [])
        f.fail_callbacks += int(payload.get("fail_callbacks") or 0)
        if payload.get("expire_wechat_tokens"):
            state.expire_tokens()
        return faults_view()

    def faults_view() -> dict[str, Any]:
        f = state.faults
        return {"rate_limit": dict(f.rate_limit), "invalid_numbers": len(f.invalid_numbers),
                "not_following": len(f.not_following), "refused": len(f.refused),
                "withhold_receipts": len(f.withhold_receipts), "fail_callbacks": f.fail_callbacks}

    @app.delete("/sim/faults")
    async def clear_faults() -> dict[str, Any]:
        from simulator.state import Faults

        state.faults = Faults()
        return faults_view()

    @app.get("/sim/stats")
    async def stats() -> dict[str, Any]:
        pusher = runtime.get("pusher")
        return {**state.stats_view(), "callbacks_pending": pusher.pending if pusher else 0,
                "callbacks_pending_by_stream": pusher.pending_by_stream if pusher else {}}

    @app.post("/sim/reset")
    async def reset() -> dict[str, str]:
        state.reset()
        aliyun_records.clear()
        tencent_records.clear()
        return {"status": "reset"}

    @app.get("/health/live", include_in_schema=False)
    async def live() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return app
