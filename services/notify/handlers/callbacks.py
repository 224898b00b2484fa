"""Provider callbacks: delivery receipts and replies, authenticated as each provider documents.

===========================================  =============================================================
route                                        provider format (``/work/shared/reference/providers.md``)
===========================================  =============================================================
``GET|POST /callbacks/aliyun/{token}/report`` SmsReport JSON array → ``{"code":0,"msg":"接收成功"}``
``GET|POST /callbacks/aliyun/{token}/up``     SmsUp JSON array (GET: connectivity check)
``POST /callbacks/tencent/{token}/status``    status JSON array → ``{"result":0,"errmsg":"OK"}``
``POST /callbacks/tencent/{token}/reply``     one reply JSON object
``GET /callbacks/wechat``                     server check: echoes ``echostr`` when the signature holds
``POST /callbacks/wechat``                    event XML (``TEMPLATESENDJOBFINISH``) or a text message → ``success``
===========================================  =============================================================

Security: Aliyun and Tencent sign nothing, so their callbacks need the secret path token
(``NOTIFY_CALLBACK_TOKEN``, compared in constant time; a wrong token answers 404) and a peer address
in ``NOTIFY_CALLBACK_ALLOW_IPS`` (403). WeChat's need a peer address in
``NOTIFY_WECHAT_CALLBACK_ALLOW_IPS`` (403; WeChat publishes its addresses, ``cgi-bin/getcallbackip``)
and are signed ``sha1(sorted(token, timestamp, nonce))`` (checked with wechatpy's ``check_signature``);
a timestamp more than ``wechat_callback_max_skew_seconds`` away from now is refused (403). The
signature does not cover the body, so a POST's ``(timestamp, nonce)`` is accepted once
(``wechat_callback_nonces``, stored in the transaction that applies the push, pruned once the
timestamp is two windows old): a second POST with the same pair and the same body (the provider
retrying a push whose answer it did not get) answers ``success`` and changes nothing; with another
body it is refused (403 ``replayed_nonce``). The GET server check changes nothing and is not recorded.
A refused callback is logged with the route, the reason and the peer address only: no body, no phone
number.

Replays: a reply's ``(provider, dedup_key)`` is stored, so a second delivery answers success and
changes nothing; receipts for settled messages change nothing. Malformed bodies answer 400 and change
nothing; a database failure answers 500 so that the provider retries.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

import asyncpg
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.utils import check_signature

from services.notify.channels.base import ChannelProvider, DeliveryReceipt
from services.notify.context import NotifyContext
from services.notify.inbound import apply_receipts, record_replies
from shared.consumer import is_transient
from shared.groupcommit import GroupCommit
from shared.http_errors import ProviderError, error_responses
from shared.logging import get_logger
from shared.vocabulary import Channel

__all__ = ["router"]

log = get_logger(__name__)
# 400 malformed body or timestamp, 403 signature/address/replay, 404 wrong token or provider not active.
router = APIRouter(prefix="/callbacks", tags=["callbacks"],
                   responses=error_responses(400, 403, 404, model=ProviderError))

_ALIYUN_OK = {"code": 0, "msg": "接收成功"}
_TENCENT_OK = {"result": 0, "errmsg": "OK"}


def _ctx(request: Request) -> NotifyContext:
    ctx: NotifyContext | None = request.app.state.runtime.extras.get("notify")
    if ctx is None:
        raise RuntimeError("notify is not started")
    return ctx


def _refuse(request: Request, route: str, reason: str, status: int) -> Response:
    log.warning("callback.refused", route=route, reason=reason,
                peer=request.client.host if request.client else None)
    return JSONResponse({"error": reason}, status_code=status)


def _guard(request: Request, ctx: NotifyContext, token: str, route: str) -> Response | None:
    expected = ctx.settings.callback_token
    if expected is None or not hmac.compare_digest(token.encode(), expected.get_secret_value().encode()):
        return _refuse(request, route, "bad_token", 404)
    if not ctx.allowed(request.client.host if request.client else None):
        return _refuse(request, route, "address_not_allowed", 403)
    return None


async def _receipts(request: Request, provider_name: str, token: str, ok: dict[str, object]) -> Response:
    ctx = _ctx(request)
    route = f"{provider_name}.receipts"
    if (refused := _guard(request, ctx, token, route)) is not None:
        return refused
    provider = ctx.provider(provider_name)
    if provider is None:
        return _refuse(request, route, "provider_not_active", 404)
    body = await request.body()
    try:
        receipts = provider.parse_receipts(body, request.headers.get("content-type", ""))
    except ValueError:
        return _refuse(request, route, "malformed", 400)
    async with ctx.pool.acquire() as conn, conn.transaction():
        outcome = await apply_receipts(conn, provider.name, receipts, cipher=ctx.cipher,
                                       sms_available=Channel.SMS in ctx.providers)
    log.info("callback.receipts", provider=provider.name, received=len(receipts), delivered=outcome.delivered,
             failed=outcome.failed, unchanged=outcome.unchanged, early=outcome.early)
    return JSONResponse(ok)


async def _uplinks(request: Request, ctx: NotifyContext, provider: ChannelProvider, route: str,
                   ok: dict[str, object] | str) -> Response:
    body = await request.body()
    try:
        uplinks = provider.parse_uplinks(body, request.headers.get("content-type", ""))
    except ValueError:
        return _refuse(request, route, "malformed", 400)
    async with ctx.pool.acquire() as conn:  # two statements, the writes in one: no transaction needed
        await record_replies(conn, provider=provider.name, channel=provider.channel, uplinks=uplinks,
                             cipher=ctx.cipher, window_hours=ctx.settings.reply_window_hours)
    if isinstance(ok, str):
        return PlainTextResponse(ok)
    return JSONResponse(ok)


async def _sms_uplinks(request: Request, provider_name: str, token: str, ok: dict[str, object]) -> Response:
    ctx = _ctx(request)
    route = f"{provider_name}.uplinks"
    if (refused := _guard(request, ctx, token, route)) is not None:
        return refused
    provider = ctx.provider(provider_name)
    if provider is None:
        return _refuse(request, route, "provider_not_active", 404)
    return await _uplinks(request, ctx, provider, route, ok)


@router.get("/aliyun/{token}/report")
@router.get("/aliyun/{token}/up")
async def aliyun_check(request: Request, token: str) -> Response:
    """Aliyun's connectivity check (GET, answered within 700 ms): ``{"code":0,"msg":"成功"}``."""
    if (refused := _guard(request, _ctx(request), token, "aliyun.check")) is not None:
        return refused
    return JSONResponse({"code": 0, "msg": "成功"})


