"""The responder model: how simulated volunteers answer a call-out in a drill. Pure and deterministic.

For one call-out the model draws, from a random generator seeded by the scenario's seed and the
call-out's identity (so a drill replays the same way), whether the volunteer accepts, declines or
ignores it (chances by level, scaled by skill), after what latency (log-normal, seconds), whether
they write free text instead of 1/2, whether an accepting volunteer gives an ETA, never shows up
(no-show), or checks in some seconds after their ETA.

The texts are what volunteers type in practice; notify's reply parser must understand the free
texts, and the drill's integrity check then proves that every reply reached the board.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from typing import Literal

from muster.drill.scenario import Distribution, ResponderModel
from shared.vocabulary import Level

__all__ = ["ACCEPT_TEXTS", "ARRIVED_TEXTS", "DECLINE_TEXTS", "Response", "decide"]

ACCEPT_TEXTS = ("好的", "收到，马上出发", "可以", "OK", "好，我去", "👍 收到", "ｙｅｓ", "马上到！")
ETA_TEXTS = ("{m}分钟到", "大概{m}分钟", "{m}min到", "好的，{m}分钟后到")
DECLINE_TEXTS = ("不好意思，去不了", "没空", "不行，在外地", "no", "抱歉，今天不方便")
ARRIVED_TEXTS = ("到了", "已到达", "我到了", "到达现场")

Action = Literal["accept", "decline", "ignore"]


@dataclass(frozen=True)
class Response:
    """What one simulated volunteer does with one call-out.

    Attributes:
        action: accept, decline or ignore.
        latency_s: seconds after the message arrives that the reply is sent.
        text: the reply as typed (None when ignored).
        eta_minutes: the ETA they give when accepting with one.
        no_show: accepted but never arrives.
        arrival_after_s: seconds after the assignment confirmation that they check in (None: never).

    """

    action: Action
    latency_s: float
    text: str | None
    eta_minutes: int | None
    no_show: bool
    arrival_after_s: float | None


def _rng(seed: int, key: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _draw(rng: random.Random, dist: Distribution) -> float:
    value = rng.lognormvariate(math.log(dist.median), dist.sigma) if dist.sigma > 0 else dist.median
    return min(value, dist.max)


def decide(model: ResponderModel, *, seed: int, key: str, level: Level, skill: str | None) -> Response:
    """Draw one volunteer's response to one call-out.

    Args:
        model: the scenario's responder model.
        seed: the scenario's seed.
        key: a stable identity of the call-out (e.g. its id), so the same drill replays the same way.
        level: the level the call-out was made at.
        skill: the requirement's skill code (None for a team requirement).

    Returns:
        The :class:`Response`; probabilities are clamped to [0, 1] after the skill factor.

    """
    rng = _rng(seed, key)
    accept = min(1.0, model.accept.get(level, 0.0) * model.skill_factor.get(skill or "", 1.0))
    decline = min(model.decline.get(level, 0.0), 1.0 - accept)
    roll = rng.random()
    action: Action = "accept" if roll < accept else "decline" if roll < accept + decline else "ignore"
    latency = _draw(rng, model.latency_seconds)
    free = rng.random() < model.free_text_share
    if action == "ignore":
        return Response("ignore", latency, None, None, False, None)
    if action == "decline":
        return Response("decline", latency, rng.choice(DECLINE_TEXTS) if free else "2", None, False, None)
    eta: int | None = None
    if free and rng.random() < 0.5:
        eta = rng.randint(*model.eta_minutes)
        text = rng.choice(ETA_TEXTS).format(m=eta)
    else:
        text = rng.choice(ACCEPT_TEXTS) if free else "1"
    no_show = rng.random() < model.no_show_share
    arrival = None if no_show else _draw(rng, model.arrival_after_eta_seconds)
    return Response("accept", latency, text, eta, no_show, arrival)
