"""The callback pusher under a slow or failing receiver (both found by ``bench/reply_path.py``).

* Replies arriving one by one while notify was busy each became their own SmsUp push waiting for a
  slot (1,300 pushes of one reply queued at 100 replies/s): what queues while every slot is busy
  must leave in one push.
* Receipts being re-pushed (minutes apart, notify having timed out under load) held the pusher's
  shared slots while they waited, so volunteers' replies queued behind them for minutes: a push
  waiting for its re-push holds no slot, and receipts and replies have separate slots.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from simulator.pusher import CallbackPusher, Push
from simulator.state import SimState


class _SlowReceiver:
    """Records the size of each push; holds the first one until ``release`` is set."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.first_arrived = asyncio.Event()
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        items = orjson.loads(await request.read())
        self.sizes.append(len(items))
        if len(self.sizes) == 1:
            self.first_arrived.set()
            await self.release.wait()
        return web.json_response({"code": 0, "msg": "接收成功"})


@contextlib.asynccontextmanager
async def _serving(pattern: str, handle: Any) -> AsyncIterator[str]:
    """An aiohttp app answering POSTs on ``pattern`` at a free local port; yields its base URL."""
    app = web.Application()
    app.router.add_post(pattern, handle)
    async with TestServer(app, host="127.0.0.1") as server:
        yield str(server.make_url("")).rstrip("/")


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[_SlowReceiver, str]]:
    rec = _SlowReceiver()
    async with _serving("/up", rec.handle) as base:
        try:
            yield rec, f"{base}/up"
        finally:
            rec.release.set()


async def test_items_queued_behind_a_busy_slot_leave_in_one_push(receiver: tuple[_SlowReceiver, str]) -> None:
    rec, url = receiver
    state = SimState()
    async with aiohttp.ClientSession() as http:
        pusher = CallbackPusher(
            http=http, state=state, delay=0.0, minute=0.01, concurrency=1,
            build=lambda _stream, items: (url, orjson.dumps(items), {"content-type": "application/json"}),
        )
        try:
            pusher.submit(Push("aliyun_up", "aliyun", {"n": 0}))
            await asyncio.wait_for(rec.first_arrived.wait(), 5)
            for n in range(1, 51):  # one by one, as replies arrive from separate phones
                pusher.submit(Push("aliyun_up", "aliyun", {"n": n}))
                await asyncio.sleep(0)
            rec.release.set()
            await pusher.drain(timeout=10)
        finally:
            await pusher.aclose()
    assert rec.sizes == [1, 50]
    assert state.stats["uplinks_sent"] == 51 and state.stats["callback_pushes"] == 2


async def test_batches_never_exceed_the_provider_limit(receiver: tuple[_SlowReceiver, str]) -> None:
    rec, url = receiver
    async with aiohttp.ClientSession() as http:
        pusher = CallbackPusher(
            http=http, state=SimState(), delay=0.0, minute=0.01, concurrency=1, max_batch=100,
            build=lambda _stream, items: (url, orjson.dumps(items), {"content-type": "application/json"}),
        )
        try:
            pusher.submit(Push("aliyun_up", "aliyun", {"n": 0}))
            await asyncio.wait_for(rec.first_arrived.wait(), 5)
            for n in range(1, 251):
                pusher.submit(Push("aliyun_up", "aliyun", {"n": n}))
                await asyncio.sleep(0)
            rec.release.set()
            await pusher.drain(timeout=10)
        finally:
            await pusher.aclose()
    assert rec.sizes == [1, 100, 100, 50]


class _FlakyReceiver:
    """Answers 500 to the first push on each path in ``fail_first``; records ``(path, body, status)`` in order.

    ``arrived`` holds each push's arrival on the loop's clock (s), in the same order as ``log``.
    """

    def __init__(self) -> None:
        self.fail_first: set[str] = set()
        self.log: list[tuple[str, bytes, int]] = []
        self.arrived: list[float] = []
        self.failed = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        path = request.path
        self.arrived.append(asyncio.get_running_loop().time())
        if path in self.fail_first:
            self.fail_first.discard(path)
            self.log.append((path, body, 500))
            self.failed.set()
            return web.Response(status=500)
        self.log.append((path, body, 200))
        return web.json_response({"code": 0, "msg": "接收成功"})


