"""A deterministic synthetic roster over the real divisions (pure; for demos, drills and benchmarks).

The same ``seed``, counts, units and ``today`` give the same volunteers and teams (ids included).

The mix:

* density: a village/community under a street (街道) weighs 3, under a town (镇) 1, under a
  township (乡) 0.6; a community (社区) weighs twice a village (村); so urban streets are denser
  than mountain villages;
* skills: shares in :data:`SKILL_SHARES` (越城区, the urban core, has more first-aiders: 60%);
* certificates for skills that need one, about 15% expired on ``today``;
* availability: 85% available, 8% unavailable until 1–14 days after ``today``, 7% off duty;
* names: made up from common surnames and given-name characters;
* mobiles: ``+86 1999 0xx xxxx`` style, :data:`TEST_MOBILE_PREFIX` followed by six digits. Mainland
  China has no officially reserved fictional number range, so this block is the project's own
  convention for test data: messages to it must only ever go to the local provider simulators;
* locations: scattered (normal, σ 1.5 km) around the town's centre, else (σ 4 km) the county's,
  drawn in GCJ-02 like the source centres and converted to WGS84.

Teams: ``teams`` teams spread over every district/county, each with a leader who is a member;
the first five are fixed so drills find them: water-rescue and first-aid teams in 柯桥区
(330603) and 诸暨市 (330681), and a first-aid team in 越城区 (330602).
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta

from services.roster.domain.model import Certificate, Team, Volunteer
from services.roster.domain.units import Unit, UnitDirectory
from shared.divisions import gcj02_to_wgs84
from shared.events import Availability
from shared.vocabulary import TEAM_TYPES, Channel, Level, TeamType, skill_by_code

__all__ = ["SKILL_SHARES", "TEST_MOBILE_PREFIX", "SeedResult", "synthesize"]

TEST_MOBILE_PREFIX = "+8619990"

SKILL_SHARES: dict[str, float] = {
    "first_aid": 0.40,
    "cpr_aed": 0.30,
    "water_rescue": 0.06,
    "rope_rescue": 0.04,
    "search_rescue": 0.08,
    "medical": 0.07,
    "psych_support": 0.05,
    "logistics": 0.15,
    "driver": 0.12,
}
_TEAM_SKILL = {
    TeamType.WATER: "water_rescue",
    TeamType.MOUNTAIN: "rope_rescue",
    TeamType.USAR: "search_rescue",
    TeamType.FIRST_AID: "first_aid",
    TeamType.LOGISTICS: "logistics",
}
_FIXED_TEAMS = (
    ("330603", TeamType.WATER), ("330681", TeamType.WATER),
    ("330603", TeamType.FIRST_AID), ("330681", TeamType.FIRST_AID),
    ("330602", TeamType.FIRST_AID),
)
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁任沈姚卢傅钟"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建文辉玲萍红鹏飞宇浩然欣怡子涵晨阳嘉琪思远佳颖志国海燕"


@dataclass(frozen=True)
class SeedResult:
    volunteers: list[Volunteer]
    teams: list[Team]


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _weight(town: Unit, village: Unit) -> float:
    w = 3.0 if town.name.endswith("街道") else 0.6 if town.name.endswith("乡") else 1.0
    return w * (2.0 if "社区" in village.name else 1.0)


def _scatter(rng: random.Random, centre: Unit, sigma_m: float) -> tuple[float, float] | tuple[None, None]:
    if centre.centre_lat is None or centre.centre_lon is None:
        return None, None
    dlat = rng.gauss(0, sigma_m) / 111_320.0
    dlon = rng.gauss(0, sigma_m) / (111_320.0 * math.cos(math.radians(centre.centre_lat)))
    lat, lon = gcj02_to_wgs84(centre.centre_lat + dlat, centre.centre_lon + dlon)
    return round(lat, 6), round(lon, 6)


def _certificate(rng: random.Random, skill: str, today: date, *, n: int) -> Certificate:
    if rng.random() < 0.15:  # expired between 1 day and ~2 years ago
        expires = today - timedelta(days=rng.randint(1, 700))
    else:
        expires = today + timedelta(days=rng.randint(0, 3 * 365 - 1))
    issued = expires - timedelta(days=3 * 365)
    return Certificate(skill, f"SX{issued.year}{n:07d}", issued, expires)


def synthesize(
    units: UnitDirectory,
    *,
    volunteers: int,
    teams: int,
    seed: int,
    today: date,
    mobile_prefix: str = TEST_MOBILE_PREFIX,
) -> SeedResult:
    """Generate the roster described in the module docstring.

    Args:
        units: the divisions (at least one county with villages).
        volunteers: how many volunteers (at most 1,000,000 per mobile prefix).
        teams: how many teams (each needs volunteers in its county).
        seed: random seed.
        today: the reference day (Asia/Shanghai) for certificate expiry and availability.
        mobile_prefix: E.164 prefix followed by six digits (default :data:`TEST_MOBILE_PREFIX`).

    Raises:
        ValueError: no villages, or more volunteers than the mobile prefix can number.

    """
    digits = 14 - len(mobile_prefix)
    if volunteers > 10**digits:
        raise ValueError(f"at most {10**digits} volunteers with prefix {mobile_prefix}")
    rng = random.Random(seed)
    villages: list[Unit] = sorted(units.of_level(Level.VILLAGE), key=lambda u: u.code)
    if not villages:
        raise ValueError("no villages/communities to place volunteers in")
    weights = [_weight(units.by_code[v.parent_code or ""], v) if v.parent_code in units.by_code else 1.0
               for v in villages]
    homes = rng.choices(villages, weights=weights, k=volunteers)
    mobiles = rng.sample(range(10**digits), volunteers)
    skills_codes = list(SKILL_SHARES)
    now = datetime.combine(today, time(0), tzinfo=UTC)
    vols: list[Volunteer] = []
    for i, home in enumerate(homes):
        county = home.code[:6]
        shares = dict(SKILL_SHARES)
        if county == "330602":
            shares["first_aid"] = 0.60
        skills = tuple(s for s in skills_codes if rng.random() < shares[s])
        certs = tuple(_certificate(rng, s, today, n=i) for s in skills if skill_by_code(s).needs_certificate)
        r = rng.random()
        availability, until = Availability.AVAILABLE, None
        if r < 0.08:
            availability = Availability.UNAVAILABLE
            until = now + timedelta(days=rng.randint(1, 14), hours=rng.randint(0, 23))
        elif r < 0.15:
            availability = Availability.OFF_DUTY
        town = units.by_code.get(home.code[:9])
        if town is not None and town.centre_lat is not None:
            lat, lon = _scatter(rng, town, 1500)
        else:
            lat, lon = _scatter(rng, units.by_code[county], 4000) if county in units.by_code else (None, None)
        name = rng.choice(_SURNAMES) + "".join(rng.choice(_GIVEN) for _ in range(rng.choice((1, 2, 2))))
        openid = None
        if rng.random() < 0.3:
            openid = "o" + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
                                   for _ in range(27))
        vols.append(Volunteer(
            id=_uuid(rng), revision=1, name=name, mobile=f"{mobile_prefix}{mobiles[i]:0{digits}d}",
            unit_code=home.code, lat=lat, lon=lon, skills=skills, certificates=certs, availability=availability,
            unavailable_until=until, wechat_openid=openid, wechat_subscribed=openid is not None,
            preferred_channel=Channel.WECHAT if openid and rng.random() < 0.5 else Channel.SMS,
        ))
    team_list = _teams(rng, units, vols, teams, today)
    return SeedResult(vols, team_list)


def _teams(rng: random.Random, units: UnitDirectory, vols: list[Volunteer], count: int, today: date) -> list[Team]:
    by_county: dict[str, list[int]] = {}
    for i, v in enumerate(vols):
        by_county.setdefault(v.unit_code[:6], []).append(i)
    counties = sorted(c for c in by_county if c in units.by_code)
    if not counties or count <= 0:
        return []
    plan: list[tuple[str, TeamType]] = [(c, t) for c, t in _FIXED_TEAMS if c in by_county][:count]
    types = list(TeamType)
    type_weights = [0.25, 0.15, 0.15, 0.3, 0.15]
    while len(plan) < count:
        plan.append((counties[len(plan) % len(counties)], rng.choices(types, weights=type_weights)[0]))
    taken: set[int] = set()
    names: set[str] = set()
    result: list[Team] = []
    team_of: dict[int, list[uuid.UUID]] = {}
    for county, ttype in plan:
        pool = [i for i in by_county[county] if i not in taken]
        if len(pool) < 6:
            continue
        skill = _TEAM_SKILL[ttype]
        skilled = [i for i in pool if skill in vols[i].skills]
        size = rng.randint(6, 20)
        members = rng.sample(skilled, min(size, len(skilled)))
        if len(members) < size:
            rest = [i for i in pool if i not in set(members)]
            members += rng.sample(rest, min(size - len(members), len(rest)))
        home = units.by_code[vols[members[0]].unit_code[:9]] if vols[members[0]].unit_code[:9] in units.by_code \
            else units.by_code[county]
        base = f"{home.name}{TEAM_TYPES[ttype]}"
        name, k = base, 2
        while name in names:
            name, k = f"{base}{k}队", k + 1
        names.add(name)
        tid = _uuid(rng)
        for i in members:
            v = vols[i]
            if skill not in v.skills:  # a team trains its members: they get the skill (and its certificate)
                certs = v.certificates
                if skill_by_code(skill).needs_certificate:
                    certs = (*certs, _certificate(rng, skill, today, n=i))
                vols[i] = replace(v, skills=(*v.skills, skill), certificates=certs)
            team_of.setdefault(i, []).append(tid)
            taken.add(i)
        leader = vols[members[0]]
        # The leader is reachable: available.
        vols[members[0]] = replace(vols[members[0]], availability=Availability.AVAILABLE, unavailable_until=None)
        result.append(Team(id=tid, revision=1, name=name, team_type=ttype, unit_code=home.code, leader_id=leader.id,
                           member_ids=tuple(sorted(vols[i].id for i in members)), lat=leader.lat, lon=leader.lon))
    for i, tids in team_of.items():
        vols[i] = replace(vols[i], team_ids=tuple(sorted(tids)))
    return result
