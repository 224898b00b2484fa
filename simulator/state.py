"""The simulator's memory: phones and their messages, faults on demand, counters, WeChat tokens.

Plain synchronous code (no I/O); the HTTP layer (:mod:`simulator.app`) calls it from one event loop.
"""

from __future__ import annotations

import re
import secrets
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["DeliveredMessage", "Faults", "SimState", "render_template"]

_MOBILE = re.compile(r"^(?:\+86|0086|86)?(1[3-9]\d{9})$")
_OPENID = re.compile(r"^o[A-Za-z0-9_-]{27}$")


def national_mobile(number: str) -> str | None:
    """``+8613812341234`` / ``8613812341234`` / ``13812341234`` → ``13812341234``; None if not a mainland mobile."""
    m = _MOBILE.match(number.strip())
    return m.group(1) if m else None


def is_openid(value: str) -> bool:
    """An openid as WeChat issues them: ``o`` + 27 of ``[A-Za-z0-9_-]``."""
    return _OPENID.match(value) is not None


def render_template(template: str | None, params: dict[str, str] | list[str]) -> str:
    """The text a phone shows: ``${name}`` / ``{1}`` / ``{{name.DATA}}`` filled; values joined when no template."""
    values = list(params.values()) if isinstance(params, dict) else list(params)
    if template is None:
        return " ".join(str(v) for v in values)
    text = template
    if isinstance(params, dict):
        for k, v in params.items():
            text = text.replace("${" + k + "}", str(v)).replace("{{" + k + ".DATA}}", str(v))
    for i, v in enumerate(values, start=1):
        text = text.replace("{" + str(i) + "}", str(v))
    return text


@dataclass
class DeliveredMessage:
    """One message a simulated phone received (the shape of the phone API)."""

    seq: int
    provider: str
    channel: str
    recipient: str  # E.164 for SMS, the openid for WeChat
    text: str
    url: str | None
    out_id: str | None  # our idempotency key: OutId / SessionContext / client_msg_id
    provider_message_id: str
    received_at: str  # ISO 8601 UTC
    template: str | None = None

    def public(self) -> dict[str, Any]:
        """The phone API's shape: every field but ``template``.

        A flat copy: ``dataclasses.asdict``'s deep copy cost the simulator a fifth of its CPU in a 10,000
        fan-out, where the feed and the log render each message.
        """
        return {"seq": self.seq, "provider": self.provider, "channel": self.channel, "recipient": self.recipient,
                "text": self.text, "url": self.url, "out_id": self.out_id,
                "provider_message_id": self.provider_message_id, "received_at": self.received_at}


@dataclass
class Faults:
    """Faults set through ``POST /sim/faults`` (see :mod:`simulator.app`)."""

    rate_limit: Counter[str] = field(default_factory=Counter)  # provider → sends left to refuse
    invalid_numbers: set[str] = field(default_factory=set)  # 11-digit mobiles
    not_following: set[str] = field(default_factory=set)  # openids (43004)
    refused: set[str] = field(default_factory=set)  # openids that refused subscribe notices (43101)
    withhold_receipts: set[str] = field(default_factory=set)  # E.164 mobiles / openids
    fail_callbacks: int = 0  # next N callback pushes fail (and are retried per schedule)


class SimState:
    """All the simulator keeps in memory."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.seq = 0
        self.messages: list[DeliveredMessage] = []
        self.by_recipient: dict[str, list[DeliveredMessage]] = defaultdict(list)
        self.last_provider: dict[str, str] = {}  # E.164 → provider that last delivered an SMS to it
        self.faults = Faults()
        self.stats: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.nonces: dict[str, float] = {}
        self.wechat_tokens: dict[str, float] = {}  # token → monotonic expiry
        self.wechat_stable: str | None = None
        self.wechat_dedup: dict[tuple[str, str], tuple[str, float]] = {}  # (openid, client_msg_id) → (msgid, t)
        self.uplink_seq = 0

    # --- messages -------------------------------------------------------------------------------------

    def deliver(self, *, provider: str, channel: str, recipient: str, text: str, url: str | None,
                out_id: str | None, provider_message_id: str, template: str | None = None) -> DeliveredMessage:
        self.seq += 1
        msg = DeliveredMessage(self.seq, provider, channel, recipient, text, url, out_id, provider_message_id,
                               datetime.now(UTC).isoformat(), template)
        self.messages.append(msg)
        self.by_recipient[recipient].append(msg)
        if channel == "sms":
            self.last_provider[recipient] = provider
        self.stats["accepted"] += 1
        return msg

    def after(self, seq: int, limit: int) -> list[DeliveredMessage]:
        """Delivered messages with a sequence number above ``seq`` (sequence numbers start at 1, no gaps)."""
        return self.messages[seq : seq + limit] if seq >= 0 else []

    def reject(self, code: str, count: int = 1) -> None:
        self.rejected[code] += count

    def take_rate_limit(self, provider: str) -> bool:
        """Consume one refused send of ``provider`` if a rate-limit fault is pending."""
        if self.faults.rate_limit[provider] > 0:
            self.faults.rate_limit[provider] -= 1
            return True
        return False

    def nonce_seen(self, nonce: str, *, window_seconds: float) -> bool:
        """Record ``nonce``; True if it was already used within the window (a replay)."""
        now = time.monotonic()
        if len(self.nonces) > 100_000:
            self.nonces = {n: t for n, t in self.nonces.items() if now - t < window_seconds}
        seen = nonce in self.nonces and now - self.nonces[nonce] < window_seconds
        self.nonces[nonce] = now
        return seen

    # --- WeChat tokens ---------------------------------------------------------------------------------

    def issue_token(self, lifetime: int) -> str:
        token = secrets.token_urlsafe(96)
        self.wechat_tokens[token] = time.monotonic() + lifetime
        return token

    def token_state(self, token: str | None) -> int:
        """0 valid, 40001 unknown token, 42001 expired (WeChat's codes)."""
        if not token or token not in self.wechat_tokens:
            return 40001
        return 0 if time.monotonic() < self.wechat_tokens[token] else 42001

    def expire_tokens(self) -> None:
        now = time.monotonic()
        self.wechat_tokens = {t: now - 1 for t in self.wechat_tokens}

    def stats_view(self) -> dict[str, Any]:
        return {**self.stats, "messages": len(self.messages), "rejected": dict(self.rejected)}