@pytest.fixture
async def flaky_server() -> AsyncIterator[tuple[_FlakyReceiver, str]]:
    rec = _FlakyReceiver()
    async with _serving("/{path:.*}", rec.handle) as base:
        yield rec, base


async def _run_flaky(base: str, rec: _FlakyReceiver, first: Push, second: Push) -> list[tuple[str, bytes, int]]:
    """Push ``first`` (refused once, re-pushed after 1 documented minute = 1.5 s here), then ``second``."""
    async with aiohttp.ClientSession() as http:
        pusher = CallbackPusher(
            http=http, state=SimState(), delay=0.0, minute=1.5, concurrency=1,
            build=lambda stream, items: (f"{base}/{stream}", orjson.dumps(items), {}),
        )
        try:
            pusher.submit(first)
            await asyncio.wait_for(rec.failed.wait(), 5)
            pusher.submit(second)
            await pusher.drain(timeout=15)
        finally:
            await pusher.aclose()
    return rec.log


async def test_a_receipt_waiting_for_its_re_push_does_not_hold_back_a_reply(
    flaky_server: tuple[_FlakyReceiver, str],
) -> None:
    rec, base = flaky_server
    rec.fail_first = {"/aliyun_report"}
    log = await _run_flaky(base, rec, Push("aliyun_report", "aliyun", {"r": 1}), Push("aliyun_up", "aliyun", {"u": 1}))
    assert [(p, s) for p, _, s in log] == [("/aliyun_report", 500), ("/aliyun_up", 200), ("/aliyun_report", 200)]


async def test_a_push_waiting_for_its_re_push_gives_its_slot_to_the_next(
    flaky_server: tuple[_FlakyReceiver, str],
) -> None:
    rec, base = flaky_server
    rec.fail_first = {"/aliyun_up"}
    log = await _run_flaky(base, rec, Push("aliyun_up", "aliyun", {"u": 1}), Push("aliyun_up", "aliyun", {"u": 2}))
    assert [(orjson.loads(b), s) for _, b, s in log] == [([{"u": 1}], 500), ([{"u": 2}], 200), ([{"u": 1}], 200)]


async def test_wechat_re_pushes_keep_their_documented_seconds_under_a_compressed_minute(
    flaky_server: tuple[_FlakyReceiver, str],
) -> None:
    """WeChat's event re-pushes are seconds apart (5 s documented), not a tenth of a compressed minute.

    With the fault drill's compressed minute (8 s), the old schedule (0.1 minute) re-pushed a receipt
    after 0.8 s, and all 3 re-pushes were over before a killed notify came back: the receipt was lost
    and the call-out went out again by SMS.
    """
    rec, base = flaky_server
    rec.fail_first = {"/wechat_event"}
    async with aiohttp.ClientSession() as http:
        pusher = CallbackPusher(
            http=http, state=SimState(), delay=0.0, minute=0.01, concurrency=1, wechat_retry_seconds=0.6,
            build=lambda stream, items: (f"{base}/{stream}", orjson.dumps(items), {}),
        )
        try:
            pusher.submit(Push("wechat_event", "wechat", {"msgid": 1}))
            await asyncio.wait_for(rec.failed.wait(), 5)
            await pusher.drain(timeout=10)
        finally:
            await pusher.aclose()
    assert [s for _, _, s in rec.log] == [500, 200]
    # Both ends timed at the receiver: the refused push arrived before the pusher read its 500 and began
    # to wait. (Timed from the test task's wake-up, a loaded loop that woke it late made the wait look short.)
    repushed_after = rec.arrived[1] - rec.arrived[0]
    assert repushed_after >= 0.6, repushed_after  # the old schedule: 0.1 × 0.01 s = 1 ms


