"""Notify end to end on the real Kafka and PostgreSQL, with the provider simulator over real HTTP."""

from __future__ import annotations

import asyncio
import random
import re
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from services.notify.handlers.consumers import message_id_for
from services.notify.testing import NotifyStack
from shared.events import (
    CallOutAssigned,
    CallOutCancelled,
    CallOutRequested,
    CancelReason,
    Event,
    IncidentClosed,
    Level,
    MessageKind,
    ReplyReceived,
    VolunteerContactUpdated,
    parse_event,
    utcnow,
)
from shared.topics import DELIVERY, REPLY
from shared.vocabulary import Channel


def mobile() -> str:
    return "+86139" + "".join(random.choice("0123456789") for _ in range(8))


def openid() -> str:
    return "o" + uuid.uuid4().hex[:27]


async def add_volunteer(ns: NotifyStack, *, with_mobile: bool = True, wechat: bool = False,
                        sms_consent: bool = True, preferred: Channel | None = None
                        ) -> tuple[uuid.UUID, str | None, str | None]:
    """A volunteer's contact; ``wechat``: an openid, following, preferring WeChat unless ``preferred`` says."""
    vid = uuid.uuid4()
    m = mobile() if with_mobile else None
    o = openid() if wechat else None
    event = VolunteerContactUpdated(volunteer_id=vid, revision=1, mobile=m, wechat_openid=o,
                                    wechat_subscribed=wechat, sms_consent=sms_consent,
                                    preferred_channel=preferred or (Channel.WECHAT if wechat else Channel.SMS))
    await ns.publish(ns.contact_topic, str(vid), event)
    row = await ns.wait_row("SELECT 1 FROM contacts WHERE volunteer_id = $1", vid)
    assert row is not None, "contact not projected"
    return vid, m, o


def request(vid: uuid.UUID, **kw: Any) -> CallOutRequested:
    values: dict[str, Any] = dict(
        callout_id=uuid.uuid4(), incident_id=uuid.uuid4(), requirement_id=uuid.uuid4(), volunteer_id=vid, wave=1,
        level=Level.VILLAGE, incident_kind="drowning", incident_title="柯桥区鉴湖溺水", place="鉴湖村东岸码头",
        role="救护员", reply_code="A7", respond_by=utcnow() + timedelta(minutes=10),
    )
    values.update(kw)
    return CallOutRequested(**values)


async def message_row(ns: NotifyStack, callout_id: uuid.UUID, kind: str = "callout",
                      status: tuple[str, ...] = ("delivered",), timeout: float = 15.0) -> Any:
    return await ns.wait_row(
        "SELECT * FROM messages WHERE callout_id = $1 AND kind = $2 AND status = ANY($3::text[])",
        callout_id, kind, list(status), timeout=timeout,
    )


async def test_callout_reaches_the_phone_once_even_when_the_event_is_redelivered(notify_stack: NotifyStack) -> None:
    ns = notify_stack
    vid, m, _ = await add_volunteer(ns)
    e = request(vid)
    await ns.publish(ns.callout_topic, str(vid), e)
    await ns.publish(ns.callout_topic, str(vid), e)  # redelivery: same event id
    copy = e.model_copy(update={"event_id": uuid.uuid4()})  # a re-published copy: new event id, same call-out
    await ns.publish(ns.callout_topic, str(vid), copy)
    row = await message_row(ns, e.callout_id)
    assert row is not None, "message not delivered"
    assert row["message_id"] == message_id_for(e.callout_id, MessageKind.CALLOUT)
    await asyncio.sleep(1.0)  # give a duplicate every chance to arrive
    got = await ns.phone(m)  # type: ignore[arg-type]
    assert len(got) == 1
    assert got[0]["out_id"] == str(row["message_id"])
    assert row["channel"] == "sms" and row["provider"] == "aliyun"
    assert "回复1" in row["body"] and "2" in row["body"]


async def test_rate_limit_is_retried_later_and_not_duplicated(notify_stack: NotifyStack) -> None:
    ns = notify_stack
    vid, m, _ = await add_volunteer(ns)
    r = await ns.http.post(f"{ns.sim.url}/sim/faults", json={"rate_limit": {"aliyun": 2}})
    r.raise_for_status()
    e = request(vid)
    try:
        await ns.publish(ns.callout_topic, str(vid), e)
        row = await message_row(ns, e.callout_id, timeout=20)
    finally:
        await ns.http.delete(f"{ns.sim.url}/sim/faults")
    assert row is not None
    assert row["attempts"] >= 3  # two refusals, then accepted
    stats = (await ns.http.get(f"{ns.sim.url}/sim/stats")).json()
    assert "isv.BUSINESS_LIMIT_CONTROL" in str(stats)
    await asyncio.sleep(0.5)
    assert len(await ns.phone(m)) == 1  # type: ignore[arg-type]


async def test_an_sms_volunteer_with_an_openid_gets_sms(notify_stack: NotifyStack) -> None:
    ns = notify_stack
    vid, m, o = await add_volunteer(ns, wechat=True, preferred=Channel.SMS)
    e = request(vid)
    await ns.publish(ns.callout_topic, str(vid), e)
    row = await message_row(ns, e.callout_id)
    assert row is not None
    assert row["channel"] == "sms" and row["failed_channels"] == []
    assert len(await ns.phone(m)) == 1  # type: ignore[arg-type]
    assert await ns.phone(o) == []  # type: ignore[arg-type]


