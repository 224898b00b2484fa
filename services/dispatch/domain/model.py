"""Plain data the dispatch domain decides over: candidates, requirements, call-outs.

No I/O here. Times are timezone-aware UTC; distances are metres; coordinates are WGS84 degrees.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from uuid import UUID

from shared.events import Availability
from shared.vocabulary import Level, TeamType

__all__ = [
    "CallOutState",
    "OPEN_STATES",
    "COUNTED_STATES",
    "Certificate",
    "Requirement",
    "TeamCandidate",
    "VolunteerCandidate",
]


class CallOutState(StrEnum):
    """Where one call-out stands.

    ``requested`` (waiting for an answer) → ``assigned`` (accepted while needed) → ``arrived``;
    ``requested`` → ``declined`` | ``timed_out`` (no answer by the wave deadline; a later accept
    still counts while the need is open) | ``cancelled`` (stand-down: filled, removed, closed).
    """

    REQUESTED = "requested"
    TIMED_OUT = "timed_out"
    ASSIGNED = "assigned"
    ARRIVED = "arrived"
    DECLINED = "declined"
    CANCELLED = "cancelled"


#: States in which the volunteer may still answer and be told to stand down.
OPEN_STATES = frozenset({CallOutState.REQUESTED, CallOutState.TIMED_OUT, CallOutState.ASSIGNED})
#: States that count toward a requirement's filled number.
COUNTED_STATES = frozenset({CallOutState.ASSIGNED, CallOutState.ARRIVED})


@dataclass(frozen=True)
class Certificate:
    """A certificate: the skill it certifies and its validity (dates in Asia/Shanghai, both ends included)."""

    skill: str
    issued_on: date | None = None
    expires_on: date | None = None

    def valid_on(self, day: date) -> bool:
        """True when ``day`` (Asia/Shanghai) lies within the certificate's validity."""
        if self.issued_on is not None and day < self.issued_on:
            return False
        return self.expires_on is None or day <= self.expires_on


@dataclass(frozen=True)
class VolunteerCandidate:
    """A volunteer as the roster projection knows them (no contact data).

    Attributes:
        unit_code: home village/community code (12 digits).
        lat, lon: WGS84 degrees, or None when unknown (ranked last by distance).
        recent_callouts: call-outs in the last 30 days (fairness).
        engaged: assigned or arrived in another open incident.

    """

    volunteer_id: UUID
    unit_code: str
    lat: float | None
    lon: float | None
    skills: frozenset[str]
    certificates: tuple[Certificate, ...] = ()
    availability: Availability = Availability.AVAILABLE
    unavailable_until: datetime | None = None
    consent: bool = True
    active: bool = True
    recent_callouts: int = 0
    engaged: bool = False
    display_name: str = ""


@dataclass(frozen=True)
class TeamCandidate:
    """A rescue team, called through its leader; it answers as one and counts as one.

    Attributes:
        unit_code: the team's home unit at any level (6, 9 or 12 digits).
        leader: the leader as a volunteer candidate, or None when the team has none on the roster.
        lat, lon: the team's base (WGS84); the leader's position is used when None.
        engaged: the team is assigned in another open incident.

    """

    team_id: UUID
    team_type: TeamType
    unit_code: str
    leader: VolunteerCandidate | None
    lat: float | None = None
    lon: float | None = None
    active: bool = True
    recent_callouts: int = 0
    engaged: bool = False
    name: str = ""


@dataclass(frozen=True)
class Requirement:
    """What an incident needs: ``count`` volunteers with ``skill``, or ``count`` teams of ``team_type``."""

    requirement_id: UUID
    count: int
    skill: str | None = None
    team_type: TeamType | None = None
    level: Level = Level.VILLAGE
    filled: int = 0
    called: frozenset[UUID] = field(default_factory=frozenset)

    @property
    def outstanding(self) -> int:
        """People (or teams) still needed; never negative."""
        return max(self.count - self.filled, 0)
