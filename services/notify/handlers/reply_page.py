"""The WeChat reply page: ``GET /r/{token}`` shows the call-out with buttons, ``POST /r/{token}`` answers it.

The token is a signed, expiring link (:mod:`services.notify.adapters.reply_links`) naming one message;
the page never shows the volunteer's phone number or openid. It shows the meeting point, its Amap link
(GCJ-02, :mod:`shared.maps`) and the operator's callback number. ``POST`` takes the form fields ``action`` =
``accept`` | ``decline`` | ``eta`` | ``arrived`` and, for ``eta``, ``eta_minutes`` (1..1440). The answer
is stored and published like an SMS reply (``ReplyReceived`` on ``notify.reply.v1``, channel
``wechat``). Each rendering of the page stamps its forms with a fresh ``tap`` id: the same form sent twice
(a double tap, a browser resending it) publishes once (dedup key: message, tap, action, minutes), and a
later tap on the page the answer returned is a new answer (拒绝 → 接受 → 拒绝 ends declined).

Errors: 404 for a forged or altered link, 410 for an expired one, 422 for an unknown action or
minutes out of range.
"""

from __future__ import annotations

import html
from typing import Annotated, Any
from uuid import uuid4

import asyncpg
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse

from services.notify.adapters.reply_links import ReplyLinkExpired, ReplyLinkInvalid
from services.notify.domain.replies import MAX_ETA_MINUTES, ParsedReply
from services.notify.handlers.callbacks import _ctx
from services.notify.inbound import record_reply
from shared.events import ReplyIntent, utcnow
from shared.logging import get_logger
from shared.maps import AMAP_MARKER_PREFIX
from shared.vocabulary import Channel

__all__ = ["router"]

log = get_logger(__name__)
router = APIRouter(tags=["reply page"])
_HTML: dict[str, Any] = {"content": {"text/html": {"schema": {"type": "string"}}}}
_LINK_REFUSED: dict[int | str, dict[str, Any]] = {404: {"description": "Forged or altered link (an HTML page).", **_HTML},
                 410: {"description": "Expired link (an HTML page).", **_HTML}}
_ACTION_REFUSED: dict[int | str, dict[str, Any]] = {422: {"description": "Unknown action or ETA outside 1..1440 minutes (an HTML page).", **_HTML}}

_LABELS = {"accept": "接受", "decline": "拒绝", "eta": "接受，预计到达", "arrived": "已到达"}
_INTENTS = {"accept": ReplyIntent.ACCEPT, "decline": ReplyIntent.DECLINE, "eta": ReplyIntent.ETA,
            "arrived": ReplyIntent.ARRIVED}

