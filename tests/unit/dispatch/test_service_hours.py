"""Service hours: the China Standard Time year, spells, roll-ups one level down (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.dispatch.domain.service_hours import Spell, child_level, roll_up, spell_hours, year_bounds
from shared.vocabulary import Level


def test_the_year_is_beijing_time() -> None:
    start, end = year_bounds(2026)
    assert start == datetime(2025, 12, 31, 16, tzinfo=UTC) and end == datetime(2026, 12, 31, 16, tzinfo=UTC)
    with pytest.raises(ValueError, match="outside"):
        year_bounds(448)


def test_a_spell_runs_from_arrival_to_release_or_now() -> None:
    t = datetime(2026, 5, 1, 8, tzinfo=UTC)
    assert spell_hours(t, t + timedelta(hours=2, minutes=30), t) == 2.5
    assert spell_hours(t, None, t + timedelta(hours=1)) == 1.0  # still on scene
    assert spell_hours(t, t - timedelta(minutes=5), t) == 0.0  # a clock skew is not negative service


def test_a_roll_up_groups_by_the_level_below_and_keeps_drills_apart() -> None:
    t = datetime(2026, 5, 1, 8, tzinfo=UTC)
    a, b, c = uuid4(), uuid4(), uuid4()
    spells = [
        Spell(a, "330602001001", t, t + timedelta(hours=2), drill=False),
        Spell(a, "330602001001", t + timedelta(days=1), t + timedelta(days=1, hours=1), drill=False),
        Spell(b, "330602002003", t, t + timedelta(hours=3), drill=True),
        Spell(c, "330603001001", t, t + timedelta(hours=4), drill=False),  # another county
    ]
    county = roll_up("330602", spells, t)
    assert [(g.unit_code, len(g.volunteers), g.deployments, g.hours, g.drill_hours) for g in county] == [
        ("330602001", 1, 2, 3.0, 0.0), ("330602002", 0, 0, 0.0, 3.0)]
    city = roll_up("330600", spells, t)
    assert [(g.unit_code, g.hours) for g in city] == [("330602", 3.0), ("330603", 4.0)]
    assert child_level("330602001001") is Level.VILLAGE and child_level("330600") is Level.COUNTY


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 600), st.booleans()), max_size=30))
def test_a_roll_up_loses_no_hour(rows: list[tuple[int, int, bool]]) -> None:
    """The city's figures are the sum of its counties', whatever the spells."""
    t = datetime(2026, 5, 1, 8, tzinfo=UTC)
    villages = ["330602001001", "330602002001", "330603001001", "330681001001"]
    spells = [Spell(uuid4(), villages[v], t, t + timedelta(minutes=m), drill=d) for v, m, d in rows]
    groups = roll_up("330600", spells, t)
    assert sum(g.hours + g.drill_hours for g in groups) == pytest.approx(sum(m for _, m, _ in rows) / 60)
    assert sum(g.deployments for g in groups) == sum(not d for _, _, d in rows)
