"""The cardiac-arrest rescue circle (5-minute circle): rings of CPR/AED-certified volunteers, and their roles.

Pure: no I/O. Times are timezone-aware UTC; distances are metres (great circle,
:func:`shared.divisions.distance_m`); points are WGS84 degrees.

Rule (issue #17): for an incident of kind :data:`CARDIAC_ARREST` the four-level wave is too slow, so the
circle calls at once the nearest volunteers certified for CPR/AED (skill ``cpr_aed`` with a certificate
valid on the incident's Asia/Shanghai day), by distance alone — across division borders, whatever their
home unit's level. A walking pace of about 2.3 m/s makes five minutes about 700 m: the first ring.

* Step 0 (at opening) calls the :attr:`CirclePolicy.first` nearest (default 3) within the first ring
  (default 700 m).
* Each later step, :attr:`CirclePolicy.step_seconds` apart (the reply window over the number of rings
  after the first: default 120 s / 3 = 40 s), widens the ring (default 700 → 900 → 1,100 → 1,300 m) and
  raises the number called so far linearly to :attr:`CirclePolicy.cap` (default 30) at the last step.
* Nobody farther than the current ring is called; nobody twice; never more than the cap in all (no
  over-call of the district); nearest first (ties: fewest recent call-outs, then the id).
* The circle stops calling once :attr:`CirclePolicy.wanted` have accepted (one for CPR, the others to
  fetch AEDs), and after its last step (the ambulance is on its way in any case).
* A volunteer who opted out of cardiac alerts, or the whole circle when the operator marked the
  scene unsafe (violence, traffic, fire), is not alerted (see :func:`circle_step`).

Roles (:func:`assign_roles`): of those who accept, the nearest to the patient goes to the patient for
CPR; each other is sent to the AED that minimises their walk to it plus the AED's distance to the
patient, among AEDs usable now (:meth:`AedSite.usable_at`: in service, pads and battery not expired,
open at this hour) that nobody is fetching yet. When no AED is left (or the trip through the nearest one
is longer than :attr:`CirclePolicy.max_fetch_m`), they go to the patient too (a second rescuer takes
turns at compressions). Roles, once given, do not change.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from uuid import UUID

from opening_hours import OpeningHours, validate

from shared.divisions import distance_m
from shared.events import AedStatus, CardiacRole
from shared.vocabulary import CARDIAC_ARREST

from .model import VolunteerCandidate
from .selection import SHANGHAI, _available, _qualification, rank_key

__all__ = [
    "CARDIAC_ARREST",
    "CIRCLE_SKILL",
    "AedSite",
    "AedStatus",
    "CirclePolicy",
    "CircleStep",
    "Role",
    "RoleKind",
    "Responder",
    "assign_roles",
    "circle_eligible",
    "circle_step",
    "open_at",
    "select_circle",
]

#: The skill the circle calls (shared.vocabulary.SKILLS: 心肺复苏/AED, certified, certificates expire).
CIRCLE_SKILL = "cpr_aed"


@dataclass(frozen=True)
class CirclePolicy:
    """The circle's settings (metres, seconds).

    Attributes:
        rings_m: the ring radii, one per step, increasing (default 700, 900, 1,100, 1,300 m).
        first: how many are called at step 0 (default 3).
        cap: how many are called at most in all (default 30).
        reply_window_s: seconds from the first step to the last (default 120).
        wanted: acceptances after which nobody more is called (default 3: one CPR, two AED runs).
        max_fetch_m: longest walk volunteer → AED → patient for an AED run (default 2,000 m).

    Raises:
        ValueError: (at construction) rings not increasing or not positive, ``first`` < 1, ``cap`` < ``first``,
            a reply window under 1 s, ``wanted`` < 1.

    """

    rings_m: tuple[float, ...] = (700.0, 900.0, 1100.0, 1300.0)
    first: int = 3
    cap: int = 30
    reply_window_s: int = 120
    wanted: int = 3
    max_fetch_m: float = 2000.0

    def __post_init__(self) -> None:
        if not self.rings_m or any(r <= 0 for r in self.rings_m) or list(self.rings_m) != sorted(set(self.rings_m)):
            raise ValueError(f"rings must be positive and increasing, got {self.rings_m}")
        if self.first < 1 or self.cap < self.first:
            raise ValueError(f"need 1 <= first <= cap, got first={self.first} cap={self.cap}")
        if self.reply_window_s < 1:
            raise ValueError("the reply window is at least 1 s")
        if self.wanted < 1:
            raise ValueError("wanted is at least 1")

    @property
    def steps(self) -> int:
        """Number of steps (one per ring)."""
        return len(self.rings_m)

    @property
    def step_seconds(self) -> float:
        """Seconds between two steps: the reply window over the steps after the first (the window when one ring)."""
        return self.reply_window_s / max(self.steps - 1, 1)

    def radius_m(self, step: int) -> float:
        """The ring of ``step`` (0-based; past the last, the last)."""
        return self.rings_m[min(max(step, 0), self.steps - 1)]

    def called_by(self, step: int) -> int:
        """How many may have been called in all by the end of ``step``: ``first`` rising linearly to ``cap``."""
        if self.steps == 1 or step >= self.steps - 1:
            return self.cap
        return self.first + math.ceil((self.cap - self.first) * max(step, 0) / (self.steps - 1))


@dataclass(frozen=True)
class CircleStep:
    """Call up to ``size`` more, nearest first, within ``radius_m``; ``step`` 0-based; ``last`` no step follows."""

    step: int
    radius_m: float
    size: int
    last: bool


def circle_step(
    policy: CirclePolicy, *, step: int, called: int, accepted: int, scene_unsafe: bool = False
) -> CircleStep | None:
    """What step ``step`` of the circle does, or None when it calls nobody and none follows.

    Args:
        policy: the circle's settings.
        step: 0 at opening, then one per :attr:`CirclePolicy.step_seconds`.
        called: volunteers called in the incident so far.
        accepted: of them, how many accepted (assigned or arrived).
        scene_unsafe: the operator marked the scene unsafe: nobody is alerted (None).

    Returns:
        The step with ``size`` = ``called_by(step) - called`` (never negative), 0 when enough accepted; None
        when the scene is unsafe, enough accepted, or ``step`` is past the last.

    """
    if scene_unsafe or accepted >= policy.wanted or step >= policy.steps or step < 0:
        return None
    size = max(policy.called_by(step) - called, 0)
    return CircleStep(step=step, radius_m=policy.radius_m(step), size=size, last=step == policy.steps - 1)


def circle_eligible(
    v: VolunteerCandidate, *, at: datetime, called: Collection[UUID], opted_out: Collection[UUID] = ()
) -> bool:
    """True when ``v`` may be alerted by the circle at ``at`` (UTC): the module rule, home unit not considered.

    Active, consented, available, not engaged in another open incident, not yet called in this incident,
    not opted out of cardiac alerts, holding :data:`CIRCLE_SKILL` with a certificate valid on ``at``'s
    Asia/Shanghai day.
    """
    return (v.active and v.consent and not v.engaged and v.volunteer_id not in called
            and v.volunteer_id not in opted_out and _available(v, at) and _qualification(CIRCLE_SKILL, at)(v))


def select_circle(
    volunteers: Iterable[VolunteerCandidate],
    *,
    lat: float,
    lon: float,
    at: datetime,
    radius_m: float,
    called: Collection[UUID],
    limit: int,
    opted_out: Collection[UUID] = (),
) -> list[tuple[VolunteerCandidate, float]]:
    """The nearest ``limit`` circle-eligible volunteers within ``radius_m`` of the patient, with their distance.

    Args:
        volunteers: the roster projection (or a superset of the eligible near the point).
        lat: the patient's latitude, WGS84 degrees.
        lon: the patient's longitude, WGS84 degrees.
        at: now (UTC); certificates are checked on its Asia/Shanghai date.
        radius_m: the current ring; nobody farther (and nobody without a position) is returned.
        called: already called in this incident.
        limit: how many at most.
        opted_out: volunteers who opted out of cardiac alerts.

    Returns:
        ``[(volunteer, metres)]``, nearest first (ties: fewer recent call-outs, then id), at most ``limit``.

    """
    qualified = _qualification(CIRCLE_SKILL, at)
    scored: list[tuple[VolunteerCandidate, float]] = []
    for v in volunteers:
        if v.lat is None or v.lon is None:
            continue
        if not (v.active and v.consent and not v.engaged and v.volunteer_id not in called
                and v.volunteer_id not in opted_out and _available(v, at) and qualified(v)):
            continue
        d = distance_m(lat, lon, v.lat, v.lon)
        if d <= radius_m:
            scored.append((v, d))
    scored.sort(key=lambda p: rank_key(p[1], p[0].recent_callouts, p[0].volunteer_id))
    return scored[: max(limit, 0)]


# --------------------------------------------------------------------------- AEDs and roles


@lru_cache(maxsize=1024)
def _hours(text: str) -> OpeningHours | None:
    return OpeningHours(text) if validate(text) else None


def open_at(hours: str, at: datetime) -> bool:
    """True when access ``hours`` (OpenStreetMap ``opening_hours`` syntax, Asia/Shanghai) are open at ``at`` (UTC).

    ``24/7`` is always open; an empty or unparseable text counts as closed (roster validates it on entry).
    """
    oh = _hours(hours.strip()) if hours.strip() else None
    return oh is not None and bool(oh.is_open(at.astimezone(SHANGHAI).replace(tzinfo=None)))


@dataclass(frozen=True)
class AedSite:
    """A defibrillator as dispatch's projection knows it.

    Attributes:
        lat, lon: WGS84 degrees.
        place: address and where it hangs (building, floor), for the message.
        hours: access hours, ``opening_hours`` syntax, Asia/Shanghai.
        pads_expire_on, battery_expire_on: last day valid (Asia/Shanghai), None = unknown (not judged).

    """

    aed_id: UUID
    lat: float
    lon: float
    place: str = ""
    hours: str = "24/7"
    status: AedStatus = AedStatus.IN_SERVICE
    pads_expire_on: date | None = None
    battery_expire_on: date | None = None

    def usable_at(self, at: datetime) -> bool:
        """In service, pads and battery valid on ``at``'s Shanghai day, and open at ``at`` (UTC)."""
        if self.status is not AedStatus.IN_SERVICE:
            return False
        day = at.astimezone(SHANGHAI).date()
        for until in (self.pads_expire_on, self.battery_expire_on):
            if until is not None and day > until:
                return False
        return open_at(self.hours, at)


