"""Where to go in the message, and the one automatic answer to an unrecognised reply (issue 14).

Real Kafka, PostgreSQL and the provider simulator: the phone shows the meeting point, the Amap link and
the callback number; an unrecognised reply (请问在哪里集合) gets exactly one automatic answer per call-out,
however many follow, and is still published for the operator.
"""

from __future__ import annotations

from services.notify.testing import NotifyStack
from shared.maps import amap_marker_url, amap_position

from .test_pipeline import _replies_for, _reply_consumer, add_volunteer, message_row, request


def _where(lat: float = 30.0, lon: float = 120.5) -> dict[str, object]:
    return {"meeting_point": "鉴湖南门停车场", "meeting_lat": lat, "meeting_lon": lon,
            "map_url": amap_marker_url(lat, lon, "鉴湖南门停车场"), "callback_phone": "0575-85123456"}


async def test_the_sms_says_where_to_gather_with_the_map_link_and_callback(notify_stack: NotifyStack) -> None:
    ns = notify_stack
    vid, m, _ = await add_volunteer(ns)
    assert m is not None
    e = request(vid, **_where())
    await ns.publish(ns.callout_topic, str(vid), e)
    assert await message_row(ns, e.callout_id) is not None
    [got] = await ns.wait_phone(m, 1)
    text = got["text"]
    assert "请到鉴湖南门停车场集合" in text
    assert "https://uri.amap.com/marker?position=" + amap_position(30.0, 120.5) in text
    assert "调度电话0575-85123456" in text and "回复1" in text
    assert len(text) <= 500


async def test_an_old_event_without_the_new_fields_still_gets_its_message(notify_stack: NotifyStack) -> None:
    ns = notify_stack
    vid, m, _ = await add_volunteer(ns)
    assert m is not None
    e = request(vid)  # no meeting point, map link or callback: as dispatch wrote them before
    await ns.publish(ns.callout_topic, str(vid), e)
    [got] = await ns.wait_phone(m, 1)
    assert "请到鉴湖村东岸码头集合" in got["text"] and "调度电话" not in got["text"]


async def test_an_unrecognised_reply_gets_one_automatic_answer_and_stays_for_the_operator(
    notify_stack: NotifyStack,
) -> None:
    ns = notify_stack
    vid, m, _ = await add_volunteer(ns)
    assert m is not None
    e = request(vid, **_where())
    await ns.publish(ns.callout_topic, str(vid), e)
    await ns.wait_phone(m, 1)
    consumer = await _reply_consumer(ns)
    try:
        for text in ("请问在哪里集合", "在哪？", "???"):  # three unrecognised replies, as an auto-responder would send
            r = await ns.http.post(f"{ns.sim.url}/sim/phones/{m}/reply", json={"text": text})
            assert r.status_code == 200, r.text
        replies = await _replies_for(consumer, vid, 3)
        assert [x.intent.value for x in replies] == ["unrecognised"] * 3
        assert {x.callout_id for x in replies} == {e.callout_id}
        answer = await message_row(ns, e.callout_id, kind="auto_answer")
        assert answer is not None, "no automatic answer"
        got = await ns.wait_phone(m, 2)
        auto = [g["text"] for g in got if "未能识别您的回复" in g["text"]]
        assert len(auto) == 1
        assert "请到鉴湖南门停车场集合" in auto[0] and "marker?position=" in auto[0] and "回复1接受，2拒绝" in auto[0]
        async with ns.pool.acquire() as conn:
            n = await conn.fetchval(
                "SELECT count(*) FROM messages WHERE callout_id = $1 AND kind = 'auto_answer'", e.callout_id)
        assert n == 1
        # a recognised reply afterwards is applied as usual and answered by nobody automatically
        await ns.http.post(f"{ns.sim.url}/sim/phones/{m}/reply", json={"text": "好的"})
        [accepted] = await _replies_for(consumer, vid, 1)
        assert accepted.intent.value == "accept" and accepted.callout_id == e.callout_id
    finally:
        await consumer.stop()
    assert len(await ns.phone(m)) == 2  # the call-out and the one automatic answer


