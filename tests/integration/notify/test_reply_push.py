"""One provider push of several replies (``inbound.record_replies``) has the effect of one-by-one recording.

The batched path was added for the reply path under load (bench/reply_path.py): a push of up to 100
SMS uplinks now takes a few statements instead of a few per reply. Pinned here: replies are matched
in push order against the call-outs as the earlier ones left them (a decline closes its call-out for
the next reply), a dedup key twice in a push or pushed again is stored and published once, and a
reply from an unknown phone is kept with a masked sender.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

from services.notify import inbound
from services.notify.channels.base import Uplink
from services.notify.testing import NotifyStack
from shared.vocabulary import Channel

from .test_pipeline import _replies_for, _reply_consumer, add_volunteer, message_row, mobile, request


async def test_a_push_of_replies_is_matched_in_order_and_stored_once(notify_stack: NotifyStack) -> None:
    ns = notify_stack
    vid, m, _ = await add_volunteer(ns)
    assert m is not None
    older = request(vid, reply_code="A7")
    newer = request(vid, reply_code="B2", incident_title="越城区火灾")
    for e in (older, newer):
        await ns.publish(ns.callout_topic, str(vid), e)
        assert await message_row(ns, e.callout_id) is not None
    stranger = mobile()
    consumer = await _reply_consumer(ns)
    try:
        token = ns.settings.callback_token.get_secret_value()
        seq = random.randint(10**9, 10**10)

        def item(phone: str, text: str, n: int) -> dict[str, object]:
            return {"phone_number": phone[3:], "content": text, "send_time": "2026-11-29 16:00:00",
                    "dest_code": "", "sequence_id": seq + n}

        body = [
            item(m, "2", 0),  # no code: the newest open call-out (B2), which it closes
            item(m, "1", 1),  # no code: now the newest open one is A7
            item(m, "2", 0),  # the first again in the same push: a replay
            item(stranger, "1", 2),
        ]
        r = await ns.http.post(f"{ns.url}/callbacks/aliyun/{token}/up", json=body)
        assert r.status_code == 200 and r.json()["code"] == 0, r.text
        again = await ns.http.post(f"{ns.url}/callbacks/aliyun/{token}/up", json=body)  # the provider's retry
        assert again.status_code == 200
        mine = await _replies_for(consumer, vid, 2)
        assert [(x.intent.value, x.callout_id) for x in mine] == [("decline", newer.callout_id),
                                                                 ("accept", older.callout_id)]
        assert {x.correlation_id for x in mine} == {newer.incident_id, older.incident_id}
        masked = stranger[3:6] + "****" + stranger[-4:]
        async with ns.pool.acquire() as conn:
            theirs = await conn.fetch("SELECT volunteer_id, callout_id FROM replies WHERE sender_masked = $1", masked)
            assert [tuple(r) for r in theirs] == [(None, None)]
            stored = await conn.fetchval(
                "SELECT count(*) FROM replies WHERE provider = 'aliyun' AND dedup_key = ANY($1::text[])",
                [f"aliyun:{seq + n}" for n in range(3)],
            )
            states = {r["callout_id"]: r["state"] for r in await conn.fetch(
                "SELECT callout_id, state FROM callouts WHERE volunteer_id = $1", vid)}
        assert stored == 3
        assert states == {newer.callout_id: "closed", older.callout_id: "open"}
    finally:
        await consumer.stop()


async def test_a_reply_stored_meanwhile_by_a_retried_push_is_dropped_with_its_effects(notify_stack: NotifyStack) -> None:
    """Two pushes of one reply read before either stored it: the second is dropped at the insert.

    Its decline closes nothing more and its ``ReplyReceived`` is not written to the outbox (the
    writes are one statement, each effect joined to the rows the insert stored).
    """
    ns = notify_stack
    vid, m, _ = await add_volunteer(ns)
    assert m is not None
    call = request(vid, reply_code="D4")
    await ns.publish(ns.callout_topic, str(vid), call)
    assert await message_row(ns, call.callout_id) is not None
    up = Uplink(provider="aliyun", sender=m, text="2D4", received_at=datetime.now(UTC),
                dedup_key=f"aliyun:{random.randint(10**9, 10**10)}")
    cipher = ns.runtime.extras["notify"].cipher
    async with ns.pool.acquire() as first, ns.pool.acquire() as second:
        tx = first.transaction()
        await tx.start()
        published = await inbound.record_replies(first, provider="aliyun", channel=Channel.SMS, uplinks=[up],
                                                 cipher=cipher)
        retried = asyncio.create_task(inbound.record_replies(second, provider="aliyun", channel=Channel.SMS,
                                                             uplinks=[up], cipher=cipher))
        await asyncio.sleep(0.5)  # it read nothing stored (not committed yet) and waits at the insert
        assert not retried.done()
        await tx.commit()
        again = await retried
    assert [e.callout_id for e in published] == [call.callout_id] and again == []
    async with ns.pool.acquire() as conn:
        events = await conn.fetchval(
            "SELECT count(*) FROM outbox WHERE topic = 'notify.reply.v1' "
            "AND convert_from(payload, 'UTF8')::jsonb->>'callout_id' = $1", str(call.callout_id))
        stored = await conn.fetchval("SELECT count(*) FROM replies WHERE dedup_key = $1", up.dedup_key)
        state = await conn.fetchval("SELECT state FROM callouts WHERE callout_id = $1", call.callout_id)
    assert (events, stored, state) == (1, 1, "closed")
