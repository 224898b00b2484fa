"""WeChat callbacks on the real PostgreSQL: a signed (timestamp, nonce) is used once; the allow-list holds."""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import time
import uuid
from typing import Any

import pytest
from wechatpy.utils import WeChatSigner

from services.notify.testing import NotifyStack, running_notify


def _signed(token: str, ts: int, nonce: str) -> dict[str, str]:
    signer = WeChatSigner()
    signer.add_data(token, str(ts), nonce)
    return {"signature": signer.signature, "timestamp": str(ts), "nonce": nonce}


def _text_push(openid: str, text: str, msg_id: int, ts: int) -> bytes:
    return (f"<xml><ToUserName><![CDATA[gh_muster]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{ts}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[{text}]]></Content><MsgId>{msg_id}</MsgId></xml>").encode()


async def _replies(ns: NotifyStack, dedup_keys: list[str]) -> int:
    async with ns.pool.acquire() as conn:
        return int(await conn.fetchval("SELECT count(*) FROM replies WHERE dedup_key = ANY($1::text[])", dedup_keys))


async def test_a_signed_nonce_is_used_once_and_an_exact_retry_answers_success(notify_stack: NotifyStack) -> None:
    ns = notify_stack
    token = ns.settings.callback_token.get_secret_value()
    openid = "o" + uuid.uuid4().hex[:27]
    ts, nonce = int(time.time()), uuid.uuid4().hex[:16]
    first_id, forged_id = random.randint(10**15, 10**16), random.randint(10**15, 10**16)
    keys = [f"wechat:{first_id}", f"wechat:{forged_id}"]
    params = _signed(token, ts, nonce)
    headers = {"content-type": "text/xml"}
    first = _text_push(openid, "收到", first_id, ts)

    r = await ns.http.post(f"{ns.url}/callbacks/wechat", params=params, content=first, headers=headers)
    assert (r.status_code, r.text) == (200, "success")
    assert await _replies(ns, keys) == 1

    # the provider retrying the same push (it did not get our answer): success, nothing new
    retry = await ns.http.post(f"{ns.url}/callbacks/wechat", params=params, content=first, headers=headers)
    assert (retry.status_code, retry.text) == (200, "success")

    # a captured signature replayed with another body within the window: refused, nothing stored
    forged = _text_push(openid, "2", forged_id, ts)
    replay = await ns.http.post(f"{ns.url}/callbacks/wechat", params=params, content=forged, headers=headers)
    assert replay.status_code == 403 and replay.json() == {"error": "replayed_nonce"}
    assert await _replies(ns, keys) == 1

    # the same body under a fresh nonce is a new push (the reply's own MsgId keeps it single)
    fresh = await ns.http.post(f"{ns.url}/callbacks/wechat", params=_signed(token, ts, uuid.uuid4().hex[:16]),
                               content=forged, headers=headers)
    assert (fresh.status_code, fresh.text) == (200, "success")
    assert await _replies(ns, keys) == 2


async def test_nonces_past_the_window_are_pruned(notify_stack: NotifyStack) -> None:
    ns = notify_stack
    token = ns.settings.callback_token.get_secret_value()
    old_ts = int(time.time() - 2 * ns.settings.wechat_callback_max_skew_seconds) - 10
    stale_nonce = uuid.uuid4().hex[:16]
    async with ns.pool.acquire() as conn:
        await conn.execute("INSERT INTO wechat_callback_nonces (timestamp, nonce, body_sha256) VALUES ($1, $2, $3)",
                           old_ts, stale_nonce, b"\0" * 32)
    # a push prunes at most once a second (when the window's floor has moved): start the next second
    await asyncio.sleep(math.ceil(time.time()) - time.time() + 0.01)
    ts = int(time.time())
    body = _text_push("o" + uuid.uuid4().hex[:27], "1", random.randint(10**15, 10**16), ts)
    r = await ns.http.post(f"{ns.url}/callbacks/wechat", params=_signed(token, ts, uuid.uuid4().hex[:16]),
                           content=body, headers={"content-type": "text/xml"})
    assert r.status_code == 200
    async with ns.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM wechat_callback_nonces WHERE nonce = $1", stale_nonce) == 0


