"""A cardiac arrest's messages go out ahead of a fan-out already waiting (issue #17), worded by role."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from services.notify.channels.base import ChannelProvider, OutboundMessage, SendResult
from services.notify.sender import Sender
from services.notify.testing import NotifyStack, ProviderWrapper
from shared.events import CallOutAssigned, CardiacRole
from shared.maps import amap_marker_url
from shared.vocabulary import CARDIAC_ARREST, Channel
from tests.integration.notify.test_pipeline import add_volunteer, message_row, request

FANOUT = 30


async def test_cardiac_messages_are_claimed_before_a_waiting_fanout(notify_stack: NotifyStack) -> None:
    ns = notify_stack
    runtime = ns.runtime
    await ns.hold_sender()
    try:
        fanout = []
        for _ in range(FANOUT):
            vid, _m, _o = await add_volunteer(ns)
            e = request(vid)
            fanout.append(e)
            await ns.publish(ns.callout_topic, str(vid), e)
        cvid, cm, _ = await add_volunteer(ns)
        cardiac = request(cvid, incident_kind=CARDIAC_ARREST, incident_title="鲁迅故里心脏骤停", place="鲁迅故里")
        await ns.publish(ns.callout_topic, str(cvid), cardiac)
        assigned = CallOutAssigned(
            callout_id=cardiac.callout_id, incident_id=cardiac.incident_id, volunteer_id=cvid,
            incident_title="鲁迅故里心脏骤停", place="鲁迅故里", meeting_point="鲁迅故里景区入口",
            map_url=amap_marker_url(29.996, 120.58), cardiac_role=CardiacRole.FETCH_AED,
            aed_place="鲁迅中路241号 游客中心一楼服务台旁", aed_map_url=amap_marker_url(29.997, 120.581, "AED"))
        await ns.publish(ns.callout_topic, str(cvid), assigned)
        for e in fanout:
            assert await message_row(ns, e.callout_id, status=("pending",)) is not None
        assert await message_row(ns, cardiac.callout_id, kind="assigned", status=("pending",)) is not None
        async with ns.pool.acquire() as conn:
            prio = dict(await conn.fetch("SELECT kind, priority FROM messages WHERE callout_id = $1",
                                         cardiac.callout_id))
        assert prio == {"callout": 10, "assigned": 10}

        providers = dict(runtime.extras["notify"].providers)
        small = ns.settings.model_copy(update={"send_claim_size": 2})
        sender = Sender(ns.pool, providers, small, runtime.extras["notify"].cipher, None)
        assert await sender.send_due() == 2  # one round of two: the cardiac call-out and its assignment
        async with ns.pool.acquire() as conn:
            left = await conn.fetchval("SELECT count(*) FROM messages WHERE callout_id = ANY($1::uuid[]) "
                                       "AND status = 'pending'", [e.callout_id for e in fanout])
            mine = await conn.fetchval("SELECT count(*) FROM messages WHERE callout_id = $1 AND status = 'pending'",
                                       cardiac.callout_id)
        assert (left, mine) == (FANOUT, 0)
        got = await ns.wait_phone(cm, 2)  # type: ignore[arg-type]
        texts = [g["text"] for g in got]
        assert any("请先取AED：鲁迅中路241号 游客中心一楼服务台旁" in t and "再送到鲁迅故里景区入口" in t for t in texts)
    finally:
        ns.resume_sender()
    for e in fanout:  # the fan-out still goes out afterwards
        assert await message_row(ns, e.callout_id, status=("sent", "delivered")) is not None


class HoldsFanout(ProviderWrapper):
    """The real SMS provider; a request holding a fan-out message waits until ``release`` is set."""

    def __init__(self, inner: ChannelProvider, tag: str) -> None:
        super().__init__(inner)
        self.tag, self.release = tag, asyncio.Event()

    async def send(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        if any(self.tag in m.text for m in messages):
            await self.release.wait()
        return await self.inner.send(messages)


async def test_a_cardiac_message_goes_out_while_a_fanout_fills_the_senders_requests(notify_stack: NotifyStack) -> None:
    """The in-flight limit is full of fan-out requests and the provider's one permit is taken: the urgent lane
    (claim past the limit, a gate of its own) still sends the cardiac call-out (fails without either)."""
    ns = notify_stack
    runtime = ns.runtime
    tag = "大型活动广播测试"
    await ns.hold_sender()
    sender_task = None
    providers = dict(runtime.extras["notify"].providers)
    sms = next(c for c, p in providers.items() if c is Channel.SMS)
    held = HoldsFanout(providers[sms], tag)
    try:
        fanout = []
        for _ in range(8):
            vid, _m, _o = await add_volunteer(ns)
            e = request(vid, incident_title=tag)
            fanout.append(e)
            await ns.publish(ns.callout_topic, str(vid), e)
        for e in fanout:
            assert await message_row(ns, e.callout_id, status=("pending",)) is not None
        small = ns.settings.model_copy(update={"send_claim_size": 2, "send_concurrency": 1})
        sender = Sender(ns.pool, {**providers, sms: held}, small, runtime.extras["notify"].cipher, None)
        sender_task = asyncio.create_task(sender.run())

        async def inflight() -> bool:
            async with ns.pool.acquire() as conn:
                return bool(await conn.fetchval(
                    "SELECT count(*) >= 4 FROM messages WHERE callout_id = ANY($1::uuid[]) AND status = 'sending'",
                    [e.callout_id for e in fanout]))
        deadline = asyncio.get_running_loop().time() + 15
        while not await inflight():  # 2 × claim size in flight: the sender's limit
            assert asyncio.get_running_loop().time() < deadline, "the fan-out did not fill the in-flight limit"
            await asyncio.sleep(0.1)

        cvid, cm, _ = await add_volunteer(ns)
        cardiac = request(cvid, incident_kind=CARDIAC_ARREST, incident_title="鲁迅故里心脏骤停", place="鲁迅故里")
        await ns.publish(ns.callout_topic, str(cvid), cardiac)
        row = await message_row(ns, cardiac.callout_id, status=("sent", "delivered"))
        assert row is not None, "the cardiac call-out waited behind the fan-out"
        async with ns.pool.acquire() as conn:
            pending = await conn.fetchval(
                "SELECT count(*) FROM messages WHERE callout_id = ANY($1::uuid[]) AND status IN ('pending', 'sending')",
                [e.callout_id for e in fanout])
        assert pending == len(fanout)  # the fan-out is still held
    finally:
        held.release.set()
        if sender_task is not None:
            sender_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender_task
        ns.resume_sender()
