"""Candidate selection: who is eligible for a requirement at a level, and in which order to call them.

Rule (issue #4, "candidate selection"): a volunteer is eligible when they are active, consented,
hold the skill — with a certificate valid on the incident's day (Asia/Shanghai) where the skill
needs one (:data:`shared.vocabulary.SKILLS`) — are available (``available``, or ``unavailable``
whose ``unavailable_until`` has passed), are not engaged in another open incident, have not been
called in this incident yet, and live inside the unit of the current level (the incident's
village, then its town, its county, the city; see :func:`shared.divisions.ancestor`).

Ranking: distance from the incident in metres (great circle, :func:`shared.divisions.distance_m`;
unknown positions last), then fewest call-outs in the last 30 days, then the id (stable).

Team requirements: a team is eligible when it is active, of the type, inside the unit, has an
active consented leader who is not engaged and not yet called in this incident; it is called
through its leader and counts as one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable
from datetime import datetime
from uuid import UUID
from zoneinfo import ZoneInfo

from shared.divisions import ancestor, distance_m, level_of
from shared.events import Availability
from shared.vocabulary import Level, TeamType, skill_by_code

from .model import TeamCandidate, VolunteerCandidate

__all__ = ["SHANGHAI", "is_eligible", "rank_key", "select_teams", "select_volunteers", "within_unit"]

SHANGHAI = ZoneInfo("Asia/Shanghai")


def _inside(unit: str) -> Callable[[str], bool]:
    """Whether a division code lies inside ``unit``: the rule of :func:`within_unit`, worked out once per unit."""
    if level_of(unit) is Level.CITY:
        prefix = unit[:4]
        return lambda code: code[:4] == prefix
    return lambda code: code.startswith(unit)


def within_unit(code: str, unit: str) -> bool:
    """True when the division ``code`` lies inside ``unit`` (any level; the city by its 4-digit prefix).

    A team at county level (``330603``) is not inside a town (``330603101``) but is inside its county.
    """
    return _inside(unit)(code)


def _available(v: VolunteerCandidate, at: datetime) -> bool:
    if v.availability is Availability.AVAILABLE:
        return True
    if v.availability is Availability.UNAVAILABLE:
        return v.unavailable_until is not None and v.unavailable_until <= at
    return False


def _qualification(skill: str, at: datetime) -> Callable[[VolunteerCandidate], bool]:
    """Whether a volunteer holds ``skill`` and, if it needs one, a certificate valid on ``at``'s Shanghai date.

    The skill's certificate rule and the date are worked out once.
    """
    needs_certificate = skill_by_code(skill).needs_certificate
    day = at.astimezone(SHANGHAI).date()

    def qualified(v: VolunteerCandidate) -> bool:
        if skill not in v.skills:
            return False
        return not needs_certificate or any(c.skill == skill and c.valid_on(day) for c in v.certificates)

    return qualified


def _callable(v: VolunteerCandidate, at: datetime, called: Collection[UUID]) -> bool:
    return v.active and v.consent and not v.engaged and v.volunteer_id not in called and _available(v, at)


def _eligibility(skill: str, unit: str, at: datetime, called: Collection[UUID]) -> Callable[[VolunteerCandidate], bool]:
    """:func:`is_eligible` for one requirement and level, its per-candidate test as a function.

    What is the same for every candidate (the unit's level, the skill's certificate rule, the incident's
    date) is worked out once: a city-level wave tests ten thousand candidates.
    """
    inside, qualified = _inside(unit), _qualification(skill, at)
    return lambda v: _callable(v, at, called) and inside(v.unit_code) and qualified(v)


def is_eligible(v: VolunteerCandidate, *, skill: str, unit: str, at: datetime, called: Collection[UUID]) -> bool:
    """True when ``v`` may be called for ``skill`` inside ``unit`` at ``at`` (UTC); see the module rule."""
    return _eligibility(skill, unit, at, called)(v)


def _distance(lat: float, lon: float, plat: float | None, plon: float | None) -> float:
    if plat is None or plon is None:
        return math.inf
    return distance_m(lat, lon, plat, plon)


def rank_key(distance: float, recent_callouts: int, ident: UUID) -> tuple[float, int, str]:
    """Sort key: metres, then call-outs in the last 30 days, then the id as text."""
    return (distance, recent_callouts, str(ident))


def select_volunteers(
    volunteers: Iterable[VolunteerCandidate],
    *,
    skill: str,
    lat: float,
    lon: float,
    unit_code: str,
    level: Level,
    at: datetime,
    called: Collection[UUID],
    limit: int,
) -> list[tuple[VolunteerCandidate, float]]:
    """The first ``limit`` eligible volunteers for ``skill`` at ``level``, best first, with their distance.

    Args:
        volunteers: the roster projection (or a pre-filtered superset of the eligible).
        skill: a code of :data:`shared.vocabulary.SKILLS`.
        lat: the incident's latitude, WGS84 degrees.
        lon: the incident's longitude, WGS84 degrees.
        unit_code: the incident's village/community code (12 digits).
        level: the current level; the unit searched is ``ancestor(unit_code, level)``.
        at: the incident's time (UTC); certificates are checked on its Asia/Shanghai date.
        called: volunteers already called in this incident (never called twice).
        limit: how many to return at most (the wave size).

    Returns:
        ``[(volunteer, distance_m)]`` in ranking order, at most ``limit`` long.

    Raises:
        KeyError: ``skill`` is not in the vocabulary.

    """
    eligible = _eligibility(skill, ancestor(unit_code, level), at, called)
    scored = [(v, _distance(lat, lon, v.lat, v.lon)) for v in volunteers if eligible(v)]
    scored.sort(key=lambda p: rank_key(p[1], p[0].recent_callouts, p[0].volunteer_id))
    return scored[: max(limit, 0)]


def select_teams(
    teams: Iterable[TeamCandidate],
    *,
    team_type: TeamType,
    lat: float,
    lon: float,
    unit_code: str,
    level: Level,
    at: datetime,
    called: Collection[UUID],
    limit: int,
) -> list[tuple[TeamCandidate, float]]:
    """The first ``limit`` eligible teams of ``team_type`` at ``level``, best first, with their distance.

    ``called`` holds volunteer ids (leaders included) already called in this incident. Distance is
    from the team's base, else from its leader's position. A person who leads two teams is called
    once, for the better-ranked one. Arguments are as in :func:`select_volunteers`.
    """
    unit = ancestor(unit_code, level)
    scored: list[tuple[TeamCandidate, float]] = []
    for t in teams:
        leader = t.leader
        if not (t.active and not t.engaged and t.team_type is team_type and within_unit(t.unit_code, unit)):
            continue
        if leader is None or not _callable(leader, at, called):
            continue
        plat, plon = (t.lat, t.lon) if t.lat is not None and t.lon is not None else (leader.lat, leader.lon)
        scored.append((t, _distance(lat, lon, plat, plon)))
    scored.sort(key=lambda p: rank_key(p[1], p[0].recent_callouts, p[0].team_id))
    out: list[tuple[TeamCandidate, float]] = []
    leaders: set[UUID] = set()
    for t, d in scored:  # one person leading two teams is called once, for the better-ranked team
        assert t.leader is not None
        if t.leader.volunteer_id not in leaders:
            leaders.add(t.leader.volunteer_id)
            out.append((t, d))
    return out[: max(limit, 0)]
