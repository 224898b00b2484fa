"""Notify dies in the middle of a send: the in-doubt message is resolved with the provider, not resent."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import asyncpg

from services.notify.channels.base import (
    ChannelProvider,
    OutboundMessage,
    SendResult,
)
from services.notify.sender import SENDER_LOCK_KEY, Sender
from services.notify.testing import NotifyStack, ProviderWrapper
from tests.integration.notify.test_pipeline import add_volunteer, message_row, request


class DiesAfterSending(ProviderWrapper):
    """The real provider, but the process 'dies' right after the provider accepted the send."""

    async def send(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        await self.inner.send(messages)
        raise SystemError("killed between the provider's answer and the commit")


async def test_a_send_interrupted_after_the_provider_accepted_is_not_sent_twice(notify_stack: NotifyStack) -> None:
    ns = notify_stack
    runtime = ns.runtime
    await ns.hold_sender()  # the service's own sender stays out of this test
    try:
        providers = dict(runtime.extras["notify"].providers)
        sms = next(p for p in providers.values() if p.name == "aliyun")
        dying = Sender(ns.pool, {**providers, sms.channel: DiesAfterSending(sms)}, ns.settings,
                       runtime.extras["notify"].cipher, None)
        vid, m, _ = await add_volunteer(ns)
        e = request(vid)
        await ns.publish(ns.callout_topic, str(vid), e)
        assert await ns.wait_row("SELECT 1 FROM messages WHERE callout_id = $1", e.callout_id) is not None
        try:
            await dying.send_due()
        except SystemError:
            pass
        else:
            raise AssertionError("the send should have died")
        async with ns.pool.acquire() as conn:
            assert await conn.fetchval("SELECT status FROM messages WHERE callout_id = $1", e.callout_id) == "sending"
        assert len(await ns.wait_phone(m, 1)) == 1  # type: ignore[arg-type]
        # notify restarts: a new sender finds the message in doubt and asks the provider before anything else
        restarted = Sender(ns.pool, providers, ns.settings, runtime.extras["notify"].cipher, None)
        assert await restarted.resolve_in_doubt() >= 1
        await restarted.send_due()
        row = await message_row(ns, e.callout_id, status=("sent", "delivered"))
        assert row is not None and row["provider_message_id"]
        await asyncio.sleep(1.0)
        assert len(await ns.phone(m)) == 1  # type: ignore[arg-type]
    finally:
        ns.resume_sender()


async def test_a_wechat_send_found_sent_after_a_restart_is_not_sent_again_by_sms(notify_stack: NotifyStack) -> None:
    """Regression (fault drill run 6): notify died after WeChat took an assignment and a stand-down; their
    receipts were pushed while it was dead. Resolved in doubt after the restart, they were stamped sent *then*,
    so the receipt time-out counted from the restart and both went out again by SMS."""
    ns = notify_stack
    runtime = ns.runtime
    await ns.hold_sender()
    ctx = runtime.extras["notify"]
    try:
        providers = dict(ctx.providers)
        wechat = next(p for p in providers.values() if p.name == "wechat")
        dying = Sender(ns.pool, {**providers, wechat.channel: DiesAfterSending(wechat)}, ns.settings, ctx.cipher,
                       ctx.links)
        vid, m, o = await add_volunteer(ns, wechat=True)
        await ns.http.post(f"{ns.sim.url}/sim/faults", json={"withhold_receipts": [o]})  # pushed to a dead notify
        e = request(vid)
        await ns.publish(ns.callout_topic, str(vid), e)
        assert await ns.wait_row("SELECT 1 FROM messages WHERE callout_id = $1", e.callout_id) is not None
        with contextlib.suppress(SystemError):
            await dying.send_due()
        assert len(await ns.wait_phone(o, 1)) == 1  # type: ignore[arg-type]
        await asyncio.sleep(0.1)
        restarted = Sender(ns.pool, providers, ns.settings, ctx.cipher, ctx.links)
        assert await restarted.resolve_in_doubt() >= 1
        await asyncio.sleep(ns.settings.wechat_receipt_timeout_seconds + 0.5)
        assert await restarted.fallback_unreceipted() == 0
        row = await ns.wait_row("SELECT * FROM messages WHERE callout_id = $1", e.callout_id)
        assert row["status"] == "sent" and row["receipt_overdue"] == "listener_gap", dict(row)
        assert await ns.phone(m) == []  # type: ignore[arg-type]
        assert len(await ns.phone(o)) == 1  # type: ignore[arg-type]  # WeChat deduplicated the re-send
    finally:
        await ns.http.delete(f"{ns.sim.url}/sim/faults")
        ns.resume_sender()


class AnswersWhenReleased(ProviderWrapper):
    """The real provider, whose request goes out only when the test releases it (a slow provider)."""

    def __init__(self, inner: ChannelProvider) -> None:
        super().__init__(inner)
        self.called, self.release = asyncio.Event(), asyncio.Event()

    async def send(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        self.called.set()
        await self.release.wait()
        return await self.inner.send(messages)


async def _message_events(ns: NotifyStack, callout_id: object, event_type: str) -> int:
    async with ns.pool.acquire() as conn:
        return int(await conn.fetchval(
            "SELECT count(*) FROM outbox o JOIN messages m ON o.key = m.volunteer_id::text "
            "WHERE m.callout_id = $1 AND o.headers->>'event_type' = $2", callout_id, event_type))


async def test_a_replica_started_later_leaves_a_live_senders_request_in_flight_alone(notify_stack: NotifyStack) -> None:
    """A second notify that starts while the first waits for a slow provider must not take the first's
    message as in doubt: the provider has no record of it yet, so it would be sent again (two SMS)."""
    ns = notify_stack
    await ns.hold_sender()
    ctx = ns.runtime.extras["notify"]
    providers = dict(ctx.providers)
    sms = next(p for p in providers.values() if p.name == "aliyun")
    slow = AnswersWhenReleased(sms)
    live = Sender(ns.pool, {**providers, sms.channel: slow}, ns.settings, ctx.cipher, None)
    loop = asyncio.create_task(live.run())  # the real loop: holds its liveness lock, claims, waits on the provider
    try:
        vid, m, _ = await add_volunteer(ns)
        e = request(vid)
        await ns.publish(ns.callout_topic, str(vid), e)
        await asyncio.wait_for(slow.called.wait(), timeout=15)
        replica = Sender(ns.pool, providers, ns.settings, ctx.cipher, None)  # started after the claim
        assert await replica.resolve_in_doubt() == 0
        assert await replica.send_due() == 0
        slow.release.set()
        assert await message_row(ns, e.callout_id, status=("sent", "delivered")) is not None
        await asyncio.sleep(1.0)
        assert len(await ns.phone(m)) == 1  # type: ignore[arg-type]
        assert await _message_events(ns, e.callout_id, "MessageSent") == 1
    finally:
        slow.release.set()
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        ns.resume_sender()


async def test_an_answer_recorded_after_its_message_was_resolved_elsewhere_changes_nothing(
    notify_stack: NotifyStack,
) -> None:
    """A sender taken for gone (no liveness lock) whose provider answers after another resolved and sent the
    message: its record finds the row no longer under its claim, and emits no second MessageSent."""
    ns = notify_stack
    await ns.hold_sender()
    ctx = ns.runtime.extras["notify"]
    providers = dict(ctx.providers)
    sms = next(p for p in providers.values() if p.name == "aliyun")
    slow = AnswersWhenReleased(sms)
    gone = Sender(ns.pool, {**providers, sms.channel: slow}, ns.settings, ctx.cipher, None)  # its loop never runs
    piece: asyncio.Task[int] | None = None
    try:
        vid, m, _ = await add_volunteer(ns)
        e = request(vid)
        await ns.publish(ns.callout_topic, str(vid), e)
        assert await ns.wait_row("SELECT 1 FROM messages WHERE callout_id = $1", e.callout_id) is not None
        piece = asyncio.create_task(gone.send_due())
        await asyncio.wait_for(slow.called.wait(), timeout=15)
        other = Sender(ns.pool, providers, ns.settings, ctx.cipher, None)
        assert await other.resolve_in_doubt() == 1  # the provider has no record: back to pending
        assert await other.send_due() == 1
        sent = await message_row(ns, e.callout_id, status=("sent", "delivered"))
        assert sent is not None
        slow.release.set()
        await piece  # the first claim's answer, at last (its request did go out: the phone has two)
        async with ns.pool.acquire() as conn:
            after = await conn.fetchrow("SELECT * FROM messages WHERE callout_id = $1", e.callout_id)
        assert after["status"] in ("sent", "delivered") and after["claim_id"] == sent["claim_id"]  # the other's claim
        assert await _message_events(ns, e.callout_id, "MessageSent") == 1
    finally:
        slow.release.set()
        if piece is not None:
            with contextlib.suppress(Exception):
                await piece
        ns.resume_sender()


async def _wait_lease(sender: Sender, ns: NotifyStack) -> int:
    """The backend pid holding ``sender``'s liveness lock (waits until its loop took it)."""
    for _ in range(150):
        async with ns.pool.acquire() as conn:
            pid = await conn.fetchval(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = $1::oid "
                "AND objid = (hashtext($2) & x'ffffffff'::bigint)::oid AND objsubid = 2",
                SENDER_LOCK_KEY, str(sender.instance_id))
        if pid is not None:
            return int(pid)
        await asyncio.sleep(0.1)
    raise AssertionError("the sender never took its liveness lock")


