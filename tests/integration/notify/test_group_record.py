"""The sender records answers that arrive together in one transaction (group commit), each message once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from services.notify.channels.base import ChannelProvider, OutboundMessage, SendResult
from services.notify.sender import Claimed, Sender
from services.notify.testing import NotifyStack, ProviderWrapper
from tests.integration.notify.test_pipeline import add_volunteer, message_row, request

N = 20


class AnswersTogether(ProviderWrapper):
    """The real WeChat provider; each answer is held until the provider has taken all of ``ids``."""

    def __init__(self, inner: ChannelProvider, ids: set[UUID]) -> None:
        super().__init__(inner)
        self.ids = ids
        self.all_taken = asyncio.Event()

    async def send(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        results = await self.inner.send(messages)
        self.ids -= {m.message_id for m in messages}
        if not self.ids:
            self.all_taken.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.all_taken.wait(), timeout=10)
        return results


class CountingSender(Sender):
    """Remembers the message ids of each record transaction."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.records: list[set[UUID]] = []

    async def record(self, items: Sequence[Claimed], results: Sequence[SendResult]) -> None:
        self.records.append({c.row["message_id"] for c in items})
        await super().record(items, results)


async def test_wechat_answers_arriving_together_are_recorded_in_one_transaction_each_once(
    notify_stack: NotifyStack,
) -> None:
    ns = notify_stack
    runtime = ns.runtime
    await ns.hold_sender()  # the service's own sender stays out of this test
    try:
        providers = dict(runtime.extras["notify"].providers)
        wechat = next(p for p in providers.values() if p.name == "wechat")
        events = []
        openids = []
        for _ in range(N):
            vid, _m, o = await add_volunteer(ns, wechat=True)
            e = request(vid)
            events.append(e)
            openids.append(o)
            await ns.publish(ns.callout_topic, str(vid), e)
        rows = [await ns.wait_row("SELECT message_id FROM messages WHERE callout_id = $1", e.callout_id)
                for e in events]
        assert all(r is not None for r in rows)
        ids = {r["message_id"] for r in rows}
        held = AnswersTogether(wechat, set(ids))
        sender = CountingSender(ns.pool, {**providers, wechat.channel: held}, ns.settings,
                                runtime.extras["notify"].cipher, None)
        while held.ids:  # the claim takes the due messages (other tests' too), in rounds of send_claim_size
            assert await sender.send_due() > 0, "a message of this test was not claimed"
        assert held.all_taken.is_set()
        with_ours = [r & ids for r in sender.records if r & ids]
        assert len(with_ours) <= 2, f"{N} answers at once took {len(with_ours)} record transactions"
        assert set().union(*with_ours) == ids
        for e in events:
            row = await message_row(ns, e.callout_id, status=("sent", "delivered"))
            assert row is not None and row["channel"] == "wechat" and row["provider_message_id"]
        async with ns.pool.acquire() as conn:
            assert await conn.fetchval(
                "SELECT count(*) FROM outbox WHERE headers->>'event_type' = 'MessageSent' "
                "AND convert_from(payload, 'UTF8')::jsonb->>'message_id' = ANY($1::text[])",
                [str(i) for i in ids],
            ) == N
        for o in openids:
            assert len(await ns.wait_phone(o, 1)) == 1  # type: ignore[arg-type]
    finally:
        ns.resume_sender()


class FailingOnOne(Sender):
    """Its record fails (deterministically) whenever ``bad`` is among the items."""

    def __init__(self, *args: Any, bad: UUID) -> None:
        super().__init__(*args)
        self.bad = bad
        self.attempts: list[int] = []

    async def record(self, items: Sequence[Claimed], results: Sequence[SendResult]) -> None:
        self.attempts.append(len(items))
        if any(c.row["message_id"] == self.bad for c in items):
            raise ValueError("this answer cannot be recorded")
        await super().record(items, results)


async def test_a_group_record_that_fails_for_one_answer_records_the_others(notify_stack: NotifyStack) -> None:
    ns = notify_stack
    runtime = ns.runtime
    n = 6
    await ns.hold_sender()
    try:
        providers = dict(runtime.extras["notify"].providers)
        wechat = next(p for p in providers.values() if p.name == "wechat")
        events = []
        for _ in range(n):
            vid, _m, _o = await add_volunteer(ns, wechat=True)
            events.append(request(vid))
            await ns.publish(ns.callout_topic, str(vid), events[-1])
        rows = [await ns.wait_row("SELECT message_id FROM messages WHERE callout_id = $1", e.callout_id)
                for e in events]
        assert all(r is not None for r in rows)
        ids = [r["message_id"] for r in rows]
        held = AnswersTogether(wechat, set(ids))  # the answers arrive together: one group
        sender = FailingOnOne(ns.pool, {**providers, wechat.channel: held}, ns.settings,
                              runtime.extras["notify"].cipher, None, bad=ids[0])
        while held.ids:
            with contextlib.suppress(ValueError):
                await sender.send_due()
        assert max(sender.attempts) > 1, "the answers were not recorded as a group"
        async with ns.pool.acquire() as conn:
            status = {r["message_id"]: r["status"] for r in await conn.fetch(
                "SELECT message_id, status FROM messages WHERE message_id = ANY($1::uuid[])", ids)}
            await conn.execute("UPDATE messages SET status = 'failed' WHERE message_id = $1", ids[0])
        assert status[ids[0]] == "sending"  # in doubt, as any answer that could not be recorded
        assert all(status[i] in ("sent", "delivered") for i in ids[1:]), status
    finally:
        ns.resume_sender()