async def test_a_broadcast_is_sent_once_per_call_out_and_broadcast_even_when_redelivered(
    notify_stack: NotifyStack,
) -> None:
    import uuid

    from shared.events import BroadcastRequested

    ns = notify_stack
    vid, m, _ = await add_volunteer(ns)
    assert m is not None
    e = request(vid, **_where(), drill=True)
    await ns.publish(ns.callout_topic, str(vid), e)
    await ns.wait_phone(m, 1)
    b = BroadcastRequested(broadcast_id=uuid.uuid4(), callout_id=e.callout_id, incident_id=e.incident_id,
                           volunteer_id=vid, incident_title=e.incident_title, text="集合点改到南门",
                           callback_phone="0575-85123456", drill=True)
    await ns.publish(ns.callout_topic, str(vid), b)
    await ns.publish(ns.callout_topic, str(vid), b.model_copy(update={"event_id": uuid.uuid4()}))  # re-published
    second = b.model_copy(update={"event_id": uuid.uuid4(), "broadcast_id": uuid.uuid4(), "text": "请带好急救包"})
    await ns.publish(ns.callout_topic, str(vid), second)  # a new broadcast: its own message
    got = await ns.wait_phone(m, 3)
    texts = [g["text"] for g in got]
    assert sum("调度通知：集合点改到南门" in t for t in texts) == 1, texts
    assert sum("调度通知：请带好急救包" in t for t in texts) == 1, texts
    assert all("演练" in t for t in texts)
    async with ns.pool.acquire() as conn:
        n = await conn.fetchval("SELECT count(*) FROM messages WHERE callout_id = $1 AND kind = 'broadcast'",
                                e.callout_id)
    assert n == 2


async def test_a_broadcast_not_yet_sent_when_the_call_out_is_stood_down_is_withheld(notify_stack: NotifyStack) -> None:
    import uuid

    from shared.events import BroadcastRequested, CallOutCancelled, CancelReason

    ns = notify_stack
    vid, m, _ = await add_volunteer(ns)
    assert m is not None
    e = request(vid, **_where())
    await ns.publish(ns.callout_topic, str(vid), e)
    await ns.wait_phone(m, 1)
    await ns.hold_sender()
    try:
        b = BroadcastRequested(broadcast_id=uuid.uuid4(), callout_id=e.callout_id, incident_id=e.incident_id,
                               volunteer_id=vid, incident_title=e.incident_title, text="集合点改到南门")
        await ns.publish(ns.callout_topic, str(vid), b)
        await ns.publish(ns.callout_topic, str(vid), CallOutCancelled(
            callout_id=e.callout_id, incident_id=e.incident_id, volunteer_id=vid, reason=CancelReason.STOOD_DOWN,
            incident_title=e.incident_title))
        assert await ns.wait_row("SELECT 1 FROM messages WHERE callout_id = $1 AND kind = 'stand_down'",
                                 e.callout_id) is not None
    finally:
        ns.resume_sender()
    assert await message_row(ns, e.callout_id, kind="stand_down") is not None
    withheld = await ns.wait_row(
        "SELECT error_code FROM messages WHERE callout_id = $1 AND kind = 'broadcast' AND status = 'failed'",
        e.callout_id)
    assert withheld is not None and withheld["error_code"] == "cancelled_before_send"
    texts = [g["text"] for g in await ns.phone(m)]
    assert not any("调度通知" in t for t in texts), texts


async def test_after_the_meeting_point_changes_the_automatic_answer_says_the_new_one(notify_stack: NotifyStack) -> None:
    """Regression (break-it review): the automatic answer repeated the call-out's old meeting point and pin."""
    from shared.events import MeetingPointChanged

    ns = notify_stack
    assert ns.incident_topic is not None
    vid, m, _ = await add_volunteer(ns)
    assert m is not None
    e = request(vid, **_where())
    await ns.publish(ns.callout_topic, str(vid), e)
    await ns.wait_phone(m, 1)
    moved = MeetingPointChanged(incident_id=e.incident_id, meeting_point="鉴湖北门广场",
                                map_url=amap_marker_url(30.01, 120.51, "鉴湖北门广场"), callback_phone="0575-85000000")
    await ns.publish(ns.incident_topic, str(e.incident_id), moved)
    assert await ns.wait_row("SELECT 1 FROM messages WHERE callout_id = $1 AND content->>'place' = '鉴湖北门广场'",
                             e.callout_id) is not None
    r = await ns.http.post(f"{ns.sim.url}/sim/phones/{m}/reply", json={"text": "请问在哪里集合"})
    assert r.status_code == 200, r.text
    got = await ns.wait_phone(m, 2)
    [auto] = [g["text"] for g in got if "未能识别您的回复" in g["text"]]
    assert "鉴湖北门广场" in auto and "鉴湖南门停车场" not in auto
    assert amap_position(30.01, 120.51) in auto and "0575-85000000" in auto
