"""Waves, deadlines and escalation (四级联动): pure decisions.

Rule (issue #4, "waves and escalation"): a wave calls ``outstanding × over-call factor`` people,
rounded up (default factor 2). Each wave has a deadline (defaults: emergency 180 s, event
1,800 s; a drill takes its policy's). When a deadline passes short of the need, the next wave is
called at the same level; when the level has no one left, the search escalates one level up
(village → town → county → city, :func:`shared.divisions.next_level`), never above the highest
level allowed; there, with no one left, the requirement is flagged unfilled to the operator.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection
from dataclasses import dataclass
from uuid import UUID

from shared.divisions import next_level
from shared.events import IncidentMode
from shared.vocabulary import Level

__all__ = [
    "DEFAULT_DEADLINE_SECONDS",
    "DEFAULT_OVER_CALL_FACTOR",
    "LEVEL_ORDER",
    "REPLY_CODE_ALPHABET",
    "REPLY_CODE_DIGITS",
    "REPLY_CODE_LETTERS",
    "REPLY_CODE_SPACE",
    "CallWave",
    "Decision",
    "Escalate",
    "Filled",
    "FlagUnfilled",
    "decide",
    "deadline_seconds",
    "level_allowed",
    "reply_code",
    "urgent_reply_code",
    "wave_size",
]

DEFAULT_OVER_CALL_FACTOR = 2.0
DEFAULT_DEADLINE_SECONDS: dict[IncidentMode, int] = {IncidentMode.EMERGENCY: 180, IncidentMode.EVENT: 1800}
LEVEL_ORDER: tuple[Level, ...] = (Level.VILLAGE, Level.TOWN, Level.COUNTY, Level.CITY)
#: Letters of reply codes. Left out: the look-alikes I, L, O (of 1, 0) and every letter that notify's reply
#: parser (services/notify/domain/replies.py) reads as a unit or a word: H and M (hours, minutes: "1 4M"
#: would be an ETA of 4 minutes, "1H2" of an hour), N (no), Y and K (yes, ok), T (the opt-out T/TD).
REPLY_CODE_LETTERS = "ABCDEFGJPQRSUVWXZ"
#: Digits of reply codes (no 0 and 1: look-alikes of O and I; 1 and 2 are also the answers).
REPLY_CODE_DIGITS = "23456789"
#: Every character a reply code may hold.
REPLY_CODE_ALPHABET = REPLY_CODE_LETTERS + REPLY_CODE_DIGITS
#: Two-character codes: a letter, then a digit (17 × 8 = 136).
REPLY_CODE_SPACE = len(REPLY_CODE_LETTERS) * len(REPLY_CODE_DIGITS)


def wave_size(outstanding: int, factor: float = DEFAULT_OVER_CALL_FACTOR) -> int:
    """People to call for ``outstanding`` still needed: ``ceil(outstanding × factor)``; 0 when none is needed.

    Raises:
        ValueError: ``factor`` is below 1 (a wave would call fewer than needed).

    """
    if factor < 1:
        raise ValueError(f"over-call factor must be at least 1, got {factor}")
    if outstanding <= 0:
        return 0
    return math.ceil(round(outstanding * factor, 9))


def deadline_seconds(mode: IncidentMode, policy_seconds: int | None) -> int:
    """A wave's deadline in seconds: the policy's when given, else 180 s (emergency) / 1,800 s (event).

    Raises:
        ValueError: a drill without ``policy_seconds`` (a drill's scenario sets its own deadline).

    """
    if policy_seconds is not None:
        return policy_seconds
    if mode is IncidentMode.DRILL:
        raise ValueError("a drill must give policy.wave_deadline_seconds")
    return DEFAULT_DEADLINE_SECONDS[mode]


def level_allowed(level: Level, max_level: Level) -> bool:
    """True when ``level`` is at or below ``max_level``."""
    return LEVEL_ORDER.index(level) <= LEVEL_ORDER.index(max_level)


@dataclass(frozen=True)
class Filled:
    """Nothing to do: the requirement has what it needs."""


@dataclass(frozen=True)
class CallWave:
    """Call ``size`` more people at ``level``."""

    level: Level
    size: int


@dataclass(frozen=True)
class Escalate:
    """No one is left at ``from_level``: search ``to_level`` next."""

    from_level: Level
    to_level: Level


@dataclass(frozen=True)
class FlagUnfilled:
    """No one is left at the highest level allowed: tell the operator."""

    level: Level
    outstanding: int


Decision = Filled | CallWave | Escalate | FlagUnfilled


def decide(
    *, outstanding: int, level: Level, max_level: Level, eligible_left: int, factor: float = DEFAULT_OVER_CALL_FACTOR
) -> Decision:
    """What to do for one requirement at a deadline (or at opening).

    Args:
        outstanding: people still needed.
        level: the level searched now.
        max_level: the highest level allowed by the incident's policy.
        eligible_left: eligible people not yet called at ``level`` (or at least ``wave_size`` of them).
        factor: the over-call factor.

    Returns:
        :class:`Filled`, :class:`CallWave` (size ≤ ``eligible_left``), :class:`Escalate` (always one
        level up, never above ``max_level``) or :class:`FlagUnfilled`.

    """
    if outstanding <= 0:
        return Filled()
    if eligible_left > 0:
        return CallWave(level=level, size=min(wave_size(outstanding, factor), eligible_left))
    up = next_level(level)
    if up is not None and level_allowed(up, max_level):
        return Escalate(from_level=level, to_level=up)
    return FlagUnfilled(level=level, outstanding=outstanding)


def reply_code(callout_id: UUID, taken: Collection[str]) -> str:
    """A two-character code for a call-out, unique among the volunteer's open call-outs (``taken``).

    A code is a letter of :data:`REPLY_CODE_LETTERS` then a digit of :data:`REPLY_CODE_DIGITS` (``A7``), so
    typed after the answer digit (回复1A7接受 → ``1A7``) it is neither part of a number (``1 25`` would be
    an ETA of 25 minutes) nor a unit or a word of the reply parser. The first candidate comes from a hash
    of the call-out id, so codes look random but are reproducible; on a clash the next free code in
    order is taken. A volunteer with all 136 two-character codes open gets a three-character one
    (letter, digit, digit).

    Raises:
        ValueError: all 1,224 codes are taken.

    """
    letters, digits = REPLY_CODE_LETTERS, REPLY_CODE_DIGITS
    nd = len(digits)
    start = int.from_bytes(hashlib.blake2b(callout_id.bytes, digest_size=4).digest(), "big") % REPLY_CODE_SPACE
    for i in range(REPLY_CODE_SPACE):
        k = (start + i) % REPLY_CODE_SPACE
        code = letters[k // nd] + digits[k % nd]
        if code not in taken:
            return code
    for i in range(REPLY_CODE_SPACE * nd):
        code = letters[i // (nd * nd)] + digits[(i // nd) % nd] + digits[i % nd]
        if code not in taken:
            return code
    raise ValueError("no free reply code")  # pragma: no cover - 1,224 open call-outs for one person


def urgent_reply_code(callout_id: UUID, taken: Collection[str]) -> str:
    """A three-character code (letter, digit, digit: ``A77``) for a call-out written without the codes lock.

    The cardiac circle writes its call-outs without waiting for a fan-out's transaction (which holds the
    codes lock while it writes thousands): its codes come from the three-character space, which
    :func:`reply_code` uses only for a volunteer with all 136 two-character codes open, so the two cannot
    clash; two urgent writers picking one code for one volunteer at once hit the open-code unique index
    (the caller then writes again under the lock). The first candidate comes from a hash of the call-out id.

    Raises:
        ValueError: all 1,088 three-character codes are taken.

    """
    letters, digits = REPLY_CODE_LETTERS, REPLY_CODE_DIGITS
    nd = len(digits)
    space = len(letters) * nd * nd
    start = int.from_bytes(hashlib.blake2b(callout_id.bytes, digest_size=4).digest(), "big") % space
    for i in range(space):
        k = (start + i) % space
        code = letters[k // (nd * nd)] + digits[(k // nd) % nd] + digits[k % nd]
        if code not in taken:
            return code
    raise ValueError("no free urgent reply code")  # pragma: no cover