async def test_wechat_not_following_falls_back_to_sms(notify_stack: NotifyStack) -> None:
    ns = notify_stack
    vid, m, o = await add_volunteer(ns, wechat=True)
    await ns.http.post(f"{ns.sim.url}/sim/faults", json={"not_following": [o]})
    e = request(vid)
    try:
        await ns.publish(ns.callout_topic, str(vid), e)
        row = await message_row(ns, e.callout_id)
    finally:
        await ns.http.delete(f"{ns.sim.url}/sim/faults")
    assert row is not None
    assert row["channel"] == "sms" and row["failed_channels"] == ["wechat"]
    assert len(await ns.phone(m)) == 1  # type: ignore[arg-type]
    assert await ns.phone(o) == []  # type: ignore[arg-type]


async def test_wechat_message_has_a_reply_page_that_accepts(notify_stack: NotifyStack) -> None:
    ns = notify_stack
    vid, _, o = await add_volunteer(ns, wechat=True)
    consumer = await _reply_consumer(ns)
    try:
        e = request(vid, drill=True)
        await ns.publish(ns.callout_topic, str(vid), e)
        row = await message_row(ns, e.callout_id)
        assert row is not None and row["channel"] == "wechat"
        got = await ns.phone(o)  # type: ignore[arg-type]
        assert len(got) == 1 and got[0]["url"].startswith(ns.url + "/r/")
        page = await ns.http.get(got[0]["url"])
        assert page.status_code == 200 and "演练" in page.text and "接受" in page.text
        def tap_of(html: str) -> str:
            m = re.search(r'name="tap" value="([0-9a-f]{32})"', html)
            assert m, html
            return m.group(1)

        form = {"action": "eta", "eta_minutes": "25", "tap": tap_of(page.text)}
        tap = await ns.http.post(got[0]["url"], data=form)
        assert tap.status_code == 200
        await ns.http.post(got[0]["url"], data=form)  # double tap: the same form sent again
        replies = await _replies_for(consumer, vid, 1)
        assert replies[0].callout_id == e.callout_id
        assert replies[0].eta_minutes == 25 and replies[0].drill
        async with ns.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM replies WHERE volunteer_id = $1", vid) == 1
        # Regression (break-it review): 拒绝 → 接受 → 拒绝 lost the last 拒绝 (same key as the first)
        shown = tap.text
        for action in ("decline", "accept", "decline"):
            answer = await ns.http.post(got[0]["url"], data={"action": action, "tap": tap_of(shown)})
            assert answer.status_code == 200 and "已收到" in answer.text
            shown = answer.text
        later = await _replies_for(consumer, vid, 3)
        assert [r.intent.value for r in later] == ["decline", "accept", "decline"]
        forged = await ns.http.get(got[0]["url"][:-3] + "xyz")
        assert forged.status_code == 404
    finally:
        await consumer.stop()


async def _reply_consumer(ns: NotifyStack) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(REPLY.name, bootstrap_servers=ns.bootstrap, group_id=f"it-{uuid.uuid4().hex}",
                                auto_offset_reset="latest")
    await consumer.start()
    while not consumer.assignment():
        await consumer.getmany(timeout_ms=100)
    for tp in consumer.assignment():
        await consumer.position(tp)  # pin "latest" before anything is published
    return consumer


async def _replies_for(consumer: AIOKafkaConsumer, vid: uuid.UUID | None, count: int, *,
                       sender: str | None = None, timeout: float = 15.0) -> list[ReplyReceived]:
    seen: dict[uuid.UUID, ReplyReceived] = {}
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        batch = await consumer.getmany(timeout_ms=300)
        for records in batch.values():
            for rec in records:
                ev: Event = parse_event(rec.value)
                if isinstance(ev, ReplyReceived) and (
                    (vid is not None and ev.volunteer_id == vid) or (sender is not None and ev.sender == sender)
                ):
                    seen[ev.event_id] = ev
        if len(seen) >= count:
            await asyncio.sleep(0.5)  # a duplicate would show up here
            for records in (await consumer.getmany(timeout_ms=300)).values():
                for rec in records:
                    ev = parse_event(rec.value)
                    if isinstance(ev, ReplyReceived) and ev.volunteer_id == vid and vid is not None:
                        seen[ev.event_id] = ev
            break
    return list(seen.values())


async def test_sms_reply_becomes_reply_received_on_the_real_topic(notify_stack: NotifyStack) -> None:
    ns = notify_stack
    vid, m, _ = await add_volunteer(ns)
    consumer = await _reply_consumer(ns)
    try:
        first = request(vid, reply_code="A7")
        second = request(vid, reply_code="B2", incident_title="越城区火灾")
        for e in (first, second):
            await ns.publish(ns.callout_topic, str(vid), e)
        assert await message_row(ns, first.callout_id) is not None
        assert await message_row(ns, second.callout_id) is not None
        r = await ns.http.post(f"{ns.sim.url}/sim/phones/{m}/reply", json={"text": "１Ａ７ 好的，20分钟到👍"})
        assert r.status_code == 200, r.text
        replies = await _replies_for(consumer, vid, 1)
        assert len(replies) == 1
        assert replies[0].callout_id == first.callout_id
        assert replies[0].intent.value == "eta" and replies[0].eta_minutes == 20
        assert replies[0].text == "１Ａ７ 好的，20分钟到👍"
        # an unparseable reply is kept and published, not dropped
        await ns.http.post(f"{ns.sim.url}/sim/phones/{m}/reply", json={"text": "请问在哪里集合"})
        replies = await _replies_for(consumer, vid, 1)
        assert [x.intent.value for x in replies] == ["unrecognised"]
        assert replies[0].callout_id == second.callout_id  # the latest open one
    finally:
        await consumer.stop()