class FailsOneRound(Sender):
    """A sender whose housekeeping fails once (a statement timeout under load): an error of the round, not of
    the connection that holds its liveness lock."""

    armed = failed = False

    async def sweep_early_receipts(self) -> int:
        if self.armed and not self.failed:
            self.failed = True
            raise asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout")
        return await super().sweep_early_receipts()


async def test_a_failed_round_keeps_the_senders_liveness_lock(notify_stack: NotifyStack) -> None:
    """Review of the liveness rule: a round that failed released the loop's connection, and with it the
    lock, while the sender lived on with its request in flight; a replica then took the message as a gone
    sender's, found no record at the provider (the request was still queued) and sent it again."""
    ns = notify_stack
    await ns.hold_sender()
    ctx = ns.runtime.extras["notify"]
    providers = dict(ctx.providers)
    sms = next(p for p in providers.values() if p.name == "aliyun")
    slow = AnswersWhenReleased(sms)
    live = FailsOneRound(ns.pool, {**providers, sms.channel: slow}, ns.settings, ctx.cipher, None)
    loop = asyncio.create_task(live.run())
    try:
        await _wait_lease(live, ns)
        vid, m, _ = await add_volunteer(ns)
        e = request(vid)
        await ns.publish(ns.callout_topic, str(vid), e)
        await asyncio.wait_for(slow.called.wait(), timeout=15)
        live.armed = True  # the next round fails while the request is in flight
        for _ in range(300):
            if live.failed:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        assert live.failed and live.stats.errors, "the round error was not injected"
        replica = Sender(ns.pool, providers, ns.settings, ctx.cipher, None)
        assert await replica.resolve_in_doubt() == 0  # the first sender is alive: its message is not in doubt
        slow.release.set()
        assert await message_row(ns, e.callout_id, status=("sent", "delivered")) is not None
        await asyncio.sleep(1.0)
        assert len(await ns.phone(m)) == 1  # type: ignore[arg-type]
        assert await _message_events(ns, e.callout_id, "MessageSent") == 1
    finally:
        slow.release.set()
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        ns.resume_sender()