@pytest.fixture(scope="module")
async def walled_notify(stack: Any) -> Any:
    async with running_notify(stack.bootstrap, stack.notify_dsn, wechat_callback_allow_ips=["10.99.0.0/16"]) as ns:
        yield ns


async def test_wechat_callbacks_from_outside_the_allow_list_are_refused(walled_notify: NotifyStack) -> None:
    ns = walled_notify
    token = ns.settings.callback_token.get_secret_value()
    ts = int(time.time())
    msg_id = random.randint(10**15, 10**16)
    body = _text_push("o" + uuid.uuid4().hex[:27], "1", msg_id, ts)
    post = await ns.http.post(f"{ns.url}/callbacks/wechat", params=_signed(token, ts, uuid.uuid4().hex[:16]),
                              content=body, headers={"content-type": "text/xml"})
    assert post.status_code == 403 and post.json() == {"error": "address_not_allowed"}
    check = await ns.http.get(f"{ns.url}/callbacks/wechat",
                              params={**_signed(token, ts, uuid.uuid4().hex[:16]), "echostr": "e1"})
    assert check.status_code == 403
    assert await _replies(ns, [f"wechat:{msg_id}"]) == 0


def _receipt_push(openid: str, msgid: str, ts: int) -> bytes:
    return (f"<xml><ToUserName><![CDATA[gh_muster]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{ts}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
            "<Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event>"
            f"<MsgID>{msgid}</MsgID><Status><![CDATA[success]]></Status></xml>").encode()


async def _sent_messages(ns: NotifyStack, n: int) -> tuple[list[str], list[uuid.UUID]]:
    msgids = [str(random.randint(10**15, 10**16)) for _ in range(n)]
    message_ids = [uuid.uuid4() for _ in range(n)]
    async with ns.pool.acquire() as conn:
        await conn.executemany(
            "INSERT INTO messages (message_id, callout_id, kind, volunteer_id, incident_id, content, status, channel, "
            "provider, provider_message_id, sent_at) VALUES ($1, $2, 'callout', $3, $4, '{}', 'sent', 'wechat', "
            "'wechat', $5, now())",
            [(m, uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), pid) for m, pid in zip(message_ids, msgids, strict=True)],
        )
    return msgids, message_ids


def _push(ts: int, nonce: str, body: bytes, msgid: str) -> Any:
    from datetime import UTC, datetime

    from services.notify.channels.base import DeliveryReceipt
    from services.notify.handlers.callbacks import _ReceiptPush

    receipt = DeliveryReceipt(provider_message_id=msgid, message_id=None, recipient=None, delivered=True,
                              error_code=None, reported_at=datetime.now(UTC))
    return _ReceiptPush(ts, nonce, hashlib.sha256(body).digest(), (receipt,))


async def _delivered(ns: NotifyStack, message_ids: list[uuid.UUID]) -> tuple[int, int]:
    async with ns.pool.acquire() as conn:
        delivered = await conn.fetchval("SELECT count(*) FROM messages WHERE message_id = ANY($1::uuid[]) "
                                        "AND status = 'delivered'", message_ids)
        events = await conn.fetchval(
            "SELECT count(*) FROM outbox WHERE headers->>'event_type' = 'MessageDelivered' "
            "AND (convert_from(payload, 'UTF8')::jsonb->>'message_id')::uuid = ANY($1::uuid[])", message_ids)
        await conn.execute("DELETE FROM messages WHERE message_id = ANY($1::uuid[])", message_ids)
    return delivered, events


