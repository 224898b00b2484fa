"""Drill scenarios: YAML files validated into pydantic models with clear errors.

A scenario names the incidents to open (in drill mode), the responder model that plays the
volunteers' phones, the compressed deadlines, and the expectations the drill must meet. Shape
(see ``scenarios/*.yaml``)::

    name: 柯桥区鉴湖溺水演练
    seed: 7                       # the responder model's random seed (deterministic drills)
    roster: {volunteers: 20000, teams: 150, seed: 1}
    timeout_seconds: 240          # give up following the incidents after this many seconds
    incidents:
      - kind: drowning
        title: 柯岩鉴湖溺水
        lat: 30.0495              # WGS84 degrees
        lon: 120.4860
        unit_code: "330603002020" # the village/community the point lies in
        mode: drill               # drill | event (event-mode cover still runs as a drill)
        requirements: [{skill: first_aid, count: 4}, {team_type: water, count: 1}]
        policy: {wave_deadline_seconds: 8, over_call_factor: 2, max_level: county}
    responders:
      accept: {village: 0.5, town: 0.4, county: 0.3, city: 0.2}     # chance to accept by level
      decline: {village: 0.2, town: 0.2, county: 0.2, city: 0.2}    # chance to decline; the rest ignore
      skill_factor: {water_rescue: 1.2}                             # multiplies the accept chance
      latency_seconds: {median: 2.0, sigma: 0.6, max: 20}           # log-normal reply latency
      free_text_share: 0.3        # replies typed as words ("好的，马上到") rather than 1/2
      no_show_share: 0.05         # accepted, then never arrive
      arrival_after_eta_seconds: {median: 3.0, sigma: 0.5}
    expectations:
      filled_within_seconds: 120
      min_level_reached: county   # escalation must have reached at least this level
      all_filled: true

Errors: :func:`load_scenario` raises :class:`ScenarioError` naming the file and each bad field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.divisions import is_valid_code, level_of
from shared.vocabulary import CARDIAC_ARREST, SKILLS, Level, TeamType

__all__ = ["AedPlan", "CirclePlan", "Expectations", "IncidentPlan", "ResponderModel", "Scenario", "ScenarioError", "load_scenario"]

_SKILL_CODES = {s.code for s in SKILLS}


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the file and every bad field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RequirementPlan(_Strict):
    skill: str | None = None
    team_type: TeamType | None = None
    count: int = Field(ge=1, le=500)

    @field_validator("skill")
    @classmethod
    def _known_skill(cls, v: str | None) -> str | None:
        if v is not None and v not in _SKILL_CODES:
            raise ValueError(f"unknown skill {v!r}; known: {sorted(_SKILL_CODES)}")
        return v

    @model_validator(mode="after")
    def _one_of(self) -> RequirementPlan:
        if (self.skill is None) == (self.team_type is None):
            raise ValueError("give exactly one of skill or team_type")
        return self


class CirclePlan(_Strict):
    """A cardiac arrest's rescue circle (dispatch's ``policy.circle``): rings in metres, reply window in seconds."""

    rings_m: list[float] = Field(default=[700.0, 900.0, 1100.0, 1300.0], min_length=1)
    first: int = Field(default=3, ge=1)
    cap: int = Field(default=30, ge=1)
    reply_window_s: int = Field(default=120, ge=1)
    wanted: int = Field(default=3, ge=1)


class Policy(_Strict):
    wave_deadline_seconds: int = Field(ge=1, le=7200, description="Compressed wave deadline, seconds.")
    over_call_factor: float = Field(default=2.0, ge=1.0, le=10.0)
    max_level: Level = Level.CITY
    circle: CirclePlan | None = Field(default=None, description="Kind cardiac_arrest only: the circle's rings.")


class AedPlan(_Strict):
    """An AED the drill registers in the roster before opening (``POST /aeds``; an existing serial is kept)."""

    serial: str
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    datum: Literal["WGS-84", "GCJ-02"] = "WGS-84"
    address: str
    location: str = ""
    unit_code: str
    owner: str = ""
    access_hours: str = "24/7"


class IncidentPlan(_Strict):
    kind: str
    title: str
    lat: float = Field(ge=-90, le=90, description="WGS84 latitude, degrees.")
    lon: float = Field(ge=-180, le=180, description="WGS84 longitude, degrees.")
    unit_code: str
    mode: Literal["drill", "event"] = "drill"
    start_level: Level = Level.VILLAGE
    requirements: list[RequirementPlan] = Field(default_factory=list, description="At least one, except for "
                                                "kind cardiac_arrest (the circle's own need by default).")
    policy: Policy
    open_after_seconds: float = Field(default=0.0, ge=0, description="Delay after the drill starts.")

    @field_validator("unit_code")
    @classmethod
    def _village(cls, v: str) -> str:
        if not is_valid_code(v) or level_of(v) is not Level.VILLAGE:
            raise ValueError(f"unit_code {v!r} is not a 12-digit village/community code")
        return v

    @model_validator(mode="after")
    def _needs(self) -> IncidentPlan:
        if not self.requirements and self.kind != CARDIAC_ARREST:
            raise ValueError("give at least one requirement")
        if self.policy.circle is not None and self.kind != CARDIAC_ARREST:
            raise ValueError(f"policy.circle is for kind {CARDIAC_ARREST} only")
        return self


class Distribution(_Strict):
    median: float = Field(gt=0, description="Seconds.")
    sigma: float = Field(default=0.5, ge=0, le=3)
    max: float = Field(default=60.0, gt=0, description="Seconds; longer draws are cut here.")


class ResponderModel(_Strict):
    accept: dict[Level, float]
    decline: dict[Level, float]
    skill_factor: dict[str, float] = Field(default_factory=dict)
    latency_seconds: Distribution
    free_text_share: float = Field(default=0.2, ge=0, le=1)
    no_show_share: float = Field(default=0.05, ge=0, le=1)
    arrival_after_eta_seconds: Distribution = Distribution(median=3.0)
    eta_minutes: tuple[int, int] = (5, 30)
    walking_speed_m_per_s: float | None = Field(
        default=None, gt=0, le=10, description="Arrive after walking the way (the call-out's distance; an AED run's "
        "path through the AED) at this pace, instead of arrival_after_eta_seconds (2.3 m/s: a brisk walk).")
    walk_time_scale: float = Field(default=1.0, gt=0, le=1, description="Walking times are multiplied by this "
                                   "(compressed drills, as wave deadlines are).")

    @model_validator(mode="after")
    def _probabilities(self) -> ResponderModel:
        for level in Level:
            a, d = self.accept.get(level, 0.0), self.decline.get(level, 0.0)
            if not (0 <= a <= 1 and 0 <= d <= 1 and a + d <= 1):
                raise ValueError(f"at level {level}: accept {a} + decline {d} must be probabilities summing to ≤ 1")
        unknown = set(self.skill_factor) - _SKILL_CODES
        if unknown:
            raise ValueError(f"skill_factor names unknown skills {sorted(unknown)}")
        return self


class Expectations(_Strict):
    min_aed_runs: int = Field(default=0, ge=0, description="Cardiac arrest: at least this many AED runs assigned.")
    aed_on_scene_within_seconds: float | None = Field(default=None, gt=0, description="Cardiac arrest: an AED "
                                                       "fetcher checked in at the patient within this time.")
    filled_within_seconds: float | None = Field(default=None, gt=0)
    min_level_reached: Level | None = None
    max_level_reached: Level | None = None
    all_filled: bool = True
    min_unfilled_requirements: int = Field(default=0, ge=0, description="At least this many must end unfilled.")


class RosterPlan(_Strict):
    volunteers: int = Field(default=20000, ge=100)
    teams: int = Field(default=150, ge=0)
    seed: int = 1


class Scenario(_Strict):
    name: str
    description: str = ""
    seed: int = 1
    roster: RosterPlan = RosterPlan()
    timeout_seconds: float = Field(default=300, gt=0)
    incidents: list[IncidentPlan] = Field(min_length=1)
    aeds: list[AedPlan] = Field(default_factory=list)
    responders: ResponderModel
    expectations: Expectations


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file.

    Raises:
        ScenarioError: unreadable YAML or invalid fields; the message lists each error with its path.

    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{path}: cannot read scenario: {exc}") from exc
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        lines = [f"{path}: invalid scenario:"]
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            lines.append(f"  {loc}: {err['msg']}")
        raise ScenarioError("\n".join(lines)) from exc
