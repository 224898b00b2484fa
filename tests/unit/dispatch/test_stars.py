"""Star rating (星级评定): national levels by hours, configured extra conditions, explanations (no I/O)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.dispatch.domain.stars import DEFAULT_LEVELS, Record, StarLevel, rate
from services.dispatch.handlers.service_record import star_levels
from shared.inputs import neutralise_cell
from shared.settings import DispatchSettings


def test_the_national_levels_go_by_cumulative_hours() -> None:
    assert rate(Record(99.9, 10, 0)).stars == 0
    assert rate(Record(100, 0, 0)).stars == 1
    r = rate(Record(312.5, 12, 3))
    assert r.stars == 2
    assert r.explanation == "累计服务 312.5 小时，出勤 12 次，演练 3 次：二星"
    assert r.next_needs == "距三星还差 287.5 小时"
    assert rate(Record(2000, 0, 0)).next_needs is None  # five stars: the top


def test_configured_conditions_stop_the_climb_at_the_first_unmet_level() -> None:
    levels = [StarLevel(stars=1, min_hours=100), StarLevel(stars=2, min_hours=300, min_drills=2),
              StarLevel(stars=3, min_hours=600, min_deployments=20)]
    r = rate(Record(700, 30, 1), levels)
    assert r.stars == 1 and r.next_needs == "距二星还差 1 次演练"
    assert rate(Record(700, 30, 2), levels).stars == 3


def test_levels_come_from_the_settings_and_a_bad_one_is_refused() -> None:
    base = {"kafka_bootstrap_servers": "127.0.0.1:9092", "database_url": "postgresql://x@127.0.0.1/x"}
    assert star_levels(DispatchSettings(**base)) == DEFAULT_LEVELS
    custom = DispatchSettings(**base, star_levels='[{"stars": 1, "min_hours": 50, "min_drills": 1}]')
    assert star_levels(custom) == (StarLevel(stars=1, min_hours=50, min_drills=1),)
    with pytest.raises(ValidationError):
        star_levels(DispatchSettings(**base, star_levels='[{"stars": 0, "min_hours": -1}]'))


def test_formula_cells_are_neutralised_on_export() -> None:
    """OWASP CSV injection: =HYPERLINK(...) as a name must not run when the export is opened."""
    assert neutralise_cell('=HYPERLINK("http://x","点我")') == '\'=HYPERLINK("http://x","点我")'
    assert [neutralise_cell(v) for v in ("+1", "-2", "@SUM(A1)", "王小明", 12.5, None)] == [
        "'+1", "'-2", "'@SUM(A1)", "王小明", 12.5, None]  # the export uses the one rule of shared.inputs


@given(st.floats(0, 5000), st.integers(0, 100), st.integers(0, 100), st.floats(0, 500))
def test_more_service_never_lowers_the_stars(hours: float, deployments: int, drills: int, more: float) -> None:
    assert rate(Record(hours + more, deployments, drills)).stars >= rate(Record(hours, deployments, drills)).stars