async def test_concurrent_receipt_pushes_each_deliver_once_with_retries_and_replays(notify_stack: NotifyStack) -> None:
    """Receipt pushes are applied by group commit: concurrent ones share transactions, with a push's rules.

    Twenty pushes at once (one sent twice at once, as WeChat retrying) each mark their message delivered
    once, with one ``MessageDelivered``; afterwards an exact retry answers success and a captured
    signature with another body is refused, while new pushes go on.
    """
    ns = notify_stack
    token = ns.settings.callback_token.get_secret_value()
    n = 24
    msgids, message_ids = await _sent_messages(ns, n)
    openids = ["o" + uuid.uuid4().hex[:27] for _ in range(n)]
    ts = int(time.time())
    pushes = [(_signed(token, ts, uuid.uuid4().hex[:16]), _receipt_push(o, m, ts))
              for o, m in zip(openids, msgids, strict=True)]
    headers = {"content-type": "text/xml"}

    async def post(params: dict[str, str], body: bytes) -> tuple[int, str]:
        r = await ns.http.post(f"{ns.url}/callbacks/wechat", params=params, content=body, headers=headers)
        return r.status_code, r.text

    first = await asyncio.gather(*(post(p, b) for p, b in [*pushes[:20], pushes[0]]))
    assert first == [(200, "success")] * 21
    retry, forged, *rest = await asyncio.gather(
        post(*pushes[1]), post(pushes[2][0], pushes[3][1]), *(post(p, b) for p, b in pushes[20:]))
    assert retry == (200, "success")
    assert forged == (403, '{"error":"replayed_nonce"}')
    assert rest == [(200, "success")] * (n - 20)
    assert await _delivered(ns, message_ids) == (n, n)  # every message delivered, one MessageDelivered each


async def test_two_copies_of_a_nonce_in_one_group_answer_as_a_retry_or_a_replay(notify_stack: NotifyStack) -> None:
    from services.notify.handlers.callbacks import _apply_receipt_pushes

    ns = notify_stack
    msgids, message_ids = await _sent_messages(ns, 2)
    ts, nonce = int(time.time()), uuid.uuid4().hex[:16]
    push = _push(ts, nonce, b"first", msgids[0])
    forged = _push(ts, nonce, b"another body", msgids[1])
    out = await _apply_receipt_pushes(ns.runtime.extras["notify"], [push, push, forged])
    assert out == [None, True, False]  # applied; the same push again; a captured signature, another body
    assert await _delivered(ns, message_ids) == (1, 1)


async def test_a_push_that_fails_in_a_group_fails_alone(notify_stack: NotifyStack) -> None:
    from services.notify.handlers.callbacks import _receipt_group

    ns = notify_stack
    msgids, message_ids = await _sent_messages(ns, 3)
    ts = int(time.time())
    pushes = [_push(ts, uuid.uuid4().hex[:16], b"1", msgids[0]),
              _push(ts, "bad\x00nonce", b"2", msgids[1]),  # PostgreSQL's text refuses NUL: this push fails
              _push(ts, uuid.uuid4().hex[:16], b"3", msgids[2])]
    out = await _receipt_group(ns.runtime.extras["notify"]).apply_group(pushes)
    assert out[0] is None and out[2] is None
    assert isinstance(out[1], Exception)
    assert await _delivered(ns, message_ids) == (2, 2)


async def test_a_push_whose_own_commit_fails_gives_one_result_each(
    notify_stack: NotifyStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the one-by-one path, a push whose COMMIT fails is that push's error only (it had been counted twice)."""
    from types import SimpleNamespace

    from services.notify.handlers import callbacks

    commits = 0

    class Transaction:
        async def __aenter__(self) -> None:
            return None

        async def __aexit__(self, exc_type: Any, *_: Any) -> bool:
            nonlocal commits
            if exc_type is None:
                commits += 1
                if commits == 2:  # the one-by-one path's second push
                    raise ConnectionResetError("connection lost during COMMIT")
            return False

    class Conn:
        def transaction(self) -> Transaction:
            return Transaction()

    class Acquired:
        async def __aenter__(self) -> Conn:
            return Conn()

        async def __aexit__(self, *_: Any) -> bool:
            return False

    class Pool:
        def acquire(self) -> Acquired:
            return Acquired()

    async def pushes_in(conn: Any, ctx: Any, pushes: Any) -> list[bool | None]:
        if len(pushes) > 1:
            raise ValueError("one push of the group is bad")
        return [None]

    monkeypatch.setattr(callbacks, "_receipt_pushes_in", pushes_in)
    ctx = SimpleNamespace(pool=Pool(), wechat_receipt_group=None)
    out = await callbacks._receipt_group(ctx).apply_group(["p0", "p1", "p2"])  # type: ignore[arg-type, list-item]
    assert len(out) == 3
    assert out[0] is None and out[2] is None and isinstance(out[1], ConnectionResetError)
