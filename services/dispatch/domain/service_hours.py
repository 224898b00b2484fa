"""Service hours (issue #19): from a volunteer's arrival to their release, per call-out, summed per year.

Pure: no I/O. A spell of service starts at ``arrived_at`` (the check-in on arrival) and ends at
``released_at`` (stood down, removed, moved, or the incident closed; set by the database, dispatch
migration 0008); a spell still open counts up to ``now``. Hours of drills are kept apart from service
(emergencies and events): the annual review (星级评定) counts service, and training separately.

The year is the calendar year in China Standard Time (Asia/Shanghai, UTC+8, no daylight saving): a
volunteer who arrives at 07:30 on 1 January Beijing time serves in the new year although it is still
the old year in UTC. A spell is counted in the year it started.

Roll-ups group the volunteers by the unit one level below the asked one (the city → its counties →
their towns → their villages); a village's roll-up is the village itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID

from shared.divisions import ancestor, level_of
from shared.vocabulary import Level

from .selection import within_unit

__all__ = ["CST", "Spell", "UnitHours", "child_level", "roll_up", "spell_hours", "year_bounds"]

#: China Standard Time (UTC+8), the time zone of the year boundaries.
CST = timezone(timedelta(hours=8), "CST")
_EARLIEST_YEAR, _LATEST_YEAR = 2000, 2100


@dataclass(frozen=True)
class Spell:
    """One call-out's service: who, where from, when (UTC), in what kind of incident."""

    volunteer_id: UUID
    unit_code: str  # the volunteer's village (12 digits)
    arrived_at: datetime
    released_at: datetime | None  # None while still on scene
    drill: bool


@dataclass
class UnitHours:
    """A unit's figures for the year: distinct volunteers who served, deployments, hours (service, drill)."""

    unit_code: str
    volunteers: set[UUID] = field(default_factory=set)
    deployments: int = 0
    hours: float = 0.0
    drill_hours: float = 0.0


def year_bounds(year: int) -> tuple[datetime, datetime]:
    """[start, end) of ``year`` in China Standard Time, as UTC datetimes.

    Raises:
        ValueError: a year outside 2000..2100 (nothing was recorded before; a typo, not a query).

    """
    if not _EARLIEST_YEAR <= year <= _LATEST_YEAR:
        raise ValueError(f"year {year} is outside {_EARLIEST_YEAR}..{_LATEST_YEAR}")
    start = datetime(year, 1, 1, tzinfo=CST).astimezone(UTC)
    return start, datetime(year + 1, 1, 1, tzinfo=CST).astimezone(UTC)


def spell_hours(arrived_at: datetime, released_at: datetime | None, now: datetime) -> float:
    """Hours from arrival to release (or to ``now`` while on scene); 0 for a release before arrival."""
    end = released_at or now
    return max(0.0, (end - arrived_at).total_seconds() / 3600)


def child_level(unit_code: str) -> Level:
    """The level a roll-up of ``unit_code`` groups by: one below it (a village groups by itself).

    Raises:
        ValueError: not a division code.

    """
    below = {Level.CITY: Level.COUNTY, Level.COUNTY: Level.TOWN, Level.TOWN: Level.VILLAGE,
             Level.VILLAGE: Level.VILLAGE}
    return below[level_of(unit_code)]


def roll_up(unit_code: str, spells: Iterable[Spell], now: datetime) -> list[UnitHours]:
    """The figures of each unit one level below ``unit_code`` (its spells only), ordered by unit code.

    Spells of volunteers outside ``unit_code`` are left out.
    """
    level = child_level(unit_code)
    out: dict[str, UnitHours] = {}
    for s in spells:
        if not within_unit(s.unit_code, unit_code):
            continue
        u = out.setdefault(ancestor(s.unit_code, level), UnitHours(ancestor(s.unit_code, level)))
        h = spell_hours(s.arrived_at, s.released_at, now)
        if s.drill:
            u.drill_hours += h
        else:
            u.hours += h
            u.deployments += 1
            u.volunteers.add(s.volunteer_id)
    return [out[k] for k in sorted(out)]
