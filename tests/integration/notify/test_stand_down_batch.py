"""A batch of stand-downs (an incident's close) is applied in a few statements, with the per-event rules.

Three call-outs in different states get their ``CallOutCancelled`` once through the batch handler and,
mirrored, once event by event; both must leave the same messages, and the expected ones:

- not sent yet: the call-out is withheld (``cancelled_before_send``), no stand-down;
- sent: a stand-down is queued;
- sent by WeChat, no receipt, waiting to go again by SMS: withheld (``cancelled_before_resend``) and
  stood down, since the WeChat message may have arrived;
- a second cancellation of the same call-out in the batch changes nothing.
"""

from __future__ import annotations

import uuid
from typing import Any

from services.notify.handlers.consumers import CallOutMessages
from services.notify.testing import NotifyStack
from shared.events import CallOutCancelled, CancelReason

from .test_pipeline import request


async def _three(ns: NotifyStack, handler: CallOutMessages) -> list[Any]:
    """Call-outs (unsent, sent, waiting to go again by SMS) as requested events, applied and set in state."""
    events = [request(uuid.uuid4()) for _ in range(3)]
    async with ns.pool.acquire() as conn, conn.transaction():
        await handler.apply_batch(conn, events)
        await conn.execute("UPDATE messages SET status = 'sent', channel = 'sms', provider = 'aliyun', attempts = 1 "
                           "WHERE callout_id = $1", events[1].callout_id)
        await conn.execute("UPDATE messages SET error_code = 'no_receipt', failed_channels = '{wechat}' "
                           "WHERE callout_id = $1", events[2].callout_id)
    return events


def _cancel(e: Any) -> CallOutCancelled:
    return CallOutCancelled(callout_id=e.callout_id, incident_id=e.incident_id, volunteer_id=e.volunteer_id,
                            reason=CancelReason.INCIDENT_CLOSED, incident_title=e.incident_title)


async def _outcome(ns: NotifyStack, events: list[Any]) -> list[list[tuple[str, str, str | None]]]:
    async with ns.pool.acquire() as conn:
        out = []
        for e in events:
            rows = await conn.fetch("SELECT kind, status, error_code FROM messages WHERE callout_id = $1 ORDER BY kind",
                                    e.callout_id)
            assert await conn.fetchval("SELECT state FROM callouts WHERE callout_id = $1", e.callout_id) == "closed"
            out.append([(r["kind"], r["status"], r["error_code"]) for r in rows])
        return out


async def test_stand_downs_in_a_batch_follow_the_per_event_rules(notify_stack: NotifyStack) -> None:
    ns = notify_stack
    handler = CallOutMessages()
    await ns.hold_sender()  # the pending messages stay as set here
    try:
        batched, single = await _three(ns, handler), await _three(ns, handler)
        cancels = [_cancel(e) for e in batched]
        async with ns.pool.acquire() as conn, conn.transaction():
            await handler.apply_batch(conn, [*cancels, cancels[1]])
        for e in single:
            async with ns.pool.acquire() as conn, conn.transaction():
                await handler(conn, _cancel(e))
        got_batched, got_single = await _outcome(ns, batched), await _outcome(ns, single)
    finally:
        async with ns.pool.acquire() as conn:  # nothing of this test is left for the sender to send
            await conn.execute("DELETE FROM messages WHERE callout_id = ANY($1::uuid[])",
                               [e.callout_id for e in batched + single])
        ns.resume_sender()
    assert got_batched == got_single
    assert got_batched == [
        [("callout", "failed", "cancelled_before_send")],
        [("callout", "sent", None), ("stand_down", "pending", None)],
        [("callout", "failed", "cancelled_before_resend"), ("stand_down", "pending", None)],
    ]


async def test_a_second_cancellation_does_not_stand_down_a_call_out_never_sent(notify_stack: NotifyStack) -> None:
    """Withheld before it was sent, then cancelled again (another event id, a later batch): still no stand-down;
    a call-out requested and cancelled in the same batch is withheld too."""
    ns = notify_stack
    handler = CallOutMessages()
    await ns.hold_sender()
    try:
        withheld, both = request(uuid.uuid4()), request(uuid.uuid4())
        async with ns.pool.acquire() as conn, conn.transaction():
            await handler.apply_batch(conn, [withheld])
        for batch in ([_cancel(withheld)], [_cancel(withheld)], [both, _cancel(both)]):
            async with ns.pool.acquire() as conn, conn.transaction():
                await handler.apply_batch(conn, batch)
        got = await _outcome(ns, [withheld, both])
    finally:
        async with ns.pool.acquire() as conn:
            await conn.execute("DELETE FROM messages WHERE callout_id = ANY($1::uuid[])",
                               [withheld.callout_id, both.callout_id])
        ns.resume_sender()
    assert got == [[("callout", "failed", "cancelled_before_send")]] * 2
