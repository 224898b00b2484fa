"""Message texts: the Chinese templates for call-outs, assignments, stand-downs and reminders.

Pure: no I/O. :func:`render` turns a :class:`MessageContent` into the text for one channel.

SMS rules (source: Aliyun "短信发送规则", help.aliyun.com/zh/sms/user-guide/message-rules; the same
counting at Tencent): the provider puts the signature in front as ``【签名】`` and it counts; one
segment holds 70 characters, a longer text is sent as 67-character segments (at most 500 characters
in all); every Chinese character, letter, digit and punctuation mark counts as one; ``【】`` must not
appear in the body. :func:`render` picks the richest wording that fits one segment, then shortens the
place and the title, and only when that cannot fit accepts a second segment.

Every call-out says how to answer (回复1接受 2拒绝), with the call-out's reply code when the volunteer
has several open call-outs (回复1A7接受 2A7拒绝). Drill messages start with 演练. Times are shown in
Asia/Shanghai (UTC inside).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from shared.events import CancelReason, MessageKind
from shared.vocabulary import Channel

__all__ = [
    "SMS_MAX_LENGTH",
    "SMS_SEGMENT",
    "MessageContent",
    "Rendered",
    "render",
    "sms_length",
    "sms_segments",
]

SMS_SEGMENT = 70
SMS_LONG_SEGMENT = 67
SMS_MAX_LENGTH = 500
SHANGHAI = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class MessageContent:
    """What a message says, before wording.

    Attributes:
        kind: call-out, assigned, stand-down or reminder.
        incident_title: short title, e.g. 柯桥区鉴湖溺水.
        place: where to go, as people say it.
        role: what they are asked to do, e.g. 救护员 (call-outs and reminders).
        reply_code: the call-out's reply code.
        respond_by: deadline of the wave, timezone-aware UTC (shown as HH:MM Asia/Shanghai).
        reason: why a call-out is cancelled (stand-down only).
        was_assigned: the volunteer had been assigned (stand-down only: they may be on their way).
        drill: the message belongs to a drill: it starts with 演练.

    """

    kind: MessageKind
    incident_title: str
    place: str = ""
    role: str = ""
    reply_code: str = ""
    respond_by: datetime | None = None
    reason: CancelReason | None = None
    was_assigned: bool = False
    drill: bool = False


@dataclass(frozen=True)
class Rendered:
    """A rendered message: the body (without the SMS signature) and the provider template's values."""

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
    return s.replace("【", "[").replace("】", "]").strip()


def _shorten(s: str, n: int) -> str:
    if n <= 0:
        return ""
    return s if len(s) <= n else s[: max(n - 1, 0)] + "…"


def _callout_bodies(c: MessageContent, *, with_code: bool, reminder: bool) -> list[str]:
    pre = "演练：" if c.drill else ""
    pre += "提醒：" if reminder else ""
    code = c.reply_code if with_code else ""
    role = c.role or "志愿者"
    deadline = f"，{c.respond_by.astimezone(SHANGHAI):%H:%M}前" if c.respond_by else ""
    answer = f"回复1{code}接受，2{code}拒绝"
    return [
        f"{pre}{c.incident_title}，需{role}，请到{c.place}。{answer}{deadline}",
        f"{pre}{c.incident_title}，需{role}，请到{c.place}。{answer}",
        f"{pre}{c.incident_title}需{role}，地点{c.place}。回复1{code}接受2{code}拒绝",
    ]


def _bodies(c: MessageContent, *, with_code: bool) -> list[str]:
    pre = "演练：" if c.drill else ""
    if c.kind in (MessageKind.CALLOUT, MessageKind.REMINDER):
        return _callout_bodies(c, with_code=with_code, reminder=c.kind is MessageKind.REMINDER)
    if c.kind is MessageKind.ASSIGNED:
        return [
            f"{pre}{c.incident_title}：已确认您出勤，请前往{c.place}，到达后回复“到了”。",
            f"{pre}{c.incident_title}：已确认出勤，请前往{c.place}，到达回复到了",
        ]
    why = {
        CancelReason.FILLED: "人员已满",
        CancelReason.INCIDENT_CLOSED: "事件已结束",
        CancelReason.STOOD_DOWN: "任务已取消",
        CancelReason.REMOVED: "调度已调整",
    }[c.reason or CancelReason.STOOD_DOWN]
    stop = "请停止前往" if c.was_assigned else "无需前往"
    return [f"{pre}{c.incident_title}：{why}，{stop}，感谢您的支持。", f"{pre}{c.incident_title}：{why}，{stop}。"]


def _params(c: MessageContent, text: str, with_code: bool) -> dict[str, str]:
    params = {
        "title": c.incident_title,
        "place": c.place,
        "role": c.role,
        "code": c.reply_code if with_code else "",
        "deadline": f"{c.respond_by.astimezone(SHANGHAI):%H:%M}" if c.respond_by else "",
        "drill": "演练" if c.drill else "",
        "text": text,
    }
    return {k: str(v) for k, v in params.items()}


def render(content: MessageContent, channel: Channel, *, signature: str = "", several_open: bool = False) -> Rendered:
    """Word ``content`` for ``channel``.

    Args:
        content: what to say.
        channel: SMS (fits one 70-character segment where it can, the ``【signature】`` counted) or WeChat
            (the summary shown with the reply-page link; no length rule).
        signature: the SMS signature without brackets (e.g. 红十字志愿者).
        several_open: the volunteer has several open call-outs: the reply code goes into the instructions.

    Returns:
        The text (at most 500 characters) and the template values (all strings).

    """
    c = MessageContent(
        kind=content.kind,
        incident_title=_clean(content.incident_title),
        place=_clean(content.place),
        role=_clean(content.role),
        reply_code=_clean(content.reply_code),
        respond_by=content.respond_by,
        reason=content.reason,
        was_assigned=content.was_assigned,
        drill=content.drill,
    )
    with_code = several_open and bool(c.reply_code)
    if channel is Channel.WECHAT:
        text = _bodies(c, with_code=with_code)[0]
        if c.kind in (MessageKind.CALLOUT, MessageKind.REMINDER):
            text = text.split("。回复")[0] + "。请点击详情，选择接受或拒绝。"
        return Rendered(text[:SMS_MAX_LENGTH], _params(c, text, with_code))
    bodies = _bodies(c, with_code=with_code)
    for body in bodies:
        if sms_length(signature, body) <= SMS_SEGMENT:
            return Rendered(body, _params(c, body, with_code))
    # Shorten the place, then the title, in the plainest wording.
    plain = bodies[-1]
    over = sms_length(signature, plain) - SMS_SEGMENT
    place_keep = max(len(c.place) - over, 6)
    shorter = MessageContent(**{**c.__dict__, "place": _shorten(c.place, place_keep)})
    body = _bodies(shorter, with_code=with_code)[-1]
    over = sms_length(signature, body) - SMS_SEGMENT
    if over > 0:
        shorter = MessageContent(
            **{**shorter.__dict__, "incident_title": _shorten(c.incident_title, max(len(c.incident_title) - over, 6))}
        )
        body = _bodies(shorter, with_code=with_code)[-1]
    body = body[: SMS_MAX_LENGTH - len(signature) - 2]
    return Rendered(body, _params(c, body, with_code))