async def test_unknown_phone_reply_is_kept_with_a_masked_sender(notify_stack: NotifyStack) -> None:
    ns = notify_stack
    stranger = mobile()
    consumer = await _reply_consumer(ns)
    try:
        token = ns.settings.callback_token.get_secret_value()
        body = [{"phone_number": stranger[3:], "content": "1", "send_time": "2026-11-29 16:00:00",
                 "dest_code": "1234", "sequence_id": random.randint(10**9, 10**10)}]
        r = await ns.http.post(f"{ns.url}/callbacks/aliyun/{token}/up", json=body)
        assert r.status_code == 200 and r.json()["code"] == 0
        r2 = await ns.http.post(f"{ns.url}/callbacks/aliyun/{token}/up", json=body)  # the provider's retry
        assert r2.status_code == 200
        masked = stranger[3:6] + "****" + stranger[-4:]
        replies = await _replies_for(consumer, None, 1, sender=masked)
        assert len(replies) == 1 and replies[0].volunteer_id is None and replies[0].callout_id is None
        async with ns.pool.acquire() as conn:
            n = await conn.fetchval("SELECT count(*) FROM replies WHERE sender_masked = $1", masked)
        assert n == 1
    finally:
        await consumer.stop()


async def test_forged_and_malformed_callbacks_are_refused_and_change_nothing(notify_stack: NotifyStack) -> None:
    ns = notify_stack
    token = ns.settings.callback_token.get_secret_value()
    async with ns.pool.acquire() as conn:
        before = await conn.fetchval("SELECT count(*) FROM replies")
    body = [{"phone_number": "13900000000", "content": "1", "send_time": "2026-11-29 16:00:00",
             "sequence_id": "999"}]
    bad_token = await ns.http.post(f"{ns.url}/callbacks/aliyun/not-the-token/up", json=body)
    assert bad_token.status_code == 404
    malformed = await ns.http.post(f"{ns.url}/callbacks/aliyun/{token}/up", content=b'{"not": "an array"}',
                                   headers={"content-type": "application/json"})
    assert malformed.status_code == 400
    forged_wechat = await ns.http.post(
        f"{ns.url}/callbacks/wechat", params={"signature": "0" * 40, "timestamp": "1700000000", "nonce": "x"},
        content=b"<xml><MsgType>event</MsgType></xml>",
    )
    assert forged_wechat.status_code == 403
    check = await ns.http.get(f"{ns.url}/callbacks/aliyun/{token}/report")
    assert check.json() == {"code": 0, "msg": "成功"}
    async with ns.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM replies") == before


async def test_stand_down_of_an_unsent_callout_sends_nothing(notify_stack: NotifyStack) -> None:
    ns = notify_stack
    await ns.hold_sender()  # the call-out is still pending when its stand-down arrives
    try:
        vid, m, _ = await add_volunteer(ns)
        e = request(vid)
        cancel = CallOutCancelled(callout_id=e.callout_id, incident_id=e.incident_id, volunteer_id=vid,
                                  reason=CancelReason.FILLED, incident_title=e.incident_title)
        await ns.publish(ns.callout_topic, str(vid), e)
        await ns.publish(ns.callout_topic, str(vid), cancel)
        row = await ns.wait_row("SELECT status, error_code FROM messages WHERE callout_id = $1 AND kind = 'callout' "
                                "AND status = 'failed'", e.callout_id)
        assert row is not None and row["error_code"] == "cancelled_before_send"
    finally:
        ns.resume_sender()
    await asyncio.sleep(1.0)  # the sender runs again: nothing for this call-out may go out
    assert await ns.phone(m) == []  # type: ignore[arg-type]
    async with ns.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM messages WHERE callout_id = $1", e.callout_id) == 1


async def test_delivery_events_reach_the_delivery_topic(notify_stack: NotifyStack) -> None:
    ns = notify_stack
    consumer = AIOKafkaConsumer(DELIVERY.name, bootstrap_servers=ns.bootstrap, group_id=f"it-{uuid.uuid4().hex}",
                                auto_offset_reset="latest")
    await consumer.start()
    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=100)
        for tp in consumer.assignment():
            await consumer.position(tp)
        vid, _, _ = await add_volunteer(ns)
        e = request(vid)
        await ns.publish(ns.callout_topic, str(vid), e)
        types: set[str] = set()
        deadline = asyncio.get_running_loop().time() + 15
        while asyncio.get_running_loop().time() < deadline and types != {"MessageSent", "MessageDelivered"}:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                for rec in records:
                    ev = parse_event(rec.value)
                    if getattr(ev, "callout_id", None) == e.callout_id:
                        types.add(ev.event_type)
                        assert rec.key == str(vid).encode()
        assert types == {"MessageSent", "MessageDelivered"}
    finally:
        await consumer.stop()