async def test_a_request_queued_when_the_lock_connection_died_is_not_sent_if_its_message_was_taken(
    notify_stack: NotifyStack,
) -> None:
    """Review of the liveness rule: the connection holding a live sender's lock dies (PostgreSQL restarted,
    the backend terminated) while its requests wait for the provider's rate limit. Another notify sees the
    lock free, resolves the messages (the provider has no record yet) and sends them; the first sender must
    then not send its queued request: one SMS, one MessageSent."""
    ns = notify_stack
    await ns.hold_sender()
    ctx = ns.runtime.extras["notify"]
    providers = dict(ctx.providers)
    # A long safety poll: the sender's loop notices the dead connection only when woken (as it would a
    # moment later), so the other notify's look at the lock comes first, as it can in production.
    live = Sender(ns.pool, providers, ns.settings.model_copy(update={"send_poll_seconds": 30.0}), ctx.cipher, None)
    queue = live._gates["aliyun"] = asyncio.Semaphore(0)  # the provider's rate limit: requests wait their turn
    loop = asyncio.create_task(live.run())
    try:
        lease_pid = await _wait_lease(live, ns)
        vid, m, _ = await add_volunteer(ns)
        e = request(vid)
        await ns.publish(ns.callout_topic, str(vid), e)
        assert await ns.wait_row("SELECT 1 FROM messages WHERE callout_id = $1 AND status = 'sending'",
                                 e.callout_id) is not None
        async with ns.pool.acquire() as conn:
            assert await conn.fetchval("SELECT pg_terminate_backend($1)", lease_pid)
        await asyncio.sleep(0.2)
        other = Sender(ns.pool, providers, ns.settings, ctx.cipher, None)
        assert await other.resolve_in_doubt() == 1  # lock free: taken as a gone sender's, not at the provider
        await other.send_due()
        for _ in range(4):
            queue.release()
        live.wake()  # its loop comes round, finds the connection lost and takes its lease again
        for _ in range(100):  # until its queued request is done with (sent, or found no longer its own)
            if not live._inflight:
                break
            await asyncio.sleep(0.1)
        assert not live._inflight, "the first sender's queued request never went ahead"
        assert await message_row(ns, e.callout_id, status=("sent", "delivered")) is not None
        await asyncio.sleep(1.0)
        assert len(await ns.phone(m)) == 1  # type: ignore[arg-type]
        assert await _message_events(ns, e.callout_id, "MessageSent") == 1
    finally:
        for _ in range(4):
            queue.release()
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        ns.resume_sender()


