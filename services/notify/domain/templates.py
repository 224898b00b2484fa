"""Message texts: the Chinese templates for call-outs, assignments, stand-downs and reminders.

Pure: no I/O. :func:`render` turns a :class:`MessageContent` into the text for one channel and the
values of the provider's approved template (:data:`TEMPLATES`, one per message kind; Aliyun writes
variables ``${name}``, Tencent takes the same values positionally, in this order; WeChat's template
message gets them as ``data``). The text is exactly the template filled with the values.

SMS rules (source: Aliyun "短信发送规则", help.aliyun.com/zh/sms/user-guide/message-rules; the same
counting at Tencent): the provider puts the signature in front as ``【签名】`` and it counts; one
segment holds 70 characters, a longer text is sent as 67-character segments (at most 500 characters
in all); every Chinese character, letter, digit and punctuation mark counts as one; ``【】`` must not
appear in the body; variables must not be URLs, so the map link's ``https://uri.amap.com/marker?position=``
is fixed template text and only the GCJ-02 ``lon,lat`` is a variable (:mod:`shared.maps`); a notification
may name at most two contact numbers, landline/400/95 only (help.aliyun.com/document_detail/463270.htm):
the one callback number dispatch checked. :func:`render` shortens the place (the meeting point), then the
title (with …), down to 6 characters each, as far as that saves a segment; no further.

Call-outs, reminders and confirmations say where to gather (the meeting point, else the incident's place),
the map link of the meeting point and, when the operator gave one, the callback number (调度电话…).

A cardiac-arrest assignment (kinds ``cardiac_cpr``, ``cardiac_aed``, sent instead of ``assigned``) says what to
do: CPR at the patient with the patient's map link, or "fetch the AED at … (building/floor)" with the AED's map
link, then the patient's place. The AED's place is never shortened (it is what they must find).

Every call-out says how to answer (回复1接受，2拒绝), with the call-out's reply code when the volunteer
has several open call-outs (回复1A7接受，2A7拒绝). Drill messages start with 演练.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from shared.events import CancelReason, MessageKind
from shared.maps import AMAP_MARKER_PREFIX
from shared.vocabulary import Channel

__all__ = [
    "SMS_MAX_LENGTH",
    "SMS_SEGMENT",
    "TEMPLATES",
    "MessageContent",
    "Rendered",
    "render",
    "sms_length",
    "sms_segments",
]

SMS_SEGMENT = 70
SMS_LONG_SEGMENT = 67
SMS_MAX_LENGTH = 500
MIN_SHORTENED = 6

TEMPLATES: dict[MessageKind, str] = {
    MessageKind.CALLOUT: "${drill}${title}，需${role}，请到${place}集合，地图" + AMAP_MARKER_PREFIX
    + "${pos}${callback}。回复1${code}接受，2${code}拒绝",
    MessageKind.REMINDER: "${drill}提醒：${title}仍需${role}，请到${place}集合，地图" + AMAP_MARKER_PREFIX
    + "${pos}${callback}。回复1${code}接受，2${code}拒绝",
    MessageKind.ASSIGNED: "${drill}${title}：已确认您出勤，请前往${place}，地图" + AMAP_MARKER_PREFIX
    + "${pos}${callback}，到达后回复“到了”",
    MessageKind.STAND_DOWN: "${drill}${title}：${reason}，${action}，感谢您的支持",
    MessageKind.BROADCAST: "${drill}${title}调度通知：${text}${callback}",
    MessageKind.AUTO_ANSWER: "${drill}${title}：未能识别您的回复。请到${place}集合，地图" + AMAP_MARKER_PREFIX
    + "${pos}${callback}。回复1${code}接受，2${code}拒绝，到达后回复“到了”",
    MessageKind.CARDIAC_CPR: "${drill}${title}：已确认，请立即到${place}为患者做心肺复苏CPR，地图" + AMAP_MARKER_PREFIX
    + "${pos}${callback}，到达后回复“到了”",
    MessageKind.CARDIAC_AED: "${drill}${title}：已确认，请先取AED：${aed}，地图" + AMAP_MARKER_PREFIX
    + "${aedpos}，再送到${place}${callback}，到达后回复“到了”",
}
"""The approved template per kind (Aliyun ``${var}`` syntax); what SMS templates must be registered as."""

_REASONS = {
    CancelReason.FILLED: "人员已满",
    CancelReason.INCIDENT_CLOSED: "事件已结束",
    CancelReason.STOOD_DOWN: "任务已取消",
    CancelReason.REMOVED: "调度已调整",
    CancelReason.ENGAGED_ELSEWHERE: "您已在其他任务中",
}
#: Characters of the other incident's title kept in an engaged-elsewhere answer (it must stay one SMS segment).
ENGAGED_TITLE_LENGTH = 12


@dataclass(frozen=True)
class MessageContent:
    """What a message says, before wording.

    Attributes:
        kind: call-out, assigned, stand-down or reminder.
        incident_title: short title, e.g. 柯桥区鉴湖溺水.
        place: where to go, as people say it: the meeting point, else the incident's place.
        map_position: the meeting point for the map link, GCJ-02 ``lon,lat`` (:func:`shared.maps.amap_position`).
        callback_phone: the operator's callback number, or empty.
        broadcast_text: what the operator wrote (broadcasts only).
        role: what they are asked to do, e.g. 救护员 (call-outs and reminders).
        reply_code: the call-out's reply code.
        respond_by: deadline of the wave, timezone-aware UTC (not in the SMS; kept for the reply page).
        reason: why a call-out is cancelled (stand-down only).
        was_assigned: the volunteer had been assigned (stand-down only: they may be on their way).
        engaged_incident_title: reason engaged_elsewhere: the incident they are already assigned in (named
            in the answer, shortened to :data:`ENGAGED_TITLE_LENGTH` characters).
        drill: the message belongs to a drill: it starts with 演练.
        aed_place: cardiac_aed: where the AED hangs (address, building/floor).
        aed_position: cardiac_aed: the AED for its map link, GCJ-02 ``lon,lat``.

    """

    kind: MessageKind
    incident_title: str
    place: str = ""
    role: str = ""
    reply_code: str = ""
    map_position: str = ""
    callback_phone: str = ""
    broadcast_text: str = ""
    respond_by: datetime | None = None
    reason: CancelReason | None = None
    was_assigned: bool = False
    engaged_incident_title: str = ""
    drill: bool = False
    aed_place: str = ""
    aed_position: str = ""


@dataclass(frozen=True)
class Rendered:
    """A rendered message: the body (without the SMS signature) and the template's values, in template order."""

    text: str
    template_params: dict[str, str]