async def test_reply_page_refuses_unknown_and_forged_links(notify_stack: NotifyStack) -> None:
    ns = notify_stack
    from services.notify.adapters.reply_links import ReplyLinks

    links = ReplyLinks(ns.settings.reply_link_secret.get_secret_value(), ns.url, max_age_seconds=1)
    url = links.url(uuid.uuid4())
    async with httpx.AsyncClient() as http:
        assert (await http.get(url)).status_code == 404  # a valid signature for a message that does not exist
        old = ReplyLinks("another-secret", ns.url, max_age_seconds=1).url(uuid.uuid4())
        assert (await http.get(old)).status_code == 404


async def test_contact_projection_encrypts_ignores_older_revisions_and_retires(notify_stack: NotifyStack) -> None:
    ns = notify_stack
    vid = uuid.uuid4()
    first, second = mobile(), mobile()
    await ns.publish(ns.contact_topic, str(vid), VolunteerContactUpdated(volunteer_id=vid, revision=2, mobile=second))
    await ns.publish(ns.contact_topic, str(vid), VolunteerContactUpdated(volunteer_id=vid, revision=1, mobile=first))
    row = await ns.wait_row("SELECT * FROM contacts WHERE volunteer_id = $1", vid)
    assert row is not None
    await asyncio.sleep(0.5)  # the late, older snapshot has been consumed by now
    async with ns.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM contacts WHERE volunteer_id = $1", vid)
        dump = str(dict(row))
    assert row["revision"] == 2
    cipher = ns.runtime.extras["notify"].cipher
    assert cipher.decrypt(row["mobile_enc"]) == second
    assert second[3:] not in dump and first[3:] not in dump  # no plaintext number at rest
    # retirement: a tombstone (null value) deletes the row
    await ns.producer.send_and_wait(ns.contact_topic.name, None, key=str(vid).encode(),
                                    headers=[("event_id", str(uuid.uuid4()).encode()),
                                             ("event_type", b"VolunteerContactUpdated")])
    deadline = asyncio.get_running_loop().time() + 10
    while asyncio.get_running_loop().time() < deadline:
        async with ns.pool.acquire() as conn:
            if await conn.fetchval("SELECT count(*) FROM contacts WHERE volunteer_id = $1", vid) == 0:
                break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("tombstone not applied")


async def test_td_withdraws_sms_consent(notify_stack: NotifyStack) -> None:
    ns = notify_stack
    vid, m, _ = await add_volunteer(ns)
    first = request(vid)
    await ns.publish(ns.callout_topic, str(vid), first)
    assert await message_row(ns, first.callout_id) is not None
    r = await ns.http.post(f"{ns.sim.url}/sim/phones/{m}/reply", json={"text": "ＴＤ"})
    assert r.status_code == 200
    row = await ns.wait_row("SELECT sms_consent FROM contacts WHERE volunteer_id = $1 AND NOT sms_consent", vid)
    assert row is not None
    second = request(vid, reply_code="C3")
    await ns.publish(ns.callout_topic, str(vid), second)
    failed = await message_row(ns, second.callout_id, status=("failed",))
    assert failed is not None and failed["error_code"] == "no_channel"
    assert len(await ns.phone(m)) == 1  # type: ignore[arg-type]


async def test_wechat_without_delivery_receipt_falls_back_to_sms_after_the_timeout(notify_stack: NotifyStack) -> None:
    ns = notify_stack
    vid, m, o = await add_volunteer(ns, wechat=True)
    await ns.http.post(f"{ns.sim.url}/sim/faults", json={"withhold_receipts": [o]})
    e = request(vid)
    try:
        await ns.publish(ns.callout_topic, str(vid), e)
        sent = await message_row(ns, e.callout_id, status=("sent",))
        assert sent is not None and sent["channel"] == "wechat"
        # the harness's timeout is 3 s; then the same message goes out by SMS
        row = await message_row(ns, e.callout_id, status=("delivered",), timeout=20)
    finally:
        await ns.http.delete(f"{ns.sim.url}/sim/faults")
    assert row is not None and row["channel"] == "sms" and row["error_code"] is None
    assert row["failed_channels"] == ["wechat"]
    assert len(await ns.phone(o)) == 1  # type: ignore[arg-type]
    assert len(await ns.phone(m)) == 1  # type: ignore[arg-type]


async def _overdue(ns: NotifyStack, callout_id: uuid.UUID) -> Any:
    """The call-out message once the time-out sweep has decided not to send it again (or None after 20 s)."""
    return await ns.wait_row("SELECT * FROM messages WHERE callout_id = $1 AND kind = 'callout' "
                             "AND receipt_overdue IS NOT NULL", callout_id, timeout=20)


async def test_wechat_without_receipt_is_not_sent_again_once_the_volunteer_answered(notify_stack: NotifyStack) -> None:
    """Regression (fault drill run 5): an answered call-out whose receipt was lost went out again by SMS."""
    ns = notify_stack
    vid, m, o = await add_volunteer(ns, wechat=True)
    await ns.http.post(f"{ns.sim.url}/sim/faults", json={"withhold_receipts": [o]})
    e = request(vid)
    try:
        await ns.publish(ns.callout_topic, str(vid), e)
        [got] = await ns.wait_phone(o, 1)  # type: ignore[arg-type]
        await ns.hold_sender()  # the answer is recorded before the time-out, however slow the machine
        try:
            assert (await ns.http.post(got["url"], data={"action": "accept"})).status_code == 200
        finally:
            ns.resume_sender()
        row = await _overdue(ns, e.callout_id)
    finally:
        await ns.http.delete(f"{ns.sim.url}/sim/faults")
    assert row is not None and row["receipt_overdue"] == "answered" and row["status"] == "sent"
    assert await ns.phone(m) == []  # type: ignore[arg-type]


