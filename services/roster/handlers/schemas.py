"""HTTP request and response bodies of the roster API (pydantic; published in the OpenAPI document).

Invalid bodies are answered 422 by FastAPI with the field path of every error (``loc``).
Mobiles are accepted in any usual writing and stored in E.164 (see
:func:`services.roster.domain.normalise.parse_mobile`). Dates are calendar dates (Asia/Shanghai);
times are timezone-aware and returned in UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar
from uuid import UUID

from fastapi import Query
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from services.roster.domain.model import (
    MAX_CERT_NUMBER,
    MAX_NAME,
    MAX_TEAM_NAME,
    Certificate,
    Team,
    Volunteer,
)
from services.roster.domain.normalise import NormaliseError, parse_mobile
from shared.events import Availability
from shared.inputs import FiniteFloat, PlausibleDate, SingleLine, StrictBool, is_formula, plausible_year
from shared.vocabulary import SKILLS, Channel, TeamType

__all__ = ["MAX_PAGE", "CertificateBody", "Page", "PageNumber", "PageSize", "TeamIn", "TeamOut", "TeamPatch", "VolunteerIn", "VolunteerOut", "VolunteerPatch"]

_SKILLS = {s.code for s in SKILLS}


def _mobile(v: str) -> str:
    try:
        return parse_mobile(v)
    except NormaliseError as e:
        raise ValueError(e.reason) from None


def _skill(v: str) -> str:
    if v not in _SKILLS:
        raise ValueError(f"unknown skill; one of {', '.join(sorted(_SKILLS))}")
    return v


def _village(v: str) -> str:
    if not (len(v) == 12 and v.isdigit()):
        raise ValueError("a village/community code has 12 digits")
    return v


def _unit(v: str) -> str:
    if not (v.isdigit() and len(v) in (6, 9, 12)):
        raise ValueError("a division code has 6, 9 or 12 digits")
    return v


def _utc(v: datetime) -> datetime:
    return v.astimezone(UTC)


def _not_formula(v: str) -> str:
    if is_formula(v):
        raise ValueError("a name may not start with =, +, -, @ (a spreadsheet would run it as a formula)")
    return v


UtcDatetime = Annotated[AwareDatetime, AfterValidator(plausible_year), AfterValidator(_utc), Field(description="Timezone-aware; stored and returned in UTC.")]
Mobile = Annotated[str, AfterValidator(_mobile), Field(examples=["+8613800138000", "138 0013 8000"])]
SkillCode = Annotated[str, AfterValidator(_skill), Field(examples=["first_aid"])]
VillageCode = Annotated[str, AfterValidator(_village), Field(examples=["330603101201"])]
UnitCode = Annotated[str, AfterValidator(_unit), Field(examples=["330603", "330603101"])]
Name = Annotated[SingleLine, AfterValidator(_not_formula)]
Lat = Annotated[FiniteFloat, Field(ge=-90, le=90, description="WGS84 latitude, degrees.")]
Lon = Annotated[FiniteFloat, Field(ge=-180, le=180, description="WGS84 longitude, degrees.")]


class CertificateBody(BaseModel):
    """A certificate; ``kind`` is the skill it certifies. ``expires_on`` is the last valid day."""

    model_config = ConfigDict(extra="forbid")

    kind: SkillCode
    number: SingleLine | None = Field(default=None, max_length=MAX_CERT_NUMBER)
    issued_on: PlausibleDate | None = None
    expires_on: PlausibleDate | None = None

    @model_validator(mode="after")
    def _order(self) -> CertificateBody:
        if self.issued_on and self.expires_on and self.expires_on < self.issued_on:
            raise ValueError("expires_on is before issued_on")
        return self

    def to_domain(self) -> Certificate:
        return Certificate(self.kind, self.number, self.issued_on, self.expires_on)


class _VolunteerFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _until(self) -> Any:
        if getattr(self, "availability", None) == Availability.UNAVAILABLE and getattr(self, "unavailable_until",
                                                                                        None) is None:
            raise ValueError("unavailable needs unavailable_until")
        return self


class VolunteerIn(_VolunteerFields):
    """A new volunteer."""

    name: Name = Field(min_length=1, max_length=MAX_NAME, examples=["王小明"])
    mobile: Mobile
    unit_code: VillageCode = Field(description="Home village/community, 12-digit division code.")
    lat: Lat | None = None
    lon: Lon | None = None
    skills: list[SkillCode] = Field(default_factory=list)
    certificates: list[CertificateBody] = Field(default_factory=list)
    availability: Availability = Availability.AVAILABLE
    unavailable_until: UtcDatetime | None = None
    wechat_openid: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{16,64}$")
    wechat_subscribed: StrictBool = False
    preferred_channel: Channel = Channel.SMS
    consent: StrictBool = True
    sms_consent: StrictBool = True
    cardiac_alerts: StrictBool = Field(default=True, description="May be alerted by the cardiac-arrest circle "
                                       "(False: opted out).")


class VolunteerPatch(_VolunteerFields):
    """Changes to a volunteer: only the fields given change."""

    name: Name | None = Field(default=None, min_length=1, max_length=MAX_NAME)
    mobile: Mobile | None = None
    unit_code: VillageCode | None = None
    lat: Lat | None = None
    lon: Lon | None = None
    skills: list[SkillCode] | None = None
    certificates: list[CertificateBody] | None = None
    availability: Availability | None = None
    unavailable_until: UtcDatetime | None = None
    wechat_openid: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{16,64}$")
    wechat_subscribed: StrictBool | None = None
    preferred_channel: Channel | None = None
    consent: StrictBool | None = None
    sms_consent: StrictBool | None = None
    cardiac_alerts: StrictBool | None = Field(default=None, description="False: opt out of cardiac-arrest alerts.")

    def changes(self) -> dict[str, Any]:
        """The fields given, as :class:`Volunteer` field values."""
        out: dict[str, Any] = {}
        for k in self.model_fields_set:
            v = getattr(self, k)
            if k == "skills":
                v = tuple(v or ())
            elif k == "certificates":
                v = tuple(c.to_domain() for c in v or ())
            elif v is None and k not in ("lat", "lon", "unavailable_until", "wechat_openid"):
                continue
            out[k] = v
        if out.get("availability") not in (None, Availability.UNAVAILABLE) and "unavailable_until" not in out:
            out["unavailable_until"] = None
        return out


class VolunteerOut(BaseModel):
    """A volunteer as the roster API returns it (contact data included: the roster owns it)."""

    id: UUID
    revision: int
    name: str
    mobile: str = Field(description="E.164.")
    unit_code: str
    lat: float | None = Field(description="WGS84 degrees: own point, or the unit's centre when approximate.")
    lon: float | None
    position_approximate: bool = Field(description="lat/lon is the centre of the smallest division known.")
    skills: list[str]
    certificates: list[CertificateBody]
    team_ids: list[UUID]
    availability: Availability
    unavailable_until: UtcDatetime | None
    wechat_openid: str | None
    wechat_subscribed: bool
    preferred_channel: Channel
    consent: bool
    sms_consent: bool
    active: bool
    cardiac_alerts: bool = Field(description="May be alerted by the cardiac-arrest circle.")

    @classmethod
    def of(cls, v: Volunteer) -> VolunteerOut:
        return cls(
            id=v.id, revision=v.revision, name=v.name, mobile=v.mobile, unit_code=v.unit_code, lat=v.lat, lon=v.lon,
            position_approximate=v.position_approximate, skills=list(v.skills),
            certificates=[CertificateBody(kind=c.kind, number=c.number, issued_on=c.issued_on,
                                          expires_on=c.expires_on) for c in v.certificates],
            team_ids=list(v.team_ids), availability=v.availability, unavailable_until=v.unavailable_until,
            wechat_openid=v.wechat_openid, wechat_subscribed=v.wechat_subscribed,
            preferred_channel=v.preferred_channel, consent=v.consent, sms_consent=v.sms_consent, active=v.active,
            cardiac_alerts=v.cardiac_alerts,
        )


class TeamIn(BaseModel):
    """A new team; the leader must be one of the members."""

    model_config = ConfigDict(extra="forbid")

    name: Name = Field(min_length=1, max_length=MAX_TEAM_NAME, examples=["柯桥区水上救援队"])
    team_type: TeamType
    unit_code: UnitCode = Field(description="Home unit at any level.")
    leader_id: UUID | None = None
    member_ids: list[UUID] = Field(default_factory=list)
    lat: Lat | None = None
    lon: Lon | None = None


class TeamPatch(BaseModel):
    """Changes to a team: only the fields given change (``member_ids`` replaces the members)."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = Field(default=None, min_length=1, max_length=MAX_TEAM_NAME)
    team_type: TeamType | None = None
    unit_code: UnitCode | None = None
    leader_id: UUID | None = None
    member_ids: list[UUID] | None = None
    lat: Lat | None = None
    lon: Lon | None = None

    def changes(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k in self.model_fields_set:
            v = getattr(self, k)
            if k == "member_ids":
                v = tuple(v or ())
            elif v is None and k not in ("leader_id", "lat", "lon"):
                continue
            out[k] = v
        return out


class TeamOut(BaseModel):
    id: UUID
    revision: int
    name: str
    team_type: TeamType
    unit_code: str
    leader_id: UUID | None
    member_ids: list[UUID]
    lat: float | None
    lon: float | None
    active: bool

    @classmethod
    def of(cls, t: Team) -> TeamOut:
        return cls(id=t.id, revision=t.revision, name=t.name, team_type=t.team_type, unit_code=t.unit_code,
                   leader_id=t.leader_id, member_ids=list(t.member_ids), lat=t.lat, lon=t.lon, active=t.active)


T = TypeVar("T")

# The page number is bounded so that the row offset, (page - 1) × page_size, fits PostgreSQL's bigint
# (OFFSET is an int8; 2**63 - 1 answered 500). 10**6 pages of 1,000 rows are far beyond any roster.
MAX_PAGE = 1_000_000
MAX_PAGE_SIZE = 1000
PageNumber = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"1-based page number, at most {MAX_PAGE}.")]
PageSize = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description=f"Rows per page, at most {MAX_PAGE_SIZE}.")]


class Page(BaseModel, Generic[T]):
    """One page of results: ``items``, the 1-based ``page``, ``page_size`` and the ``total`` matching."""

    items: list[T]
    page: int
    page_size: int
    total: int
