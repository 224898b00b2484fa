"""Controlled vocabularies shared by the services: skills, team types, levels, channels.

The skill vocabulary is data that can grow: add a :class:`Skill` to :data:`SKILLS` (and nothing
else) and roster's import, roster's API and dispatch's requirement validation all accept it.
Which skills need a valid certificate follows the Red Cross's own certification: 救护员 (first
aid) and CPR/AED are certified by the Red Cross Society of China's training (certificates expire,
usually after 3 years), water and rope rescue by their instructors' courses, 医护 by a
practising licence.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "CARDIAC_ARREST",
    "SKILLS",
    "TEAM_TYPES",
    "Channel",
    "Level",
    "Skill",
    "TeamType",
    "skill_by_code",
]


@dataclass(frozen=True)
class Skill:
    """One skill in the vocabulary.

    Attributes:
        code: stable ASCII code used in events and APIs (e.g. ``first_aid``).
        name_zh: the Chinese name used on registers and in messages (e.g. 救护员).
        aliases: other spellings people type in spreadsheets (Chinese and English).
        needs_certificate: a call-out for this skill requires a certificate valid at the incident's time.

    """

    code: str
    name_zh: str
    aliases: tuple[str, ...]
    needs_certificate: bool


SKILLS: tuple[Skill, ...] = (
    Skill("first_aid", "救护员", ("救护", "急救", "急救员", "first aid", "firstaid", "first-aid"), True),
    Skill("cpr_aed", "心肺复苏/AED", ("CPR", "AED", "CPR/AED", "心肺复苏", "心肺复苏AED", "cpr-aed"), True),
    Skill("water_rescue", "水上救援", ("水域救援", "水上救生", "救生员", "water rescue", "water"), True),
    Skill("rope_rescue", "绳索救援", ("绳索", "rope rescue", "rope"), True),
    Skill("search_rescue", "搜索救援", ("搜救", "搜索与救援", "search and rescue", "SAR"), False),
    Skill("medical", "医护", ("医生", "护士", "医疗", "medical", "doctor", "nurse"), True),
    Skill("psych_support", "心理支持", ("心理援助", "心理救援", "心理", "psychological support", "psych"), False),
    Skill("logistics", "后勤保障", ("后勤", "logistics"), False),
    Skill("driver", "驾驶员", ("司机", "驾驶", "driver"), False),
)

_BY_CODE = {s.code: s for s in SKILLS}


def skill_by_code(code: str) -> Skill:
    """The skill with ``code``.

    Raises:
        KeyError: ``code`` is not in the vocabulary.

    """
    return _BY_CODE[code]


class TeamType(StrEnum):
    """Types of rescue teams (救援队)."""

    WATER = "water"
    MOUNTAIN = "mountain"
    USAR = "usar"  # urban search and rescue
    FIRST_AID = "first_aid"
    LOGISTICS = "logistics"


TEAM_TYPES: dict[TeamType, str] = {
    TeamType.WATER: "水上救援队",
    TeamType.MOUNTAIN: "山地救援队",
    TeamType.USAR: "城市搜救队",
    TeamType.FIRST_AID: "应急救护队",
    TeamType.LOGISTICS: "后勤保障队",
}


class Level(StrEnum):
    """The four levels of the network, lowest first (the order of escalation)."""

    VILLAGE = "village"  # 村/社区, 12-digit code
    TOWN = "town"  # 乡镇/街道, 9-digit code
    COUNTY = "county"  # 区县, 6-digit code
    CITY = "city"  # 市, 6-digit code ending in 00


class Channel(StrEnum):
    """Channels a message can go out on."""

    SMS = "sms"
    WECHAT = "wechat"


#: The incident kind of a sudden cardiac arrest: dispatch calls its rescue circle (services.dispatch.domain.cardiac)
#: instead of the four-level waves, and notify sends its messages ahead of other traffic.
CARDIAC_ARREST = "cardiac_arrest"