async def test_wechat_without_receipt_is_not_sent_again_once_the_call_out_closed(notify_stack: NotifyStack) -> None:
    """A call-out filled before its receipt time-out is not sent by SMS (its stand-down would follow it)."""
    ns = notify_stack
    vid, m, o = await add_volunteer(ns, wechat=True)
    await ns.http.post(f"{ns.sim.url}/sim/faults", json={"withhold_receipts": [o]})
    e = request(vid)
    try:
        await ns.publish(ns.callout_topic, str(vid), e)
        assert await message_row(ns, e.callout_id, status=("sent",)) is not None
        await ns.hold_sender()  # the stand-down is consumed before the time-out, however slow the machine
        try:
            await ns.publish(ns.callout_topic, str(vid), CallOutCancelled(
                callout_id=e.callout_id, incident_id=e.incident_id, volunteer_id=vid, reason=CancelReason.FILLED,
                incident_title=e.incident_title))
            assert await ns.wait_row("SELECT 1 FROM callouts WHERE callout_id = $1 AND state = 'closed'",
                                     e.callout_id) is not None
        finally:
            ns.resume_sender()
        row = await _overdue(ns, e.callout_id)
        stood_down = await ns.wait_phone(o, 2)  # type: ignore[arg-type]
    finally:
        await ns.http.delete(f"{ns.sim.url}/sim/faults")
    assert row is not None and row["receipt_overdue"] == "closed"
    assert len(stood_down) == 2  # the call-out and its stand-down, both by WeChat
    assert await ns.phone(m) == []  # type: ignore[arg-type]


async def test_wechat_call_out_past_its_deadline_is_not_sent_again_by_sms(notify_stack: NotifyStack) -> None:
    """Regression (fault drill run 10): call-outs sent late after a broker outage went again by SMS minutes after
    their deadline, when dispatch had already called the next wave."""
    ns = notify_stack
    vid, m, o = await add_volunteer(ns, wechat=True)
    await ns.http.post(f"{ns.sim.url}/sim/faults", json={"withhold_receipts": [o]})
    e = request(vid, respond_by=utcnow() + timedelta(seconds=1))
    try:
        await ns.publish(ns.callout_topic, str(vid), e)
        row = await _overdue(ns, e.callout_id)
    finally:
        await ns.http.delete(f"{ns.sim.url}/sim/faults")
    assert row is not None and row["receipt_overdue"] == "expired"
    assert await ns.phone(m) == []  # type: ignore[arg-type]


async def test_a_call_out_waiting_to_retry_is_not_sent_after_its_stand_down(notify_stack: NotifyStack) -> None:
    """Found in review: a call-out refused once (rate limit) and waiting for its retry, then stood down, went
    out at its retry time, after the stand-down (the stand-down's withhold sees only messages never tried)."""
    ns = notify_stack
    vid, m, _ = await add_volunteer(ns)
    # Every send is refused until the stand-down is in, so the call-out is still waiting for a retry when it
    # lands, however slow the machine. (With one refusal the retry came 0.2 s later, racing the stand-down
    # through Kafka: a stand-down consumed after it found the call-out sent, and the test failed.)
    (await ns.http.post(f"{ns.sim.url}/sim/faults", json={"rate_limit": {"aliyun": 1000}})).raise_for_status()
    e = request(vid)
    try:
        await ns.publish(ns.callout_topic, str(vid), e)
        refused = await ns.wait_row("SELECT attempts, next_attempt_at FROM messages WHERE callout_id = $1 "
                                    "AND kind = 'callout' AND status = 'pending' AND attempts >= 1", e.callout_id)
        assert refused is not None, "the first send was not refused"
        await ns.publish(ns.callout_topic, str(vid), CallOutCancelled(
            callout_id=e.callout_id, incident_id=e.incident_id, volunteer_id=vid, reason=CancelReason.FILLED,
            incident_title=e.incident_title))
        assert await ns.wait_row("SELECT 1 FROM callouts WHERE callout_id = $1 AND state = 'closed'",
                                 e.callout_id) is not None, "the stand-down was not consumed"
        (await ns.http.delete(f"{ns.sim.url}/sim/faults")).raise_for_status()  # the next retry would go through
        row = await ns.wait_row("SELECT error_code FROM messages WHERE callout_id = $1 AND kind = 'callout' "
                                "AND status = 'failed'", e.callout_id, timeout=30)
    finally:
        await ns.http.delete(f"{ns.sim.url}/sim/faults")
    assert row is not None and row["error_code"] == "cancelled_before_send"
    got = await ns.wait_phone(m, 1)  # type: ignore[arg-type]
    assert [("人员已满" in g["text"] or "无需" in g["text"]) for g in got] == [True], [g["text"] for g in got]


async def _restart_sender(ns: NotifyStack) -> None:
    """Stop the sender and start a new Sender, as a restarted notify process would have."""
    from services.notify.sender import Sender

    await ns.hold_sender()
    ctx = ns.runtime.extras["notify"]
    ns.runtime.extras["sender"] = Sender(ctx.pool, ctx.providers, ctx.settings, ctx.cipher, ctx.links)
    ns.resume_sender()


