"""Integrity of a drill: what the phones saw against what the boards say. Pure functions.

The counts a drill must end with at 0:

- ``duplicate_messages``: call-outs that reached a phone more than once, i.e. for each volunteer,
  call-out messages received beyond the number of call-outs made to them, plus any provider
  message (idempotency key) that reached the same phone twice. Stand-downs are counted the same way
  (``duplicate_stand_downs``).
- ``lost_callouts``: call-outs on the boards whose message never reached the volunteer's phone.
- ``lost_replies``: replies a phone sent that never reached the board (for each volunteer,
  replies sent minus replies recorded on their call-outs).
- ``overfilled_requirements``: requirements whose assigned count exceeds the count asked for.

Inputs are plain records gathered by the runner from the simulator's log (phones), the drill's
own log of replies it sent, and the dispatch boards.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["BoardCallOut", "PhoneMessage", "SentReply", "integrity"]


@dataclass(frozen=True)
class PhoneMessage:
    """A message the simulator delivered to a phone."""

    volunteer_id: str | None
    kind: str  # callout | assigned | stand_down | reminder | unknown
    out_id: str | None  # the idempotency key notify sent (OutId / SessionContext / client_msg_id)
    text: str = ""  # what the phone showed


@dataclass(frozen=True)
class SentReply:
    """A reply a simulated phone sent."""

    volunteer_id: str
    text: str


@dataclass(frozen=True)
class BoardCallOut:
    """A call-out as the dispatch board shows it."""

    callout_id: str
    volunteer_id: str
    state: str
    replies_recorded: int
    stood_down: bool

    @classmethod
    def from_board(cls, row: dict[str, Any]) -> BoardCallOut:
        """One row of ``GET /incidents/{id}/callouts``.

        ``stood_down``: the volunteer was told not to come — the call-out was cancelled, or their acceptance
        was refused because they are assigned in another incident (declined ``engaged_elsewhere``, answered
        with a stand-down message).
        """
        return cls(
            callout_id=str(row["callout_id"]), volunteer_id=str(row["volunteer_id"]), state=row["state"],
            replies_recorded=len(row.get("replies", [])),
            stood_down=row["state"] == "cancelled" or row.get("cancel_reason") == "engaged_elsewhere",
        )


def integrity(
    messages: Iterable[PhoneMessage],
    sent_replies: Iterable[SentReply],
    callouts: Iterable[BoardCallOut],
    requirements: Iterable[dict[str, Any]],
) -> dict[str, Any]:
    """Count duplicates and losses (see the module docstring).

    Args:
        messages: every message the phones received during the drill.
        sent_replies: every reply the phones sent.
        callouts: every call-out on the drill's boards.
        requirements: each requirement as ``{"count": int, "filled": int, ...}``.

    Returns:
        ``{"duplicate_messages", "duplicate_stand_downs", "lost_callouts", "lost_replies",
        "overfilled_requirements", "details": {...}}``; all counts are non-negative ints.

    """
    messages = list(messages)
    callouts = list(callouts)
    received = Counter((m.volunteer_id, m.kind) for m in messages)
    # One provider request may carry one OutId for a whole batch (Aliyun SendBatchSms): a key is
    # duplicated only when it reached the same phone twice.
    # A message to a phone the drill cannot name is not keyed: None for several phones in one batch is not
    # "the same phone twice" (the fault drill counted 56 such false duplicates). Nor are two different
    # messages to one phone in one batch (a stand-down from one incident and a call-out from another: run 8
    # counted 5): the key is the request's key and the text.
    by_key = Counter((m.volunteer_id, m.out_id, m.text) for m in messages if m.out_id and m.volunteer_id is not None)
    callouts_per_volunteer = Counter(c.volunteer_id for c in callouts)
    standdowns_per_volunteer = Counter(c.volunteer_id for c in callouts if c.stood_down)

    dup_details: list[dict[str, Any]] = []
    duplicate_messages = 0
    lost_callouts = 0
    for vid, n_callouts in callouts_per_volunteer.items():
        got = received[(vid, "callout")]
        if got > n_callouts:
            duplicate_messages += got - n_callouts
            dup_details.append({"volunteer_id": vid, "callouts": n_callouts, "callout_messages": got})
        elif got < n_callouts:
            lost_callouts += n_callouts - got
    stray = sum(n for (vid, kind), n in received.items() if kind == "callout" and vid not in callouts_per_volunteer)
    duplicate_messages += stray
    same_key_twice = sum(n - 1 for n in by_key.values() if n > 1)
    duplicate_messages = max(duplicate_messages, same_key_twice)

    duplicate_stand_downs = 0
    for vid, n in standdowns_per_volunteer.items():
        duplicate_stand_downs += max(0, received[(vid, "stand_down")] - n)

    sent = Counter(r.volunteer_id for r in sent_replies)
    recorded: Counter[str] = Counter()
    for c in callouts:
        recorded[c.volunteer_id] += c.replies_recorded
    lost = {vid: n - recorded[vid] for vid, n in sent.items() if n > recorded[vid]}

    overfilled = [r for r in requirements if int(r.get("filled", 0)) > int(r["count"])]
    return {
        "duplicate_messages": duplicate_messages,
        "duplicate_stand_downs": duplicate_stand_downs,
        "lost_callouts": lost_callouts,
        "lost_replies": sum(lost.values()),
        "overfilled_requirements": len(overfilled),
        "details": {
            "duplicates": dup_details[:50],
            "stray_callout_messages": stray,
            "same_idempotency_key_twice": same_key_twice,
            "lost_replies_by_volunteer": dict(list(lost.items())[:50]),
            "overfilled": overfilled[:50],
            "messages_seen": len(messages),
            "replies_sent": sum(sent.values()),
            "replies_recorded": sum(recorded.values()),
        },
    }
