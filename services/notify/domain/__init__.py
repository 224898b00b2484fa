"""Notify's pure domain: reply parsing, message wording, delivery decisions (no I/O, no await)."""

from services.notify.domain.replies import ParsedReply, normalise, parse_reply
from services.notify.domain.routing import (
    ContactView,
    RecentCallOut,
    choose_channel,
    match_callout,
    retry_delay,
)
from services.notify.domain.templates import MessageContent, Rendered, render, sms_length, sms_segments

__all__ = [
    "ContactView",
    "MessageContent",
    "RecentCallOut",
    "ParsedReply",
    "Rendered",
    "choose_channel",
    "match_callout",
    "normalise",
    "parse_reply",
    "render",
    "retry_delay",
    "sms_length",
    "sms_segments",
]