async def test_wechat_sent_before_a_restart_is_not_sent_again_for_a_receipt_lost_meanwhile(
    notify_stack: NotifyStack,
) -> None:
    """Regression (fault drill run 5): receipts pushed while notify was killed were lost, and 181 call-outs
    that had reached the phone by WeChat went out again by SMS after the time-out."""
    ns = notify_stack
    vid, m, o = await add_volunteer(ns, wechat=True)
    await ns.http.post(f"{ns.sim.url}/sim/faults", json={"withhold_receipts": [o]})  # pushed while nobody listened
    e = request(vid)
    try:
        await ns.publish(ns.callout_topic, str(vid), e)
        assert await message_row(ns, e.callout_id, status=("sent",)) is not None
        await _restart_sender(ns)
        row = await _overdue(ns, e.callout_id)
    finally:
        await ns.http.delete(f"{ns.sim.url}/sim/faults")
    assert row is not None and row["receipt_overdue"] == "listener_gap" and row["status"] == "sent"
    assert await ns.phone(m) == []  # type: ignore[arg-type]
    assert len(await ns.phone(o)) == 1  # type: ignore[arg-type]


async def test_a_call_out_stood_down_while_waiting_to_go_again_by_sms_is_stood_down_not_resent(
    notify_stack: NotifyStack,
) -> None:
    """Gone by WeChat without a receipt, then filled before the SMS left: no SMS call-out; the stand-down
    goes out, as the WeChat message may have reached the phone (before: withheld with no stand-down)."""
    ns = notify_stack
    vid, m, o = await add_volunteer(ns, wechat=True)
    await ns.http.post(f"{ns.sim.url}/sim/faults", json={"withhold_receipts": [o]})
    e = request(vid)
    try:
        await ns.publish(ns.callout_topic, str(vid), e)
        assert await message_row(ns, e.callout_id, status=("sent",)) is not None
        await ns.hold_sender()  # between the fallback and the SMS send
        sender = ns.runtime.extras["sender"]
        await asyncio.sleep(ns.settings.wechat_receipt_timeout_seconds + 0.5)
        assert await sender.fallback_unreceipted() == 1
        await ns.publish(ns.callout_topic, str(vid), CallOutCancelled(
            callout_id=e.callout_id, incident_id=e.incident_id, volunteer_id=vid, reason=CancelReason.FILLED,
            incident_title=e.incident_title))
        row = await ns.wait_row("SELECT error_code FROM messages WHERE callout_id = $1 AND kind = 'callout' "
                                "AND status = 'failed'", e.callout_id)
        assert row is not None and row["error_code"] == "cancelled_before_resend"
    finally:
        ns.resume_sender()
        await ns.http.delete(f"{ns.sim.url}/sim/faults")
    assert len(await ns.wait_phone(o, 2)) == 2  # type: ignore[arg-type]  # the call-out, then its stand-down
    assert await ns.phone(m) == []  # type: ignore[arg-type]


async def test_tencent_reply_callback_is_understood_too(notify_stack: NotifyStack) -> None:
    ns = notify_stack
    vid, m, _ = await add_volunteer(ns)
    consumer = await _reply_consumer(ns)
    try:
        e = request(vid)
        await ns.publish(ns.callout_topic, str(vid), e)
        assert await message_row(ns, e.callout_id) is not None
        r = await ns.http.post(f"{ns.sim.url}/sim/phones/{m}/reply", json={"text": "不去了，sorry", "provider": "tencent"})
        assert r.status_code == 200, r.text
        replies = await _replies_for(consumer, vid, 1)
        assert [(x.intent.value, x.callout_id) for x in replies] == [("decline", e.callout_id)]
    finally:
        await consumer.stop()


async def test_wechat_callbacks_signed_and_fresh_only(notify_stack: NotifyStack) -> None:
    import time

    from wechatpy.utils import WeChatSigner

    ns = notify_stack
    token = ns.settings.callback_token.get_secret_value()

    def signed(ts: int, nonce: str) -> dict[str, str]:
        signer = WeChatSigner()
        signer.add_data(token, str(ts), nonce)
        return {"signature": signer.signature, "timestamp": str(ts), "nonce": nonce}

    fresh = await ns.http.get(f"{ns.url}/callbacks/wechat", params={**signed(int(time.time()), "n1"), "echostr": "e42"})
    assert fresh.status_code == 200 and fresh.text == "e42"
    replayed = await ns.http.get(f"{ns.url}/callbacks/wechat",
                                 params={**signed(int(time.time()) - 3600, "n2"), "echostr": "e43"})
    assert replayed.status_code == 403
    malformed = await ns.http.post(f"{ns.url}/callbacks/wechat", params=signed(int(time.time()), "n3"),
                                   content=b"<xml><not-closed>")
    assert malformed.status_code == 400