@router.post("/aliyun/{token}/report")
async def aliyun_report(request: Request, token: str) -> Response:
    """Aliyun SmsReport push (JSON array of delivery receipts)."""
    return await _receipts(request, "aliyun", token, _ALIYUN_OK)


@router.post("/aliyun/{token}/up")
async def aliyun_up(request: Request, token: str) -> Response:
    """Aliyun SmsUp push (JSON array of replies)."""
    return await _sms_uplinks(request, "aliyun", token, _ALIYUN_OK)


@router.post("/tencent/{token}/status")
async def tencent_status(request: Request, token: str) -> Response:
    """Tencent SMS status callback (JSON array of delivery receipts)."""
    return await _receipts(request, "tencent", token, _TENCENT_OK)


@router.post("/tencent/{token}/reply")
async def tencent_reply(request: Request, token: str) -> Response:
    """Tencent SMS reply callback (one JSON object)."""
    return await _sms_uplinks(request, "tencent", token, _TENCENT_OK)


def _wechat_refusal(request: Request, ctx: NotifyContext, signature: str, timestamp: str, nonce: str) -> Response | None:
    token = ctx.settings.callback_token
    if token is None:
        return _refuse(request, "wechat", "no_token_configured", 403)
    if not ctx.allowed(request.client.host if request.client else None, wechat=True):
        return _refuse(request, "wechat", "address_not_allowed", 403)
    try:
        check_signature(token.get_secret_value(), signature, timestamp, nonce)
    except InvalidSignatureException:
        return _refuse(request, "wechat", "bad_signature", 403)
    try:
        skew = abs(time.time() - int(timestamp))
    except ValueError:
        return _refuse(request, "wechat", "bad_timestamp", 400)
    if skew > ctx.settings.wechat_callback_max_skew_seconds:
        return _refuse(request, "wechat", "stale_timestamp", 403)
    return None


@router.get("/wechat")
async def wechat_verify(
    request: Request,
    signature: Annotated[str, Query()] = "",
    timestamp: Annotated[str, Query()] = "",
    nonce: Annotated[str, Query()] = "",
    echostr: Annotated[str, Query()] = "",
) -> Response:
    """WeChat's server check: answers ``echostr`` when the signature holds."""
    ctx = _ctx(request)
    if (refused := _wechat_refusal(request, ctx, signature, timestamp, nonce)) is not None:
        return refused
    return PlainTextResponse(echostr)