RoleKind = CardiacRole


@dataclass(frozen=True)
class Role:
    """A role: ``kind``, and for an AED run the device and the run's length (volunteer → AED → patient, metres)."""

    kind: RoleKind
    aed_id: UUID | None = None
    path_m: float | None = None


@dataclass(frozen=True)
class Responder:
    """An accepted volunteer and where they were called from (WGS84; None unknown: counts as farthest)."""

    volunteer_id: UUID
    lat: float | None
    lon: float | None
    accepted_at: datetime | None = None


def _dist(lat: float, lon: float, plat: float | None, plon: float | None) -> float:
    return math.inf if plat is None or plon is None else distance_m(lat, lon, plat, plon)


def assign_roles(
    *,
    patient_lat: float,
    patient_lon: float,
    new: Sequence[Responder],
    existing: Mapping[UUID, Role],
    aeds: Iterable[AedSite],
    taken: Collection[UUID] = (),
    at: datetime,
    policy: CirclePolicy | None = None,
) -> dict[UUID, Role]:
    """Roles for the newly accepted ``new``; see the module rule.

    Args:
        patient_lat: the patient's latitude, WGS84 degrees.
        patient_lon: the patient's longitude, WGS84 degrees.
        new: volunteers who just accepted and have no role yet (any order).
        existing: roles given before in this incident (never changed); their AEDs are taken.
        aeds: the AEDs of the projection (unusable ones are skipped).
        taken: AEDs being fetched anywhere else (another incident's run).
        at: now (UTC): status, expiry and access hours are judged at it.
        policy: for :attr:`CirclePolicy.max_fetch_m` (default policy when None).

    Returns:
        ``{volunteer_id: Role}`` for each of ``new``: when nobody has CPR yet the nearest of ``new`` to the
        patient gets it; the others, nearest to the patient first, each the free usable AED minimising
        (volunteer → AED) + (AED → patient) within ``max_fetch_m``, else CPR. No AED appears twice, nor
        one in ``existing`` or ``taken``.

    """
    policy = policy or CirclePolicy()
    busy = set(taken) | {r.aed_id for r in existing.values() if r.aed_id is not None}
    free = [a for a in aeds if a.aed_id not in busy and a.usable_at(at)]
    to_patient = {a.aed_id: distance_m(a.lat, a.lon, patient_lat, patient_lon) for a in free}
    order = sorted(new, key=lambda r: (_dist(patient_lat, patient_lon, r.lat, r.lon), str(r.volunteer_id)))
    out: dict[UUID, Role] = {}
    cpr_given = any(r.kind is RoleKind.CPR for r in existing.values())
    for r in order:
        if not cpr_given:
            out[r.volunteer_id] = Role(RoleKind.CPR)
            cpr_given = True
            continue
        best: tuple[float, str, AedSite] | None = None
        if r.lat is not None and r.lon is not None:
            for a in free:
                path = distance_m(r.lat, r.lon, a.lat, a.lon) + to_patient[a.aed_id]
                if path <= policy.max_fetch_m and (best is None or (path, str(a.aed_id)) < best[:2]):
                    best = (path, str(a.aed_id), a)
        if best is None:
            out[r.volunteer_id] = Role(RoleKind.CPR)
            continue
        aed = best[2]
        free.remove(aed)
        out[r.volunteer_id] = Role(RoleKind.FETCH_AED, aed.aed_id, round(best[0], 1))
    return out