_PAGE = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>红十字志愿者出勤</title>
<style>body{{font-family:sans-serif;margin:1.2em;font-size:18px}}button{{display:block;width:100%;margin:.5em 0;
padding:.8em;font-size:18px;border-radius:8px;border:0}}.a{{background:#c00;color:#fff}}.d{{background:#ddd}}
input{{font-size:18px;width:5em}}.map{{display:block;text-align:center;background:#06c;color:#fff;
padding:.8em;border-radius:8px;text-decoration:none}}</style></head><body>
<h2>{title}</h2><p>{body}</p>{where}{status}
<form method="post"><input type="hidden" name="tap" value="{tap}"><button class="a" name="action" value="accept">接受</button>
<button class="d" name="action" value="decline">拒绝</button></form>
<form method="post"><input type="hidden" name="tap" value="{tap}"><input type="hidden" name="action" value="eta">预计
<input name="eta_minutes" type="number" min="1" max="1440" value="20"> 分钟到达 <button class="a">接受并告知到达时间</button></form>
<form method="post"><input type="hidden" name="tap" value="{tap}"><button class="d" name="action" value="arrived">我已到达</button></form>
</body></html>"""


async def _load(request: Request, token: str) -> tuple[asyncpg.Record | None, HTMLResponse | None]:
    ctx = _ctx(request)
    if ctx.links is None:
        return None, HTMLResponse("<p>链接无效</p>", status_code=404)
    try:
        message_id = ctx.links.message_id(token)
    except ReplyLinkExpired:
        log.info("reply_page.expired")
        return None, HTMLResponse("<p>链接已过期，请回复短信或联系调度员。</p>", status_code=410)
    except ReplyLinkInvalid:
        log.warning("reply_page.refused", reason="bad_token", peer=request.client.host if request.client else None)
        return None, HTMLResponse("<p>链接无效</p>", status_code=404)
    async with ctx.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT m.message_id, m.callout_id, m.volunteer_id, m.body, m.content, m.drill "
            "FROM messages m WHERE m.message_id = $1", message_id,
        )
    if row is None:
        return None, HTMLResponse("<p>链接无效</p>", status_code=404)
    return row, None


def _where(content: dict[str, str]) -> str:
    """Meeting point, the map link (a button the phone opens in Amap) and the callback number (tap to call)."""
    parts = []
    if place := content.get("place"):
        parts.append(f"<p>集合地点：<b>{html.escape(place)}</b></p>")
    if (url := content.get("map_url")) and url.startswith(AMAP_MARKER_PREFIX):
        parts.append(f'<p><a class="map" href="{html.escape(url, quote=True)}">在高德地图中打开集合地点</a></p>')
    if phone := content.get("callback_phone"):
        parts.append(f'<p>调度电话：<a href="tel:{html.escape(phone, quote=True)}">{html.escape(phone)}</a></p>')
    return "".join(parts)


def _page(r: asyncpg.Record, status: str = "") -> str:
    title = ("演练：" if r["drill"] else "") + str(r["content"].get("title", ""))
    return _PAGE.format(title=html.escape(title), body=html.escape(r["body"] or ""), where=_where(r["content"]),
                        status=f"<p><b>{html.escape(status)}</b></p>" if status else "", tap=uuid4().hex)


@router.get("/r/{token}", response_class=HTMLResponse, responses=_LINK_REFUSED)
async def reply_page(request: Request, token: str) -> HTMLResponse:
    """The page for one message: title, text and the answer buttons."""
    row, error = await _load(request, token)
    if error is not None or row is None:
        return error or HTMLResponse("<p>链接无效</p>", status_code=404)
    return HTMLResponse(_page(row))


@router.post("/r/{token}", response_class=HTMLResponse, responses={**_LINK_REFUSED, **_ACTION_REFUSED})
async def reply_action(
    request: Request, token: str, action: Annotated[str, Form()], eta_minutes: Annotated[int | None, Form()] = None,
    tap: Annotated[str, Form(pattern=r"^[0-9a-f]{32}$")] = "",
) -> HTMLResponse:
    """Answer the call-out: ``action`` = accept | decline | eta | arrived (+ ``eta_minutes`` for eta)."""
    row, error = await _load(request, token)
    if error is not None or row is None:
        return error or HTMLResponse("<p>链接无效</p>", status_code=404)
    if action not in _INTENTS:
        return HTMLResponse("<p>未知操作</p>", status_code=422)
    if action == "eta" and (eta_minutes is None or not 1 <= eta_minutes <= MAX_ETA_MINUTES):
        return HTMLResponse("<p>到达时间应为1到1440分钟</p>", status_code=422)
    minutes = eta_minutes if action == "eta" else None
    text = _LABELS[action] + (f"{minutes}分钟" if minutes is not None else "")
    ctx = _ctx(request)
    r = row
    async with ctx.pool.acquire() as conn, conn.transaction():
        await record_reply(
            conn, provider="wechat", dedup_key=f"page:{r['message_id']}:{tap}:{action}:{minutes}",
            channel=Channel.WECHAT, text=text, received_at=utcnow(), cipher=ctx.cipher,
            volunteer_id=r["volunteer_id"], callout_id=r["callout_id"],
            parsed=ParsedReply(_INTENTS[action], eta_minutes=minutes), window_hours=ctx.settings.reply_window_hours,
        )
    return HTMLResponse(_page(row, status=f"已收到：{text}"))
