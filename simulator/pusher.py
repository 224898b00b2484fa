"""Pushes delivery receipts and uplinks to notify's callbacks, batched, retried as each provider documents.

Retry schedules (Aliyun's and Tencent's in documented minutes, scaled by ``callback_minute_seconds``;
WeChat's in real seconds, ``wechat_retry_seconds``, unscaled: its document gives seconds, not minutes):

=========  ==========================================  =============================================
provider   batch                                       re-pushes after a non-200 or a timeout
=========  ==========================================  =============================================
aliyun     SmsReport / SmsUp JSON arrays (≤100 here)   1, 5, 10 minutes, then gives up (101867.html)
tencent    status JSON array ≤100 / reply one object   2 more times (1, 1 minutes here) (382/59178)
wechat     one XML event per push                      3 more times, 5 s apart (WeChat waits 5 s for an
                                                       answer, then retries, 3 times in all: "接收事件推送",
                                                       developers.weixin.qq.com/doc/offiaccount)
=========  ==========================================  =============================================

Batching (not documented by the providers): an item of an array stream waits ``batch_seconds``
(``SIMULATOR_CALLBACK_BATCH_SECONDS``, 50 ms by default) for others to share its push, and
whatever queued while every push slot was busy leaves together.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from shared.logging import get_logger
from simulator.state import SimState

__all__ = ["CallbackPusher", "Push"]

log = get_logger(__name__)

SCHEDULES: dict[str, tuple[float, ...]] = {
    "aliyun": (1.0, 5.0, 10.0),
    "tencent": (1.0, 1.0),
}
WECHAT_RETRIES = 3
"""WeChat re-pushes an unanswered event 3 more times, ``wechat_retry_seconds`` (5 s) apart."""


#: Streams whose push carries one item (WeChat's event XML, Tencent's reply object).
_ONE_ITEM = frozenset({"wechat_event", "tencent_reply"})


@dataclass(frozen=True)
class Push:
    """One item waiting to be pushed: ``stream`` groups items that may share a request."""

    stream: str  # "aliyun_report" | "tencent_status" | "wechat_event" | "aliyun_up" | "tencent_reply"
    provider: str
    item: Any


class CallbackPusher:
    """Queues receipts per stream, waits ``delay`` seconds, pushes up to ``max_batch`` items per request.

    Args:
        http: the session used for pushes (aiohttp directly: httpx's URL parsing cost ~1 ms a push here).
        state: counters (``receipts_sent``, ``uplinks_sent``, ``callback_failures``…) and the
            ``fail_callbacks`` fault.
        build: ``build(stream, items) -> (url, content, headers)`` renders a push in the provider's format.
        delay: seconds between accepting a message and pushing its receipt.
        batch_seconds: how long an item of an array stream (Aliyun's SmsReport and SmsUp, Tencent's
            status) waits after it was submitted for others to share its push (0: none; a receipt's
            ``delay`` counts towards it). One-item streams (WeChat events, Tencent replies) never wait.
        minute: real seconds per documented minute in Aliyun's and Tencent's retry schedules.
        wechat_retry_seconds: real seconds between WeChat's re-pushes (5 s as documented; not scaled
            by ``minute``, so a compressed schedule does not make WeChat give up in under a second).
        max_batch: items per push at most (Aliyun and Tencent arrays; WeChat and Tencent replies push one).
        concurrency: pushes in flight at once *per stream*. Each stream (receipts, uplinks…) has its own
            slots, as a provider's report and reply callbacks are separate queues, and a push waiting
            for its re-push time holds no slot: a flood of receipts being re-pushed for minutes never
            holds back a volunteer's reply.

    """

    def __init__(self, *, http: aiohttp.ClientSession, state: SimState,
                 build: Callable[[str, list[Any]], tuple[str, bytes, dict[str, str]]],
                 delay: float, minute: float, max_batch: int = 100, concurrency: int = 32,
                 batch_seconds: float = 0.0, wechat_retry_seconds: float = 5.0) -> None:
        self._http = http
        self._state = state
        self._build = build
        self._delay = delay
        self._batch_seconds = batch_seconds
        self._minute = minute
        self._wechat_retry_seconds = wechat_retry_seconds
        self._max_batch = max_batch
        self._queues: dict[str, asyncio.Queue[tuple[float, Push]]] = {}
        self._workers: list[asyncio.Task[None]] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self._concurrency = concurrency
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._pending = 0
        self._pending_by_stream: dict[str, int] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self.timeout_seconds = 10.0
        """How long a push waits for notify's answer before it counts as failed (and is re-pushed)."""

    def submit(self, push: Push) -> None:
        """Queue ``push`` (never blocks)."""
        queue = self._queues.get(push.stream)
        if queue is None:
            queue = self._queues[push.stream] = asyncio.Queue()
            self._slots[push.stream] = asyncio.Semaphore(self._concurrency)
            self._workers.append(asyncio.create_task(self._run(push.stream, queue)))
        self._pending += 1
        self._pending_by_stream[push.stream] = self._pending_by_stream.get(push.stream, 0) + 1
        self._idle.clear()
        wait = self._delay if push.stream not in ("aliyun_up", "tencent_reply") else 0.0
        if push.stream not in _ONE_ITEM:
            wait = max(wait, self._batch_seconds)
        queue.put_nowait((time.monotonic() + wait if wait else 0.0, push))

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait until every queued push was delivered or given up."""
        await asyncio.wait_for(self._idle.wait(), timeout)

    @property
    def pending(self) -> int:
        """Items queued or being pushed (re-pushes waiting on their schedule included)."""
        return self._pending

    @property
    def pending_by_stream(self) -> dict[str, int]:
        """:attr:`pending` per stream (``aliyun_report``, ``wechat_event``, ``aliyun_up``…), streams with none left out."""
        return {k: v for k, v in self._pending_by_stream.items() if v}

    async def aclose(self) -> None:
        for task in [*self._workers, *self._inflight]:
            task.cancel()
        for task in [*self._workers, *self._inflight]:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, stream: str, queue: asyncio.Queue[tuple[float, Push]]) -> None:
        """Form each push when a slot is free, from everything queued by then (up to the batch size).

        Waiting for the slot first is what makes a busy receiver get fewer, fuller pushes: items that
        queue up while every slot is taken leave together in one request (as a provider's callback
        queue does), instead of one request each waiting for its turn. An item leaves no earlier
        than its wait (a receipt's ``delay``, an array stream's ``batch_seconds``) after it was
        submitted, counted from its own submission: the wait overlaps with the items before it (it
        was a sleep per push, so one-item WeChat pushes left at most 1 / ``delay`` a second: 10 a
        second, 1,400 WeChat receipts of a wave took 2 minutes). Items submitted during the first
        one's wait leave with it.
        """
        batch_size = 1 if stream in _ONE_ITEM else self._max_batch
        slots = self._slots[stream]
        while True:
            due, first = await queue.get()
            if (wait := due - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            await slots.acquire()
            batch = [first]
            while len(batch) < batch_size and not queue.empty():
                batch.append(queue.get_nowait()[1])
            task = asyncio.create_task(self._push(stream, first.provider, [p.item for p in batch]))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _push(self, stream: str, provider: str, items: list[Any]) -> None:
        """Deliver one push, re-pushing per schedule.

        The first attempt runs in the slot :meth:`_run` took; the slot is given back while waiting for a
        re-push and taken again for it.
        """
        url, content, headers = self._build(stream, items)
        if provider == "wechat":
            delays = (0.0, *[self._wechat_retry_seconds] * WECHAT_RETRIES)
        else:
            delays = (0.0, *[minutes * self._minute for minutes in SCHEDULES[provider]])
        slots = self._slots[stream]
        holding = True
        try:
            for attempt, wait in enumerate(delays):
                if wait:
                    slots.release()
                    holding = False
                    await asyncio.sleep(wait)
                    await slots.acquire()
                    holding = True
                if await self._attempt(url, content, headers):
                    key = "uplinks_sent" if stream in ("aliyun_up", "tencent_reply") else "receipts_sent"
                    self._state.stats[key] += len(items)
                    self._state.stats["callback_pushes"] += 1
                    return
                self._state.stats["callback_failures"] += 1
                log.info("callback_push_failed", stream=stream, attempt=attempt + 1, items=len(items))
            self._state.stats["callbacks_given_up"] += len(items)
            log.warning("callback_push_given_up", stream=stream, items=len(items))
        finally:
            if holding:
                slots.release()
            self._pending -= len(items)
            self._pending_by_stream[stream] -= len(items)
            if self._pending == 0:
                self._idle.set()

    async def _attempt(self, url: str, content: bytes, headers: dict[str, str]) -> bool:
        if self._state.faults.fail_callbacks > 0:
            self._state.faults.fail_callbacks -= 1
            return False
        try:
            async with self._http.post(url, data=content, headers=headers,
                                       timeout=aiohttp.ClientTimeout(total=self.timeout_seconds)) as response:
                await response.read()
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False
