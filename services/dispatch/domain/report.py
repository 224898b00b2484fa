"""Figures of one incident, for its report: pure arithmetic over what dispatch recorded.

Figures (issue #4, "timeline and figures"): time to first acceptance and time to fill each
requirement (seconds from opening), the level reached, waves, call-outs by state, acceptance
rate by level (accepted ÷ called at that level), messages by channel and delivery failures.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from shared.vocabulary import Level

from .model import COUNTED_STATES, CallOutState
from .waves import LEVEL_ORDER

__all__ = ["CallOutFact", "CircleCallOutFact", "MessageFact", "RequirementFact", "circle_figures", "incident_figures"]


@dataclass(frozen=True)
class CallOutFact:
    """One call-out as the report needs it. ``accepted_at`` is when it was assigned (or checked in), if ever."""

    requirement_id: UUID
    level: Level
    wave: int
    state: CallOutState
    requested_at: datetime
    accepted_at: datetime | None = None


@dataclass(frozen=True)
class RequirementFact:
    requirement_id: UUID
    count: int
    filled: int
    level: Level
    filled_at: datetime | None = None


@dataclass(frozen=True)
class MessageFact:
    """One message notify reported: its channel and whether it failed (``status`` sent/delivered/failed)."""

    message_id: UUID
    channel: str
    status: str


def _seconds(a: datetime, b: datetime | None) -> float | None:
    return None if b is None else round((b - a).total_seconds(), 3)


def incident_figures(
    *,
    opened_at: datetime,
    requirements: Iterable[RequirementFact],
    callouts: Iterable[CallOutFact],
    messages: Iterable[MessageFact] = (),
) -> dict[str, Any]:
    """The incident's figures as a JSON-ready dict.

    Returns:
        ``{"time_to_first_acceptance_s", "requirements": [{"requirement_id", "count", "filled",
        "time_to_fill_s", "level"}], "level_reached", "waves", "callouts_by_state",
        "acceptance_rate_by_level": {level: {"called", "accepted", "rate"}}, "messages_by_channel",
        "delivery_failures"}``; times in seconds (None when it has not happened), rates in 0..1.

    """
    calls = list(callouts)
    reqs = list(requirements)
    # A reply's time is the provider's (Aliyun's SmsUp send_time has whole seconds), so it can read a
    # fraction of a second before the call-out it answers; an acceptance is never earlier than its request.
    accepted_times = [max(c.accepted_at, c.requested_at) for c in calls if c.accepted_at is not None]
    first = min(accepted_times) if accepted_times else None
    by_level: dict[str, dict[str, float]] = defaultdict(lambda: {"called": 0, "accepted": 0, "rate": 0.0})
    for c in calls:
        row = by_level[c.level.value]
        row["called"] += 1
        if c.accepted_at is not None or c.state in COUNTED_STATES:
            row["accepted"] += 1
    for row in by_level.values():
        row["rate"] = round(row["accepted"] / row["called"], 4) if row["called"] else 0.0
    levels = [c.level for c in calls] + [r.level for r in reqs]
    reached = max(levels, key=LEVEL_ORDER.index) if levels else None
    msgs = list(messages)
    by_channel: Counter[str] = Counter()
    seen: set[UUID] = set()
    for m in msgs:
        if m.message_id not in seen:
            seen.add(m.message_id)
            by_channel[m.channel] += 1
    return {
        "time_to_first_acceptance_s": _seconds(opened_at, first),
        "requirements": [
            {
                "requirement_id": str(r.requirement_id),
                "count": r.count,
                "filled": r.filled,
                "time_to_fill_s": _seconds(opened_at, r.filled_at),
                "level": r.level.value,
            }
            for r in reqs
        ],
        "level_reached": reached.value if reached else None,
        "waves": max((c.wave for c in calls), default=0),
        "callouts_by_state": dict(Counter(c.state.value for c in calls)),
        "acceptance_rate_by_level": {k: by_level[k] for k in (lvl.value for lvl in LEVEL_ORDER) if k in by_level},
        "messages_by_channel": dict(by_channel),
        "delivery_failures": len({m.message_id for m in msgs if m.status == "failed"}),
    }


@dataclass(frozen=True)
class CircleCallOutFact:
    """One call-out of a cardiac-arrest circle: its step (``wave``), state and times, and the role if accepted."""

    wave: int
    state: CallOutState
    requested_at: datetime
    accepted_at: datetime | None = None
    arrived_at: datetime | None = None
    role: str | None = None  # "cpr" | "fetch_aed"


def circle_figures(
    *, opened_at: datetime, rings_m: tuple[float, ...], callouts: Iterable[CircleCallOutFact],
    first_alert_sent_at: datetime | None,
) -> dict[str, Any]:
    """The circle's figures (issue #17), seconds from opening.

    Returns:
        ``{"seconds_to_first_alert_sent", "seconds_to_first_acceptance", "seconds_to_first_arrival",
        "aed_runs", "seconds_to_aed_on_scene", "rings": [{"step", "ring_m", "alerted", "accepted"}]}``; a time
        is None when it did not happen. "AED on scene" is the first arrival of a volunteer sent to fetch one.

    """
    def since(t: datetime | None) -> float | None:
        return None if t is None else round((t - opened_at).total_seconds(), 3)

    calls = list(callouts)
    accepted = [c.accepted_at for c in calls if c.accepted_at is not None]
    arrived = [c.arrived_at for c in calls if c.arrived_at is not None]
    aed_arrived = [c.arrived_at for c in calls if c.role == "fetch_aed" and c.arrived_at is not None]
    by_step: dict[int, list[CircleCallOutFact]] = defaultdict(list)
    for c in calls:
        by_step[c.wave].append(c)
    return {
        "seconds_to_first_alert_sent": since(first_alert_sent_at),
        "seconds_to_first_acceptance": since(min(accepted)) if accepted else None,
        "seconds_to_first_arrival": since(min(arrived)) if arrived else None,
        "aed_runs": sum(c.role == "fetch_aed" for c in calls),
        "seconds_to_aed_on_scene": since(min(aed_arrived)) if aed_arrived else None,
        "rings": [{"step": w, "ring_m": rings_m[min(w - 1, len(rings_m) - 1)] if rings_m else None,
                   "alerted": len(cs), "accepted": sum(c.accepted_at is not None for c in cs)}
                  for w, cs in sorted(by_step.items())],
    }