@router.post("/wechat")
async def wechat_event(
    request: Request,
    signature: Annotated[str, Query()] = "",
    timestamp: Annotated[str, Query()] = "",
    nonce: Annotated[str, Query()] = "",
) -> Response:
    """WeChat event push: ``TEMPLATESENDJOBFINISH`` (delivery receipt) or a text message (a reply)."""
    ctx = _ctx(request)
    if (refused := _wechat_refusal(request, ctx, signature, timestamp, nonce)) is not None:
        return refused
    provider = ctx.provider("wechat")
    if provider is None:
        return _refuse(request, "wechat", "provider_not_active", 404)
    body = await request.body()
    content_type = request.headers.get("content-type", "")
    try:
        receipts = provider.parse_receipts(body, content_type)
        uplinks = provider.parse_uplinks(body, content_type)
    except ValueError:
        return _refuse(request, "wechat", "malformed", 400)
    ts, body_sha256 = int(timestamp), hashlib.sha256(body).digest()
    # Nonces are kept for two freshness windows: a push that passed the skew check may wait (behind a
    # group, a slow database) before its nonce is stored, and its earlier copy must still be there.
    floor = int(time.time() - 2 * ctx.settings.wechat_callback_max_skew_seconds)
    if floor > ctx.nonces_pruned_below:  # at most once a second: one push's prune covers the others'
        ctx.nonces_pruned_below = floor
        async with ctx.pool.acquire() as conn:
            await _prune_nonces(conn, ts_floor=floor)
    seen: bool | None
    if receipts and not uplinks:
        # A delivery receipt per push, hundreds a second in a fan-out: applied by group commit.
        seen = await _receipt_group(ctx).submit(_ReceiptPush(ts, nonce, body_sha256, tuple(receipts)))
    else:
        async with ctx.pool.acquire() as conn, conn.transaction():
            seen = await _first_use(conn, ts, nonce, body_sha256)
            if seen is None:
                if receipts:
                    await apply_receipts(conn, provider.name, receipts, cipher=ctx.cipher,
                                         sms_available=Channel.SMS in ctx.providers)
                await record_replies(conn, provider=provider.name, channel=Channel.WECHAT, uplinks=uplinks,
                                     cipher=ctx.cipher, window_hours=ctx.settings.reply_window_hours)
    if seen is False:
        return _refuse(request, "wechat", "replayed_nonce", 403)
    if seen:
        log.info("callback.wechat_retry_answered", route="wechat")
    return PlainTextResponse("success")


@dataclass(frozen=True)
class _ReceiptPush:
    ts: int
    nonce: str
    body_sha256: bytes
    receipts: tuple[DeliveryReceipt, ...]


def _receipt_group(ctx: NotifyContext) -> GroupCommit[_ReceiptPush, bool | None]:
    """The context's group commit of WeChat receipt pushes (made on first use)."""
    if ctx.wechat_receipt_group is None:
        ctx.wechat_receipt_group = GroupCommit(lambda pushes: _apply_receipt_pushes(ctx, pushes),
                                               transient=is_transient, name="wechat_receipts")
    group: GroupCommit[_ReceiptPush, bool | None] = ctx.wechat_receipt_group
    return group


async def _apply_receipt_pushes(ctx: NotifyContext, pushes: Sequence[_ReceiptPush]) -> list[bool | None]:
    """Apply WeChat receipt pushes in one transaction; per push, what :func:`_first_use` says.

    A push's nonce is recorded in the transaction that applies its receipts, as for a single push. A group
    that fails for a reason other than a transient one is applied again one push per transaction by
    :class:`GroupCommit` (``transient=``), so one bad push fails alone (its caller answers 500 and
    WeChat retries it).
    """
    async with ctx.pool.acquire() as conn, conn.transaction():
        return await _receipt_pushes_in(conn, ctx, pushes)


async def _receipt_pushes_in(conn: asyncpg.Connection, ctx: NotifyContext,
                             pushes: Sequence[_ReceiptPush]) -> list[bool | None]:
    seen = [await _first_use(conn, p.ts, p.nonce, p.body_sha256) for p in pushes]
    fresh = [r for p, s in zip(pushes, seen, strict=True) if s is None for r in p.receipts]
    if fresh:
        await apply_receipts(conn, "wechat", fresh, cipher=ctx.cipher, sms_available=Channel.SMS in ctx.providers)
    return seen


async def _prune_nonces(conn: asyncpg.Connection, *, ts_floor: int) -> None:
    """Forget WeChat nonces whose timestamp is before ``ts_floor`` (Unix s; two freshness windows ago).

    A range scan of the primary key's leading column; concurrent prunes delete disjoint or already-deleted
    rows, so none waits for another's locks longer than its delete. (It was a ``(timestamp, nonce) IN
    (SELECT … LIMIT 1000 FOR UPDATE SKIP LOCKED)`` on every push: a sequential scan and hash join of the
    whole table each time, 4 ms at 18,000 rows, which made it PostgreSQL's costliest statement in a fan-out.)
    """
    await conn.execute("DELETE FROM wechat_callback_nonces WHERE timestamp < $1", ts_floor)


async def _first_use(conn: asyncpg.Connection, ts: int, nonce: str, body_sha256: bytes) -> bool | None:
    """Record ``(ts, nonce)``: None when first seen; else whether the earlier push had the same body.

    Inside the push's transaction: a push whose processing fails leaves no record, so its retry is
    applied; a concurrent duplicate waits for the first to commit and then sees it.
    """
    inserted = await conn.fetchval(
        "INSERT INTO wechat_callback_nonces (timestamp, nonce, body_sha256) VALUES ($1, $2, $3) "
        "ON CONFLICT DO NOTHING RETURNING true",
        ts, nonce, body_sha256,
    )
    if inserted:
        return None
    earlier: bytes | None = await conn.fetchval(
        "SELECT body_sha256 FROM wechat_callback_nonces WHERE timestamp = $1 AND nonce = $2", ts, nonce
    )
    return earlier is not None and hmac.compare_digest(earlier, body_sha256)
