"""The roster's records (volunteers, teams, certificates) and the events their snapshots become.

Pure: plain frozen dataclasses and functions, no I/O. The command layer
(:mod:`services.roster.commands`) stores a record and writes the events built here in the same
transaction.

Which event carries what (see :mod:`shared.events`):

* :class:`~shared.events.VolunteerProfileUpdated` (for dispatch): everything but contact data;
* :class:`~shared.events.VolunteerContactUpdated` (for notify only): mobile, openid, channel, consent;
* :class:`~shared.events.TeamUpdated`.

``revision`` starts at 1 and grows by one with every change of the record.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any
from uuid import UUID

from shared.events import (
    Availability,
    CertificateInfo,
    TeamUpdated,
    VolunteerContactUpdated,
    VolunteerProfileUpdated,
)
from shared.vocabulary import Channel, TeamType

# Length limits, characters, shared by the HTTP API (handlers/schemas.py) and the register import.
MAX_NAME = 64  #: a volunteer's name
MAX_CERT_NUMBER = 64  #: a certificate number
MAX_TEAM_NAME = 64  #: a team's name

__all__ = [
    "MAX_CERT_NUMBER",
    "MAX_NAME",
    "MAX_TEAM_NAME",
    "Certificate",
    "Team",
    "Volunteer",
    "contact_event",
    "profile_event",
    "team_event",
]


@dataclass(frozen=True)
class Certificate:
    """A certificate: the skill (``kind``, a skill code) it certifies, its number and validity.

    ``issued_on`` and ``expires_on`` are calendar dates in Asia/Shanghai; ``expires_on`` is the last
    valid day, None when it does not expire.
    """

    kind: str
    number: str | None = None
    issued_on: date | None = None
    expires_on: date | None = None

    def valid_on(self, day: date) -> bool:
        """True when the certificate is valid on ``day`` (issued on or before it, not yet expired)."""
        if self.issued_on is not None and self.issued_on > day:
            return False
        return self.expires_on is None or self.expires_on >= day

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "number": self.number,
            "issued_on": self.issued_on.isoformat() if self.issued_on else None,
            "expires_on": self.expires_on.isoformat() if self.expires_on else None,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Certificate:
        return cls(
            kind=d["kind"],
            number=d.get("number"),
            issued_on=date.fromisoformat(d["issued_on"]) if d.get("issued_on") else None,
            expires_on=date.fromisoformat(d["expires_on"]) if d.get("expires_on") else None,
        )


@dataclass(frozen=True)
class Volunteer:
    """A volunteer as the roster keeps them.

    Attributes:
        id: volunteer id.
        revision: grows by one with every change (1 for a new volunteer).
        name: full name as shown to operators.
        mobile: E.164 (``+8613800138000``), unique among volunteers.
        unit_code: home village/community, 12-digit division code.
        lat, lon: location, WGS84 degrees: their own, or their unit's centre when ``position_approximate``
            (:mod:`services.roster.domain.positions`); None when neither is known.
        position_approximate: ``lat``/``lon`` is the centre of the smallest division known for them.
        skills: skill codes from :data:`shared.vocabulary.SKILLS`.
        certificates: the volunteer's certificates.
        team_ids: teams they belong to (kept in the team records; carried here for the profile).
        availability, unavailable_until: ``unavailable`` lasts until ``unavailable_until`` (UTC).
        wechat_openid, wechat_subscribed, preferred_channel: contact channels besides the mobile.
        consent: consented to be called out at all; sms_consent: may be sent SMS (withdrawn by TD/退订).
        active: False once retired.
        cardiac_alerts: may be alerted by the cardiac-arrest circle (False: opted out; issue #17).

    """

    id: UUID
    revision: int
    name: str
    mobile: str
    unit_code: str
    lat: float | None = None
    lon: float | None = None
    position_approximate: bool = False
    skills: tuple[str, ...] = ()
    certificates: tuple[Certificate, ...] = ()
    team_ids: tuple[UUID, ...] = ()
    availability: Availability = Availability.AVAILABLE
    unavailable_until: datetime | None = None
    wechat_openid: str | None = None
    wechat_subscribed: bool = False
    preferred_channel: Channel = Channel.SMS
    consent: bool = True
    sms_consent: bool = True
    active: bool = True
    cardiac_alerts: bool = True

    def same_content(self, other: Volunteer) -> bool:
        """True when nothing but id/revision differs (an import of the same row changes nothing)."""
        mine, theirs = dict(self.__dict__), dict(other.__dict__)
        for k in ("id", "revision"):
            mine.pop(k)
            theirs.pop(k)
        return mine == theirs

    def bumped(self, **changes: Any) -> Volunteer:
        """A copy with ``changes`` applied and the revision raised by one."""
        return replace(self, revision=self.revision + 1, **changes)


@dataclass(frozen=True)
class Team:
    """A rescue team (救援队).

    Attributes:
        unit_code: home unit at any level (6, 9 or 12 digits).
        leader_id: the volunteer through whom the team is called; must be a member.
        member_ids: members, the leader included.
        lat, lon: base location, WGS84 degrees, optional.

    """

    id: UUID
    revision: int
    name: str
    team_type: TeamType
    unit_code: str
    leader_id: UUID | None = None
    member_ids: tuple[UUID, ...] = field(default_factory=tuple)
    lat: float | None = None
    lon: float | None = None
    active: bool = True


def profile_event(v: Volunteer, *, drill: bool = False) -> VolunteerProfileUpdated:
    """The profile snapshot of ``v`` (no mobile, no openid)."""
    return VolunteerProfileUpdated(
        volunteer_id=v.id,
        revision=v.revision,
        display_name=v.name,
        unit_code=v.unit_code,
        lat=v.lat,
        lon=v.lon,
        position_approximate=v.position_approximate,
        skills=v.skills,
        certificates=tuple(
            CertificateInfo(skill=c.kind, issued_on=c.issued_on, expires_on=c.expires_on) for c in v.certificates
        ),
        team_ids=v.team_ids,
        availability=v.availability,
        unavailable_until=v.unavailable_until,
        consent=v.consent,
        active=v.active,
        cardiac_alerts=v.cardiac_alerts,
        drill=drill,
    )


def contact_event(v: Volunteer) -> VolunteerContactUpdated:
    """The contact snapshot of ``v``, for notify."""
    return VolunteerContactUpdated(
        volunteer_id=v.id,
        revision=v.revision,
        mobile=v.mobile,
        wechat_openid=v.wechat_openid,
        wechat_subscribed=v.wechat_subscribed,
        preferred_channel=v.preferred_channel,
        sms_consent=v.sms_consent and v.consent,
    )


def team_event(t: Team) -> TeamUpdated:
    """The snapshot of team ``t``."""
    return TeamUpdated(
        team_id=t.id,
        revision=t.revision,
        name=t.name,
        team_type=t.team_type,
        unit_code=t.unit_code,
        leader_id=t.leader_id,
        member_ids=t.member_ids,
        lat=t.lat,
        lon=t.lon,
        active=t.active,
    )
