"""The drill's phones keep a bounded number of reply requests in flight (no I/O: a recording client)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from muster.drill.runner import REPLY_CONCURRENCY, DrillState, _reply


class SlowClient:
    """Answers every POST after a pause, counting how many were in flight at once."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.most = 0
        self.posts = 0

    async def post(self, url: str, **_: Any) -> httpx.Response:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        await asyncio.sleep(0.01)
        self.in_flight -= 1
        self.posts += 1
        return httpx.Response(200, request=httpx.Request("POST", url))


async def test_replies_beyond_the_cap_wait_their_turn_and_all_go_out() -> None:
    """Regression: the fault drill queued thousands of replies on one client while notify was down."""
    state, client = DrillState(), SlowClient()
    n = REPLY_CONCURRENCY * 5
    await asyncio.gather(*(
        _reply(state, client, {"recipient": f"+86137{i:08d}", "channel": "sms"}, "1", 0.0)  # type: ignore[arg-type]
        for i in range(n)
    ))
    assert client.posts == n and len(state.sent) == n and not state.errors
    assert client.most == REPLY_CONCURRENCY


class BusyThenOkClient:
    """Answers 503 with Retry-After: 0 twice, then 200."""

    def __init__(self) -> None:
        self.posts = 0

    async def post(self, url: str, **_: Any) -> httpx.Response:
        self.posts += 1
        code = 503 if self.posts <= 2 else 200
        return httpx.Response(code, headers={"Retry-After": "0"}, request=httpx.Request("POST", url))


async def test_a_busy_reply_page_is_tried_again_and_the_reply_counted_once() -> None:
    """Regression (fault drill): replies posted while PostgreSQL restarted were given up after one 500/503."""
    state, client = DrillState(), BusyThenOkClient()
    msg = {"recipient": "+8613700000001", "channel": "wechat", "url": "http://notify/r/x"}
    await _reply(state, client, msg, "1", 0.0, action="accept")  # type: ignore[arg-type]
    assert client.posts == 3 and len(state.sent) == 1 and not state.errors


class CutOffThenOkClient:
    """The first POST is cut off mid-request (a service killed), the second gets a 500, the third a 200."""

    def __init__(self) -> None:
        self.posts = 0

    async def post(self, url: str, **_: Any) -> httpx.Response:
        self.posts += 1
        if self.posts == 1:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        code = 500 if self.posts == 2 else 200
        return httpx.Response(code, headers={"Retry-After": "0"}, request=httpx.Request("POST", url))


async def test_a_reply_page_cut_off_or_failing_is_tapped_again() -> None:
    """Regression (fault drill run 5): page replies cut off by a kill or answered 500 were never retried."""
    state, client = DrillState(), CutOffThenOkClient()
    msg = {"recipient": "openid-x", "channel": "wechat", "url": "http://notify/r/x"}
    await _reply(state, client, msg, "1", 0.0, action="accept")  # type: ignore[arg-type]
    assert client.posts == 3 and len(state.sent) == 1 and not state.errors


async def test_an_sms_reply_that_may_have_left_is_not_sent_again() -> None:
    """A phone's SMS cut off mid-request may have gone: the phone does not resend it by itself."""
    state, client = DrillState(), CutOffThenOkClient()
    await _reply(state, client, {"recipient": "+8613700000002", "channel": "sms"}, "1", 0.0)  # type: ignore[arg-type]
    assert client.posts == 1 and not state.sent and len(state.errors) == 1