async def test_a_claim_by_an_older_notify_is_not_taken_for_the_previous_claimers(notify_stack: NotifyStack) -> None:
    """Review of the liveness rule, rolling upgrade: a notify of the previous release claims without naming
    itself, so a row it claims keeps the ``claimed_by`` of the claim before (here a gone sender's, whose
    message was resolved back to pending). A new notify then took the old one's live request as the gone
    sender's and sent it again; a row going back to pending must drop its claim."""
    ns = notify_stack
    await ns.hold_sender()
    ctx = ns.runtime.extras["notify"]
    providers = dict(ctx.providers)
    sms = next(p for p in providers.values() if p.name == "aliyun")
    slow = AnswersWhenReleased(sms)  # never released: the request never goes out
    gone = Sender(ns.pool, {**providers, sms.channel: slow}, ns.settings, ctx.cipher, None)
    piece = None
    try:
        vid, _, _ = await add_volunteer(ns)
        e = request(vid)
        await ns.publish(ns.callout_topic, str(vid), e)
        assert await ns.wait_row("SELECT 1 FROM messages WHERE callout_id = $1", e.callout_id) is not None
        piece = asyncio.create_task(gone.send_due())
        await asyncio.wait_for(slow.called.wait(), timeout=15)
        piece.cancel()  # the process died with its request unsent
        assert await Sender(ns.pool, providers, ns.settings, ctx.cipher, None).resolve_in_doubt() == 1
        new = Sender(ns.pool, providers, ns.settings, ctx.cipher, None)  # a new notify, started now
        async with ns.pool.acquire() as conn:
            assert await conn.fetchval("SELECT status FROM messages WHERE callout_id = $1", e.callout_id) == "pending"
            # the previous release's claim, as its sender wrote it (no claimed_by, no claim_id)
            await conn.execute(
                "UPDATE messages SET status = 'sending', sending_since = now(), attempts = attempts + 1, "
                "channel = 'sms', provider = 'aliyun', updated_at = now() WHERE callout_id = $1", e.callout_id)
        assert await new.resolve_in_doubt() == 0  # claimed after it started by a sender it cannot see: alive
    finally:
        if piece is not None:
            piece.cancel()
            with contextlib.suppress(BaseException):
                await piece
        ns.resume_sender()


