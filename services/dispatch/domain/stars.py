"""Star rating (星级评定) of volunteers from their record (issue #19). Pure: no I/O.

The default levels are the national ones for registered volunteers: one to five stars at 100, 300,
600, 1000 and 1500 hours of cumulative volunteer service (中国注册志愿者管理办法, 2013: 累计志愿服务时间达到
100、300、600、1000、1500 小时的，可分别认定为一星级至五星级志愿者). A Red Cross may add conditions per level —
deployments (call-outs served in emergencies and events) and drills taken part in — from configuration
(``DISPATCH_STAR_LEVELS``, JSON, see :class:`shared.settings.DispatchSettings`). Hours are those of
:mod:`services.dispatch.domain.service_hours` (arrival to release), cumulative up to the end of the
year under review; drills count as training, not service.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, Field

__all__ = ["DEFAULT_LEVELS", "Rating", "Record", "StarLevel", "rate"]

_STARS = "一二三四五六七八九十"


class StarLevel(BaseModel):
    """What a level needs: at least ``min_hours`` of service, ``min_deployments`` and ``min_drills``."""

    stars: int = Field(ge=1, le=10)
    min_hours: float = Field(ge=0)
    min_deployments: int = Field(default=0, ge=0)
    min_drills: int = Field(default=0, ge=0)


DEFAULT_LEVELS: tuple[StarLevel, ...] = tuple(
    StarLevel(stars=n, min_hours=h) for n, h in ((1, 100), (2, 300), (3, 600), (4, 1000), (5, 1500)))


@dataclass(frozen=True)
class Record:
    """A volunteer's cumulative record: service hours, deployments, drills."""

    hours: float
    deployments: int
    drills: int


@dataclass(frozen=True)
class Rating:
    """The stars earned (0 for none), why, and what the next level still needs (None at the top)."""

    stars: int
    explanation: str
    next_needs: str | None


def _label(stars: int) -> str:
    return f"{_STARS[stars - 1]}星" if 1 <= stars <= len(_STARS) else f"{stars}星"


def _meets(r: Record, level: StarLevel) -> bool:
    return r.hours >= level.min_hours and r.deployments >= level.min_deployments and r.drills >= level.min_drills


def _missing(r: Record, level: StarLevel) -> str:
    parts = []
    if r.hours < level.min_hours:
        parts.append(f"{level.min_hours - r.hours:.1f} 小时")
    if r.deployments < level.min_deployments:
        parts.append(f"{level.min_deployments - r.deployments} 次出勤")
    if r.drills < level.min_drills:
        parts.append(f"{level.min_drills - r.drills} 次演练")
    return f"距{_label(level.stars)}还差 " + "、".join(parts)


def rate(record: Record, levels: Sequence[StarLevel] = DEFAULT_LEVELS) -> Rating:
    """The highest level whose every condition the record meets (levels are climbed in order of stars).

    A level is reached only when all lower ones are: a missing condition at two stars stops the climb
    there even if the hours would give four.
    """
    ordered = sorted(levels, key=lambda lv: lv.stars)
    stars = 0
    for level in ordered:
        if not _meets(record, level):
            break
        stars = level.stars
    facts = f"累计服务 {record.hours:.1f} 小时，出勤 {record.deployments} 次，演练 {record.drills} 次"
    explanation = f"{facts}：{_label(stars) if stars else '未达一星'}"
    nxt = next((lv for lv in ordered if lv.stars > stars), None)
    return Rating(stars, explanation, _missing(record, nxt) if nxt else None)