async def test_a_reply_just_after_the_stand_down_still_answers_its_call_out(notify_stack: NotifyStack) -> None:
    """Regression (drill): a volunteer answered "1" a second after the requirement filled; notify had closed
    the call-out on the stand-down and published the reply as unmatched, so it never reached the board."""
    ns = notify_stack
    vid, m, _ = await add_volunteer(ns)
    consumer = await _reply_consumer(ns)
    try:
        e = request(vid, reply_code="C4")
        await ns.publish(ns.callout_topic, str(vid), e)
        assert await message_row(ns, e.callout_id) is not None
        cancel = CallOutCancelled(callout_id=e.callout_id, incident_id=e.incident_id, volunteer_id=vid,
                                  reason=CancelReason.FILLED, incident_title=e.incident_title)
        await ns.publish(ns.callout_topic, str(vid), cancel)
        assert await message_row(ns, e.callout_id, kind="stand_down") is not None
        r = await ns.http.post(f"{ns.sim.url}/sim/phones/{m}/reply", json={"text": "1"})
        assert r.status_code == 200, r.text
        replies = await _replies_for(consumer, vid, 1)
        assert len(replies) == 1 and replies[0].intent.value == "accept"
        assert replies[0].callout_id == e.callout_id
        assert replies[0].correlation_id == e.incident_id
    finally:
        await consumer.stop()


async def test_a_reply_code_names_its_call_out_even_after_its_stand_down(notify_stack: NotifyStack) -> None:
    """Regression (e2e drill): a volunteer still assigned to an earlier incident got a new call-out with code ZX,
    answered "1ZX" just after its stand-down, and notify matched the reply to the earlier call-out."""
    ns = notify_stack
    vid, m, _ = await add_volunteer(ns)
    consumer = await _reply_consumer(ns)
    try:
        earlier = request(vid, reply_code="MS")
        await ns.publish(ns.callout_topic, str(vid), earlier)
        assert await message_row(ns, earlier.callout_id) is not None
        r = await ns.http.post(f"{ns.sim.url}/sim/phones/{m}/reply", json={"text": "1"})
        assert r.status_code == 200
        assert [x.callout_id for x in await _replies_for(consumer, vid, 1)] == [earlier.callout_id]
        later = request(vid, reply_code="ZX", incident_title="越城区火灾")
        await ns.publish(ns.callout_topic, str(vid), later)
        assert await message_row(ns, later.callout_id) is not None
        cancel = CallOutCancelled(callout_id=later.callout_id, incident_id=later.incident_id, volunteer_id=vid,
                                  reason=CancelReason.FILLED, incident_title=later.incident_title)
        await ns.publish(ns.callout_topic, str(vid), cancel)
        assert await message_row(ns, later.callout_id, kind="stand_down") is not None
        r = await ns.http.post(f"{ns.sim.url}/sim/phones/{m}/reply", json={"text": "1ZX"})
        assert r.status_code == 200
        replies = await _replies_for(consumer, vid, 1)
        assert len(replies) == 1 and replies[0].callout_id == later.callout_id
    finally:
        await consumer.stop()


async def test_phone_numbers_and_openids_in_a_reply_are_masked_in_the_event_and_kept_raw_by_notify(
    notify_stack: NotifyStack,
) -> None:
    ns = notify_stack
    vid, m, _ = await add_volunteer(ns)
    e = request(vid)
    await ns.publish(ns.callout_topic, str(vid), e)
    assert await message_row(ns, e.callout_id) is not None
    new_number, other_openid = "19991000398", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
    text = f"换号了 {new_number} 请联系，微信 {other_openid}"
    consumer = await _reply_consumer(ns)
    try:
        r = await ns.http.post(f"{ns.sim.url}/sim/phones/{m}/reply", json={"text": text})
        assert r.status_code == 200, r.text
        raw: list[bytes] = []
        deadline = asyncio.get_running_loop().time() + 15
        while not raw and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                raw += [rec.value for rec in records
                        if isinstance(ev := parse_event(rec.value), ReplyReceived) and ev.volunteer_id == vid]
    finally:
        await consumer.stop()
    assert len(raw) == 1
    assert new_number.encode() not in raw[0] and other_openid.encode() not in raw[0]
    event = parse_event(raw[0])
    assert isinstance(event, ReplyReceived)
    assert event.text == "换号了 199****0398 请联系，微信 oUpF****eS6o"
    async with ns.pool.acquire() as conn:
        stored = await conn.fetchval("SELECT text FROM replies WHERE reply_id = $1", event.reply_id)
    assert stored == text


async def test_after_an_incident_closes_a_reply_without_code_answers_the_newer_call_out(notify_stack: NotifyStack) -> None:
    """Regression (marathon drill): a volunteer assigned and arrived at an earlier, closed incident got a new call-out,
    which filled and was stood down; their "好的" (no code) was matched to the earlier incident's call-out,
    which notify still held open."""
    ns = notify_stack
    assert ns.incident_topic is not None
    vid, m, _ = await add_volunteer(ns)
    consumer = await _reply_consumer(ns)
    try:
        earlier = request(vid, reply_code="A2")
        await ns.publish(ns.callout_topic, str(vid), earlier)
        assert await message_row(ns, earlier.callout_id) is not None
        await ns.publish(ns.callout_topic, str(vid), CallOutAssigned(
            callout_id=earlier.callout_id, incident_id=earlier.incident_id, volunteer_id=vid,
            incident_title=earlier.incident_title, place="现场"))
        closed = IncidentClosed(incident_id=earlier.incident_id, outcome="done")
        await ns.publish(ns.incident_topic, str(earlier.incident_id), closed)
        assert await ns.wait_row("SELECT 1 FROM callouts WHERE callout_id = $1 AND state = 'closed'",
                                 earlier.callout_id) is not None
        later = request(vid, reply_code="B3", incident_title="越城区火灾")
        await ns.publish(ns.callout_topic, str(vid), later)
        assert await message_row(ns, later.callout_id) is not None
        await ns.publish(ns.callout_topic, str(vid), CallOutCancelled(
            callout_id=later.callout_id, incident_id=later.incident_id, volunteer_id=vid,
            reason=CancelReason.FILLED, incident_title=later.incident_title))
        assert await message_row(ns, later.callout_id, kind="stand_down") is not None
        r = await ns.http.post(f"{ns.sim.url}/sim/phones/{m}/reply", json={"text": "好的"})
        assert r.status_code == 200
        replies = await _replies_for(consumer, vid, 1)
        assert len(replies) == 1 and replies[0].callout_id == later.callout_id
    finally:
        await consumer.stop()