async def test_a_sender_at_its_in_flight_limit_takes_its_lease_again_when_the_connection_dies(
    notify_stack: NotifyStack,
) -> None:
    """Review: requests claimed under a lost lease wait for the lease before they are sent; the loop, parked
    until one of its requests in flight finished (the in-flight limit), must still come round to take it
    again, or neither ever moves (no message sent, no event)."""
    ns = notify_stack
    await ns.hold_sender()
    ctx = ns.runtime.extras["notify"]
    providers = dict(ctx.providers)
    live = Sender(ns.pool, providers, ns.settings.model_copy(update={"send_claim_size": 1}), ctx.cipher, None)
    queue = live._gates["aliyun"] = asyncio.Semaphore(0)  # the provider's rate limit: requests wait their turn
    loop = asyncio.create_task(live.run())
    try:
        lease_pid = await _wait_lease(live, ns)
        sent = []
        for _ in range(2):
            vid, m, _ = await add_volunteer(ns)
            e = request(vid)
            await ns.publish(ns.callout_topic, str(vid), e)
            sent.append((e, m))
        for _ in range(150):  # 2 × send_claim_size in flight (ours, or earlier tests' leftovers): the loop waits
            if live._inflight_messages >= 2:
                break
            await asyncio.sleep(0.1)
        assert live._inflight_messages >= 2, "the sender never reached its in-flight limit"
        async with ns.pool.acquire() as conn:
            assert await conn.fetchval("SELECT pg_terminate_backend($1)", lease_pid)
        await asyncio.sleep(0.2)
        for _ in range(100):
            queue.release()
        for e, m in sent:
            assert await message_row(ns, e.callout_id, status=("sent", "delivered")) is not None
            assert len(await ns.wait_phone(m, 1)) == 1  # type: ignore[arg-type]
    finally:
        for _ in range(100):
            queue.release()
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        ns.resume_sender()


async def test_a_sender_keeps_its_id_while_another_notify_looks_at_its_lock(notify_stack: NotifyStack) -> None:
    """Review: another notify's in-doubt look holds a sender's lock for a moment; a sender taking its lease
    again just then took a new instance id, and its own requests in flight became a gone sender's."""
    ns = notify_stack
    ctx = ns.runtime.extras["notify"]
    sender = Sender(ns.pool, dict(ctx.providers), ns.settings, ctx.cipher, None)
    first = sender.instance_id
    async with ns.pool.acquire() as probe, ns.pool.acquire() as conn:
        assert await probe.fetchval("SELECT pg_try_advisory_lock($1, hashtext($2))", SENDER_LOCK_KEY, str(first))
        take = asyncio.create_task(sender._hold_lease(conn))
        await asyncio.sleep(0.2)
        await probe.execute("SELECT pg_advisory_unlock($1, hashtext($2))", SENDER_LOCK_KEY, str(first))
        await asyncio.wait_for(take, timeout=5)
        assert sender.instance_id == first
        assert await conn.fetchval("SELECT pg_advisory_unlock($1, hashtext($2))", SENDER_LOCK_KEY, str(first))
