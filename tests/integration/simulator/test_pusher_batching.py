"""The callback pusher under a slow receiver: what queues while every slot is busy leaves in one push.

Found by ``bench/reply_path.py``: replies arriving one by one while notify was busy each became their
own SmsUp push waiting for a slot (1,300 pushes of one reply queued at 100 replies/s), so a busy
notify got ever more requests instead of fuller ones.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from aiohttp import web

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


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[_SlowReceiver, str]]:
    rec = _SlowReceiver()
    app = web.Application()
    app.router.add_post("/up", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield rec, f"http://127.0.0.1:{port}/up"
    finally:
        rec.release.set()
        await runner.cleanup()


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