async def test_pending_is_counted_per_stream_until_delivered(flaky_server: tuple[_FlakyReceiver, str]) -> None:
    """``/sim/stats`` shows what is still pending per stream (the reply-path bench waits for the set-up's receipts)."""
    rec, base = flaky_server
    rec.fail_first = {"/aliyun_report"}
    async with aiohttp.ClientSession() as http:
        pusher = CallbackPusher(
            http=http, state=SimState(), delay=0.0, minute=1.5, concurrency=1,
            build=lambda stream, items: (f"{base}/{stream}", orjson.dumps(items), {}),
        )
        try:
            pusher.submit(Push("aliyun_report", "aliyun", {"r": 1}))
            pusher.submit(Push("aliyun_report", "aliyun", {"r": 2}))
            await asyncio.wait_for(rec.failed.wait(), 5)  # both in one push, refused: waiting for the re-push
            pusher.submit(Push("aliyun_up", "aliyun", {"u": 1}))
            assert pusher.pending_by_stream == {"aliyun_report": 2, "aliyun_up": 1}
            # The reply's push is answered; the pusher counts it done once it has read the answer (polled:
            # a fixed 50 ms was too short for a loaded loop). The receipts still wait for their re-push.
            async with asyncio.timeout(10):
                while "aliyun_up" in pusher.pending_by_stream:
                    await asyncio.sleep(0.01)
            assert any(p == "/aliyun_up" for p, _, _ in rec.log)
            assert pusher.pending_by_stream == {"aliyun_report": 2}
            await pusher.drain(timeout=15)
            assert pusher.pending_by_stream == {} and pusher.pending == 0
        finally:
            await pusher.aclose()


async def test_the_receipt_delay_runs_from_each_receipts_submission_not_once_per_push(
    flaky_server: tuple[_FlakyReceiver, str],
) -> None:
    """WeChat pushes one receipt per request; the delay was slept once per push, in turn (10 a second at 0.1 s).

    Ten receipts submitted together with a 1 s delay all leave about 1 s later; one after another
    they would need 10 s, past the drain's 5 s.
    """
    rec, base = flaky_server
    async with aiohttp.ClientSession() as http:
        pusher = CallbackPusher(
            http=http, state=SimState(), delay=1.0, minute=0.01,
            build=lambda stream, items: (f"{base}/{stream}", orjson.dumps(items), {}),
        )
        try:
            for n in range(10):
                pusher.submit(Push("wechat_event", "wechat", {"n": n}))
            await pusher.drain(timeout=5)
        finally:
            await pusher.aclose()
    assert sorted(orjson.loads(b)[0]["n"] for _, b, _ in rec.log) == list(range(10))


async def test_uplinks_submitted_within_the_batch_time_share_one_push(flaky_server: tuple[_FlakyReceiver, str]) -> None:
    """With ``batch_seconds`` an uplink waits for others (a free slot no longer means one push per reply)."""
    rec, base = flaky_server
    async with aiohttp.ClientSession() as http:
        pusher = CallbackPusher(
            http=http, state=SimState(), delay=0.0, minute=0.01, batch_seconds=0.5,
            build=lambda stream, items: (f"{base}/{stream}", orjson.dumps(items), {}),
        )
        try:
            for n in range(5):  # one by one, as replies arrive from separate phones
                pusher.submit(Push("aliyun_up", "aliyun", {"n": n}))
                await asyncio.sleep(0.01)
            pusher.submit(Push("tencent_reply", "tencent", {"n": 5}))  # one object per push: never waits for others
            await pusher.drain(timeout=5)
        finally:
            await pusher.aclose()
    assert [(p, [x["n"] for x in orjson.loads(b)]) for p, b, _ in rec.log] == [
        ("/tencent_reply", [5]), ("/aliyun_up", [0, 1, 2, 3, 4])]