def sms_length(signature: str, body: str) -> int:
    """Characters the provider counts: ``【signature】`` plus the body."""
    return len(signature) + 2 + len(body)


def sms_segments(signature: str, body: str) -> int:
    """Billed segments: 1 up to 70 characters, else ceil(length / 67)."""
    n = sms_length(signature, body)
    return 1 if n <= SMS_SEGMENT else -(-n // SMS_LONG_SEGMENT)


def _clean(s: str) -> str:
    # 【】 may not appear in a body; the provider adds the signature's own brackets.
    return " ".join(s.replace("【", "[").replace("】", "]").split())


def _shorten(s: str, n: int) -> str:
    return s if len(s) <= n else s[: max(n - 1, 1)] + "…"


def _values(c: MessageContent, code: str) -> dict[str, str]:
    drill = "演练：" if c.drill else ""
    callback = f"，调度电话{c.callback_phone}" if c.callback_phone else ""
    if c.kind is MessageKind.BROADCAST:
        return {"drill": drill, "title": c.incident_title, "text": c.broadcast_text, "callback": callback}
    if c.kind is MessageKind.AUTO_ANSWER:
        return {"drill": drill, "title": c.incident_title, "place": c.place, "pos": c.map_position,
                "callback": callback, "code": code}
    if c.kind in (MessageKind.CALLOUT, MessageKind.REMINDER):
        return {"drill": drill, "title": c.incident_title, "role": c.role or "志愿者", "place": c.place,
                "pos": c.map_position, "callback": callback, "code": code}
    if c.kind is MessageKind.CARDIAC_CPR:
        return {"drill": drill, "title": c.incident_title, "place": c.place, "pos": c.map_position,
                "callback": callback}
    if c.kind is MessageKind.CARDIAC_AED:
        return {"drill": drill, "title": c.incident_title, "aed": c.aed_place, "aedpos": c.aed_position,
                "place": c.place, "callback": callback}
    if c.kind is MessageKind.ASSIGNED:
        return {"drill": drill, "title": c.incident_title, "place": c.place, "pos": c.map_position,
                "callback": callback}
    reason = _REASONS[c.reason or CancelReason.STOOD_DOWN]
    if c.reason is CancelReason.ENGAGED_ELSEWHERE and c.engaged_incident_title:
        reason = f"您已在“{_shorten(c.engaged_incident_title, ENGAGED_TITLE_LENGTH)}”任务中"
    return {"drill": drill, "title": c.incident_title, "reason": reason,
            "action": "请停止前往" if c.was_assigned else "无需前往"}


def _fill(template: str, values: dict[str, str]) -> str:
    for k, v in values.items():
        template = template.replace("${" + k + "}", v)
    return template


def _shortest(template: str, values: dict[str, str]) -> str:
    short = {k: _shorten(v, MIN_SHORTENED) if k in ("place", "title") else v for k, v in values.items()}
    return _fill(template, short)


def _capacity(signature: str, body: str) -> int:
    """Characters the segments of ``body`` hold: 70 for one segment, else 67 per segment."""
    n = sms_segments(signature, body)
    return SMS_SEGMENT if n == 1 else n * SMS_LONG_SEGMENT


def render(content: MessageContent, channel: Channel, *, signature: str = "", several_open: bool = False) -> Rendered:
    """Word ``content`` for ``channel``.

    Args:
        content: what to say.
        channel: SMS (fits one 70-character segment where it can, the ``【signature】`` counted) or WeChat
            (the same text, shown with the reply-page link; no length rule).
        signature: the SMS signature without brackets (e.g. 红十字志愿者).
        several_open: the volunteer has several open call-outs: the reply code goes into the instructions.

    Returns:
        The text (at most 500 characters with the signature) and the template's values (all strings).

    """
    c = replace(content, incident_title=_clean(content.incident_title), place=_clean(content.place),
                role=_clean(content.role), reply_code=_clean(content.reply_code),
                engaged_incident_title=_clean(content.engaged_incident_title), aed_place=_clean(content.aed_place),
                broadcast_text=_clean(content.broadcast_text))
    code = c.reply_code if several_open else ""
    template = TEMPLATES[c.kind]
    values = _values(c, code)
    text = _fill(template, values)
    if channel is Channel.SMS:
        over = sms_length(signature, text) - _capacity(signature, _shortest(template, values))
        for field in ("place", "title"):
            if over > 0 and field in values and len(values[field]) > MIN_SHORTENED:
                keep = max(len(values[field]) - over, MIN_SHORTENED)
                values[field] = _shorten(values[field], keep)
                text = _fill(template, values)
                over = sms_length(signature, text) - _capacity(signature, _shortest(template, values))
        limit = SMS_MAX_LENGTH - len(signature) - 2
        if len(text) > limit:
            text = text[: limit - 1] + "…"
    return Rendered(text, values)