@pytest.mark.parametrize("path", ["sms_push", "one_by_one"])
async def test_a_reply_without_code_as_the_stand_down_crosses_it_answers_the_stood_down_call_out(
        notify_stack: NotifyStack, path: str) -> None:
    """Regression (issue #14, a drill beside a live incident): the volunteer had an open call-out of a live
    incident, then the drill's, which filled and was stood down; the drill phone's "收到，马上出发" (no code),
    sent as the stand-down crossed it, was matched to the live incident's call-out and accepted it there."""
    ns = notify_stack
    vid, m, _ = await add_volunteer(ns)
    assert m is not None
    consumer = await _reply_consumer(ns)
    try:
        live = request(vid, reply_code="U7", incident_title="府山街道老人跌倒")
        await ns.publish(ns.callout_topic, str(vid), live)
        assert await message_row(ns, live.callout_id) is not None
        drill = request(vid, reply_code="B2", incident_title="府山公园心脏骤停", drill=True)
        await ns.publish(ns.callout_topic, str(vid), drill)
        assert await message_row(ns, drill.callout_id) is not None
        await ns.publish(ns.callout_topic, str(vid), CallOutCancelled(
            callout_id=drill.callout_id, incident_id=drill.incident_id, volunteer_id=vid,
            reason=CancelReason.FILLED, incident_title=drill.incident_title, drill=True))
        assert await message_row(ns, drill.callout_id, kind="stand_down") is not None
        if path == "sms_push":
            r = await ns.http.post(f"{ns.sim.url}/sim/phones/{m}/reply", json={"text": "收到，马上出发"})
            assert r.status_code == 200
        else:
            from services.notify.inbound import record_reply

            ctx = ns.runtime.extras["notify"]
            async with ns.pool.acquire() as conn, conn.transaction():
                await record_reply(conn, provider="aliyun", dedup_key=f"it:{uuid.uuid4()}", channel=Channel.SMS,
                                   text="收到，马上出发", received_at=utcnow(), cipher=ctx.cipher, sender=m)
        [reply] = await _replies_for(consumer, vid, 1)
        assert (reply.callout_id, reply.correlation_id, reply.drill) == (drill.callout_id, drill.incident_id, True)
    finally:
        await consumer.stop()


async def test_an_arrival_without_code_checks_in_on_the_assigned_call_out_not_a_newer_one(
        notify_stack: NotifyStack) -> None:
    """Regression (break-it review): assigned in H, then called by hand for F; "到了" went to F."""
    ns = notify_stack
    vid, m, _ = await add_volunteer(ns)
    assert m is not None
    consumer = await _reply_consumer(ns)
    try:
        h = request(vid, reply_code="H2", incident_title="破测H个人")
        await ns.publish(ns.callout_topic, str(vid), h)
        assert await message_row(ns, h.callout_id) is not None
        await ns.publish(ns.callout_topic, str(vid), CallOutAssigned(
            callout_id=h.callout_id, incident_id=h.incident_id, volunteer_id=vid, incident_title=h.incident_title,
            place="现场"))
        assert await message_row(ns, h.callout_id, kind="assigned") is not None
        f = request(vid, reply_code="F7", incident_title="破测F")
        await ns.publish(ns.callout_topic, str(vid), f)
        assert await message_row(ns, f.callout_id) is not None
        r = await ns.http.post(f"{ns.sim.url}/sim/phones/{m}/reply", json={"text": "到了"})
        assert r.status_code == 200
        [reply] = await _replies_for(consumer, vid, 1)
        assert (reply.intent.value, reply.callout_id) == ("arrived", h.callout_id)
    finally:
        await consumer.stop()


async def test_providers_share_the_aiohttp_transport_client(notify_stack: NotifyStack) -> None:
    """The composition root hands the providers httpx on aiohttp's transport, not plain httpx.

    Regression (profiled during the fan-out benchmark, issue #7): notify built a plain ``httpx.AsyncClient``,
    and a WeChat send spent most of its CPU in httpcore's pool; ``provider_http_client`` existed but was unused.
    """
    from httpx_aiohttp import HttpxAiohttpClient

    ctx = notify_stack.runtime.extras["notify"]
    assert isinstance(ctx.http, HttpxAiohttpClient)
    # ...and WeChat sends through it (the one hand-written adapter that uses the shared client).
    wechat = next(p for p in ctx.providers.values() if p.name == "wechat")
    assert wechat._http is ctx.http
