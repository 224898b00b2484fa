"""Message wording (length, 演练, reply instructions) and delivery decisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.notify.domain.routing import (
    ContactView,
    RecentCallOut,
    choose_channel,
    match_callout,
    retry_delay,
)
from services.notify.domain.templates import (
    TEMPLATES,
    MessageContent,
    render,
    sms_length,
    sms_segments,
)
from shared.events import CancelReason, MessageKind
from shared.vocabulary import Channel

SIG = "红十字志愿者"


POS = "120.585123,30.012345"  # GCJ-02 lon,lat as shared.maps.amap_position writes it


def callout(**kw: object) -> MessageContent:
    base: dict[str, object] = dict(kind=MessageKind.CALLOUT, incident_title="柯桥区鉴湖溺水", place="鉴湖村东岸码头",
                                   role="救护员", reply_code="A7", map_position=POS, callback_phone="0575-85123456")
    base.update(kw)
    return MessageContent(**base)  # type: ignore[arg-type]


def test_callout_says_where_to_gather_map_callback_and_how_to_answer_in_two_segments() -> None:
    r = render(callout(), Channel.SMS, signature=SIG)
    assert r.text == ("柯桥区鉴湖溺水，需救护员，请到鉴湖村东岸码头集合，地图https://uri.amap.com/marker?position="
                      "120.585123,30.012345，调度电话0575-85123456。回复1接受，2拒绝")
    assert sms_segments(SIG, r.text) == 2


def test_no_template_variable_is_a_url_and_the_link_is_fixed_text() -> None:
    # Aliyun isv.PARAM_NOT_SUPPORT_URL / Tencent ProhibitedUseUrlInTemplateParameter (providers.md, section 4)
    for kind in (MessageKind.CALLOUT, MessageKind.REMINDER, MessageKind.ASSIGNED):
        r = render(callout(kind=kind), Channel.SMS, signature=SIG)
        assert "https://uri.amap.com/marker?position=${pos}" in TEMPLATES[kind]
        assert not any("http" in v or "://" in v or "www." in v for v in r.template_params.values())
        assert r.template_params["pos"] == POS and "0575-85123456" in r.template_params["callback"]


def test_without_callback_number_the_message_names_none() -> None:
    r = render(callout(callback_phone=""), Channel.SMS, signature=SIG)
    assert "调度电话" not in r.text and r.template_params["callback"] == ""


def test_reply_code_only_when_several_callouts_are_open() -> None:
    assert "回复1A7接受，2A7拒绝" in render(callout(), Channel.SMS, signature=SIG, several_open=True).text
    assert "A7" not in render(callout(), Channel.SMS, signature=SIG, several_open=False).text


def test_drill_messages_start_with_yanlian() -> None:
    for kind in MessageKind:
        c = callout(kind=kind, drill=True, reason=CancelReason.FILLED)
        assert render(c, Channel.SMS, signature=SIG).text.startswith("演练")
        assert render(c, Channel.WECHAT).text.startswith("演练")
    assert not render(callout(), Channel.SMS, signature=SIG).text.startswith("演练")


def test_long_place_and_title_are_shortened_to_the_fewest_segments() -> None:
    c = callout(incident_title="柯桥区鉴湖街道鉴湖村溺水事故紧急救援行动", place="鉴湖村东岸码头附近的停车场入口处旁边的大樟树下往南一百米处")
    r = render(c, Channel.SMS, signature=SIG, several_open=True)
    assert sms_segments(SIG, r.text) == 2 and sms_length(SIG, r.text) == 2 * 67
    assert "…" in r.text and "回复1A7接受，2A7拒绝" in r.text and POS in r.text


def test_short_texts_are_not_shortened() -> None:
    r = render(callout(), Channel.SMS, signature=SIG, several_open=True)
    assert "…" not in r.text and "鉴湖村东岸码头" in r.text and "柯桥区鉴湖溺水" in r.text


def test_text_is_the_approved_template_filled() -> None:
    r = render(callout(drill=True), Channel.SMS, signature=SIG, several_open=True)
    filled = TEMPLATES[MessageKind.CALLOUT]
    for k, v in r.template_params.items():
        filled = filled.replace("${" + k + "}", v)
    assert filled == r.text
    assert all(isinstance(v, str) for v in r.template_params.values())


def test_no_brackets_in_body() -> None:
    r = render(callout(incident_title="【紧急】溺水"), Channel.SMS, signature=SIG)
    assert "【" not in r.text and "】" not in r.text


@pytest.mark.parametrize(
    ("reason", "assigned", "expected"),
    [(CancelReason.FILLED, False, "人员已满，无需前往"), (CancelReason.INCIDENT_CLOSED, True, "事件已结束，请停止前往")],
)
def test_stand_down_wording(reason: CancelReason, assigned: bool, expected: str) -> None:
    c = MessageContent(kind=MessageKind.STAND_DOWN, incident_title="鉴湖溺水", reason=reason, was_assigned=assigned)
    assert expected in render(c, Channel.SMS, signature=SIG).text


@given(st.text(min_size=0, max_size=200), st.text(min_size=0, max_size=200), st.booleans())
def test_sms_never_exceeds_the_provider_maximum(title: str, place: str, drill: bool) -> None:
    r = render(callout(incident_title=title, place=place, drill=drill), Channel.SMS, signature=SIG)
    assert sms_length(SIG, r.text) <= 500
    assert "拒绝" in r.text or sms_length(SIG, r.text) >= 499


def test_channel_choice() -> None:
    both = ContactView(mobile="+8613800138000", openid="o" + "a" * 27, wechat_subscribed=True, sms_consent=True)
    assert choose_channel(both) is Channel.WECHAT
    assert choose_channel(both, exclude=[Channel.WECHAT]) is Channel.SMS
    unsubscribed = ContactView("+8613800138000", "o" + "a" * 27, wechat_subscribed=False, sms_consent=True)
    assert choose_channel(unsubscribed) is Channel.SMS
    no_consent = ContactView("+8613800138000", None, wechat_subscribed=False, sms_consent=False)
    assert choose_channel(no_consent) is None
    assert choose_channel(None) is None
    assert choose_channel(both, exclude=[Channel.WECHAT, Channel.SMS]) is None


def test_the_preferred_channel_is_honoured_unless_it_cannot_reach_the_person() -> None:
    openid = "o" + "a" * 27
    sms_first = ContactView("+8613800138000", openid, wechat_subscribed=True, sms_consent=True, preferred=Channel.SMS)
    assert choose_channel(sms_first) is Channel.SMS  # issue #14: an sms volunteer with an openid got WeChat
    assert choose_channel(sms_first, exclude=[Channel.SMS]) is Channel.WECHAT  # SMS failed: WeChat reaches them
    withdrawn = ContactView("+8613800138000", openid, wechat_subscribed=True, sms_consent=False, preferred=Channel.SMS)
    assert choose_channel(withdrawn) is Channel.WECHAT  # TD/退订: SMS cannot be used
    wechat_first = ContactView("+8613800138000", None, wechat_subscribed=False, sms_consent=True,
                               preferred=Channel.WECHAT)
    assert choose_channel(wechat_first) is Channel.SMS  # no openid: WeChat cannot reach them
    unfollowed = ContactView("+8613800138000", openid, wechat_subscribed=False, sms_consent=True,
                             preferred=Channel.WECHAT)
    assert choose_channel(unfollowed) is Channel.SMS
    assert choose_channel(ContactView("+8613800138000", openid, True, True, preferred=Channel.WECHAT)) is Channel.WECHAT


def test_retry_delay_doubles_and_is_capped() -> None:
    assert [retry_delay(n, base=2, cap=20) for n in range(1, 6)] == [2, 4, 8, 16, 20]
    with pytest.raises(ValueError):
        retry_delay(0)


def test_match_callout_by_code_else_latest() -> None:
    now = datetime.now(UTC)
    a = RecentCallOut(uuid4(), "A7", now - timedelta(minutes=10))
    b = RecentCallOut(uuid4(), "B2", now - timedelta(minutes=1))
    assert match_callout([a, b], "a7") == a.callout_id
    assert match_callout([a, b], None) == b.callout_id
    assert match_callout([a, b], "ZZ") == b.callout_id
    assert match_callout([], "A7") is None


def test_a_reply_without_code_answers_the_call_out_just_stood_down_not_an_older_open_one() -> None:
    """Regression (issue #14, drill beside a live incident): open call-out A of a live incident, then
    the drill's B, filled and stood down 0.3 s before the drill phone's "收到" arrived: it accepted A."""
    now = datetime.now(UTC)
    a = RecentCallOut(uuid4(), "U7", now - timedelta(seconds=7))
    b = RecentCallOut(uuid4(), "B2", now - timedelta(seconds=1), open=False, stood_down_at=now - timedelta(seconds=0.3))
    assert match_callout([a, b], None, now=now) == b.callout_id
    # long after the stand-down, or once they answered it, the open one is meant
    assert match_callout([a, b], None, now=now + timedelta(minutes=11)) == a.callout_id
    answered = RecentCallOut(b.callout_id, "B2", b.requested_at, open=False, stood_down_at=b.stood_down_at,
                             answered=True)
    assert match_callout([a, answered], None, now=now) == a.callout_id
    # closed with its incident (no stand-down sent): not a candidate while another is open
    closed = RecentCallOut(uuid4(), "C3", now, open=False)
    assert match_callout([a, closed], None, now=now) == a.callout_id
    # nothing open nor just stood down: the newest (a late reply)
    assert match_callout([closed, answered], None, now=now) == closed.callout_id


@given(st.lists(st.tuples(st.integers(0, 3600), st.booleans(), st.one_of(st.none(), st.integers(0, 1200)),
                          st.booleans()), min_size=1, max_size=6))
def test_a_reply_without_code_never_goes_past_a_newer_live_call_out(rows: list[tuple[int, bool, int | None, bool]]) -> None:
    """Whatever the mix: the match is a call-out of the list, and no newer call-out is open or freshly stood down."""
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    recent = [RecentCallOut(uuid4(), f"X{i}", now - timedelta(seconds=age), open=is_open,
                            stood_down_at=None if is_open or down is None else now - timedelta(seconds=down),
                            answered=answered)
              for i, (age, is_open, down, answered) in enumerate(rows)]
    got = next(c for c in recent if c.callout_id == match_callout(recent, None, now=now))

    def live(c: RecentCallOut) -> bool:
        return c.open or (c.stood_down_at is not None and not c.answered
                          and (now - c.stood_down_at).total_seconds() <= 600)

    assert not any(live(c) and c.requested_at > got.requested_at for c in recent)
    assert live(got) or not any(live(c) for c in recent)


def test_engaged_elsewhere_answer_names_the_incident_they_are_on() -> None:
    """Issue #14: a second acceptance is answered with the incident they are already assigned in, in one segment."""
    c = MessageContent(kind=MessageKind.STAND_DOWN, incident_title="鉴湖溺水", reason=CancelReason.ENGAGED_ELSEWHERE,
                       engaged_incident_title="柯桥区平水镇山体滑坡救援现场")
    r = render(c, Channel.SMS, signature=SIG)
    assert r.text == "鉴湖溺水：您已在“柯桥区平水镇山体滑坡救…”任务中，无需前往，感谢您的支持"
    assert sms_segments(SIG, r.text) == 1
    assert r.template_params["reason"] == "您已在“柯桥区平水镇山体滑坡救…”任务中"
    bare = MessageContent(kind=MessageKind.STAND_DOWN, incident_title="鉴湖溺水", reason=CancelReason.ENGAGED_ELSEWHERE)
    assert "您已在其他任务中，无需前往" in render(bare, Channel.SMS, signature=SIG).text


def test_auto_answer_says_how_to_reply_and_where_to_gather() -> None:
    r = render(callout(kind=MessageKind.AUTO_ANSWER), Channel.SMS, signature=SIG, several_open=True)
    assert r.text.startswith("柯桥区鉴湖溺水：未能识别您的回复。请到鉴湖村东岸码头集合")
    assert "https://uri.amap.com/marker?position=" + POS in r.text and "调度电话0575-85123456" in r.text
    assert "回复1A7接受，2A7拒绝，到达后回复“到了”" in r.text
    assert sms_length(SIG, r.text) <= 500


def test_broadcast_carries_the_operators_text_and_is_drill_marked() -> None:
    c = callout(kind=MessageKind.BROADCAST, broadcast_text="集合点改到南门【急】", drill=True)
    r = render(c, Channel.SMS, signature=SIG)
    assert r.text == "演练：柯桥区鉴湖溺水调度通知：集合点改到南门[急]，调度电话0575-85123456"
    assert list(r.template_params) == ["drill", "title", "text", "callback"]


def test_an_arrival_without_code_checks_in_where_they_are_assigned() -> None:
    """Regression (break-it review): assigned in H, then added by hand to F; "到了" went to F (declined,
    engaged elsewhere) and H never recorded the arrival."""
    now = datetime.now(UTC)
    h = RecentCallOut(uuid4(), "H2", now - timedelta(minutes=20), assigned=True)
    f = RecentCallOut(uuid4(), "F7", now - timedelta(minutes=1))
    assert match_callout([h, f], None, now=now, arrival=True) == h.callout_id
    assert match_callout([h, f], None, now=now) == f.callout_id  # a "1" still answers the newest message
    assert match_callout([h, f], "F7", now=now, arrival=True) == f.callout_id  # a code always wins
