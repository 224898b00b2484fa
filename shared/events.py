"""The event contract: the envelope and every event the services exchange.

Every event is a frozen pydantic model that forbids extra fields and carries the envelope
(:class:`Event`): event id, type, schema version, occurred-at (UTC), producer, correlation id (the
incident where there is one), causation id (the event that caused this one) and the drill mark.
Events are named in the past tense. Topics and keys are in :mod:`shared.topics`.

Wire format: UTF-8 JSON of ``model_dump(mode="json")``; Kafka headers repeat ``event_id`` and
``event_type`` so that tombstones (null values on compacted topics, which mean "retired") can be
deduplicated and routed too. :func:`parse_event` turns bytes back into the right model.

Personal data: only the contact events (:class:`VolunteerContactUpdated`) carry phone numbers and
WeChat openids, and only notify consumes them. Profiles carry no contact data.

Errors: :func:`parse_event` raises :class:`pydantic.ValidationError` (or :class:`ValueError`
for bytes that are not JSON or name an unknown type).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID, uuid4

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from shared.vocabulary import Channel, Level, TeamType

__all__ = [
    "AedStatus",
    "AedUpdated",
    "AnyEvent",
    "CardiacRole",
    "Availability",
    "BroadcastAudience",
    "BroadcastRequested",
    "CallOutAssigned",
    "CallOutCancelled",
    "CallOutRequested",
    "CancelReason",
    "CertificateInfo",
    "Event",
    "IncidentClosed",
    "MeetingPointChanged",
    "IncidentEscalated",
    "IncidentMode",
    "IncidentOpened",
    "MessageDelivered",
    "MessageFailed",
    "MessageKind",
    "MessageSent",
    "ReplyIntent",
    "ReplyReceived",
    "RequirementFilled",
    "RequirementSpec",
    "RequirementUnfilled",
    "TeamUpdated",
    "VolunteerContactUpdated",
    "VolunteerProfileUpdated",
    "parse_event",
    "utcnow",
]

SCHEMA_VERSION = 1
Producer = Literal["roster", "dispatch", "notify", "simulator", "test"]


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class Event(BaseModel):
    """The envelope every event carries.

    Attributes:
        event_id: unique id; consumers deduplicate on it.
        event_type: the concrete type's name (the discriminator).
        schema_version: version of this type's schema; bumped on incompatible change.
        occurred_at: when the fact happened, timezone-aware UTC.
        producer: the service that wrote the event.
        correlation_id: the incident this event belongs to, where there is one.
        causation_id: the event that caused this one, where there is one.
        drill: true for events of a drill; messages caused by them say 演练.

    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: UUID = Field(default_factory=uuid4, description="Unique id; consumers deduplicate on it.")
    event_type: str
    schema_version: int = Field(default=SCHEMA_VERSION, ge=1)
    occurred_at: AwareDatetime = Field(default_factory=utcnow, description="When it happened, UTC.")
    producer: Producer
    correlation_id: UUID | None = Field(default=None, description="The incident, where there is one.")
    causation_id: UUID | None = Field(default=None, description="The event that caused this one.")
    drill: bool = Field(default=False, description="Event of a drill.")

    @field_validator("occurred_at")
    @classmethod
    def _to_utc(cls, v: datetime) -> datetime:
        return v.astimezone(UTC)

    def to_bytes(self) -> bytes:
        """UTF-8 JSON of the event."""
        return self.model_dump_json().encode()


# --------------------------------------------------------------------------- roster


class Availability(StrEnum):
    AVAILABLE = "available"
    UNAVAILABLE = "unavailable"  # until ``unavailable_until``
    OFF_DUTY = "off_duty"


class CertificateInfo(BaseModel):
    """A certificate as dispatch needs it: which skill it certifies and when it is valid (dates in Asia/Shanghai)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    skill: str = Field(description="Skill code from shared.vocabulary.SKILLS.", examples=["first_aid"])
    issued_on: date | None = None
    expires_on: date | None = Field(default=None, description="Last day valid; None = does not expire.")


class VolunteerProfileUpdated(Event):
    """Snapshot of a volunteer's profile, without contact data. Topic: ``roster.volunteer-profile.v1``.

    A retirement is a tombstone (null value) on the same key. ``revision`` grows with every change,
    so a consumer can ignore an older snapshot that arrives late.
    """

    event_type: Literal["VolunteerProfileUpdated"] = "VolunteerProfileUpdated"
    producer: Producer = "roster"
    volunteer_id: UUID
    revision: int = Field(ge=1)
    display_name: str = Field(description="Name as shown to operators.", examples=["王小明"])
    unit_code: str = Field(description="Home village/community code (12 digits).", examples=["330603101201"])
    lat: float | None = Field(default=None, ge=-90, le=90, description="WGS84 latitude, degrees.")
    lon: float | None = Field(default=None, ge=-180, le=180, description="WGS84 longitude, degrees.")
    position_approximate: bool = Field(
        default=False, description="lat/lon is the centre of the volunteer's smallest known division, not their own.")
    skills: tuple[str, ...] = ()
    certificates: tuple[CertificateInfo, ...] = ()
    team_ids: tuple[UUID, ...] = ()
    availability: Availability = Availability.AVAILABLE
    unavailable_until: AwareDatetime | None = None
    consent: bool = Field(description="Consented to be called out.")
    active: bool = True
    cardiac_alerts: bool = Field(default=True, description="May be alerted by the cardiac-arrest circle (False: "
                                 "opted out; older events: True).")


class VolunteerContactUpdated(Event):
    """A volunteer's contact channels; for notify only. Topic: ``roster.volunteer-contact.v1``."""

    event_type: Literal["VolunteerContactUpdated"] = "VolunteerContactUpdated"
    producer: Producer = "roster"
    volunteer_id: UUID
    revision: int = Field(ge=1)
    mobile: str | None = Field(default=None, description="E.164, e.g. +8613800138000.")
    wechat_openid: str | None = None
    wechat_subscribed: bool = False
    preferred_channel: Channel = Channel.SMS
    sms_consent: bool = True


class TeamUpdated(Event):
    """Snapshot of a rescue team (救援队). Topic: ``roster.team.v1``; retirement is a tombstone."""

    event_type: Literal["TeamUpdated"] = "TeamUpdated"
    producer: Producer = "roster"
    team_id: UUID
    revision: int = Field(ge=1)
    name: str
    team_type: TeamType
    unit_code: str = Field(description="Home unit at any level (6, 9 or 12 digits).")
    leader_id: UUID | None = Field(description="The volunteer through whom the team is called.")
    member_ids: tuple[UUID, ...] = ()
    lat: float | None = None
    lon: float | None = None
    active: bool = True


# --------------------------------------------------------------------------- dispatch


class AedStatus(StrEnum):
    """An AED's status as its owner records it; pads and battery expiry are judged from their dates."""

    IN_SERVICE = "in_service"
    OUT_OF_SERVICE = "out_of_service"


class AedUpdated(Event):
    """Snapshot of a defibrillator (AED) of the registry, for dispatch's cardiac-arrest circle.

    Topic ``roster.aed.v1`` (compacted, keyed by AED id; a tombstone removes it from the registry).
    """

    event_type: Literal["AedUpdated"] = "AedUpdated"
    producer: Producer = "roster"
    aed_id: UUID
    revision: int = Field(ge=1)
    lat: float = Field(ge=-90, le=90, description="WGS84 latitude, degrees.")
    lon: float = Field(ge=-180, le=180, description="WGS84 longitude, degrees.")
    address: str = Field(description="Street address, as people say it.", examples=["鲁迅中路241号"])
    location: str = Field(default="", description="Where it hangs: building, floor, landmark.",
                          examples=["游客中心一楼服务台旁"])
    unit_code: str = Field(description="Owner unit's division code (6, 9 or 12 digits).")
    owner: str = Field(default="", description="Who owns and checks it.", examples=["鲁迅故里景区管理处"])
    access_hours: str = Field(default="24/7", description="When it can be reached: OpenStreetMap opening_hours "
                              "syntax, Asia/Shanghai.", examples=["Mo-Su 08:00-17:30"])
    status: AedStatus = AedStatus.IN_SERVICE
    pads_expire_on: date | None = Field(default=None, description="Last day the pads are valid (Asia/Shanghai).")
    battery_expire_on: date | None = Field(default=None, description="Last day the battery is valid.")
    last_checked_on: date | None = None
    last_checked_by: str = ""


class IncidentMode(StrEnum):
    EMERGENCY = "emergency"
    EVENT = "event"
    DRILL = "drill"


class RequirementSpec(BaseModel):
    """One requirement of an incident: a skill or a team type, and how many."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    requirement_id: UUID
    skill: str | None = None
    team_type: TeamType | None = None
    count: int = Field(ge=1)


class IncidentOpened(Event):
    event_type: Literal["IncidentOpened"] = "IncidentOpened"
    producer: Producer = "dispatch"
    incident_id: UUID
    kind: str = Field(examples=["drowning"])
    title: str
    mode: IncidentMode
    lat: float = Field(description="WGS84 latitude, degrees.")
    lon: float = Field(description="WGS84 longitude, degrees.")
    unit_code: str = Field(description="Village/community code the point lies in.")
    start_level: Level
    max_level: Level
    requirements: tuple[RequirementSpec, ...]


class IncidentEscalated(Event):
    """Dispatch widened a requirement's search one level up (四级联动)."""

    event_type: Literal["IncidentEscalated"] = "IncidentEscalated"
    producer: Producer = "dispatch"
    incident_id: UUID
    requirement_id: UUID
    from_level: Level
    to_level: Level
    unit_code: str = Field(description="Code of the unit searched at the new level.")


class RequirementFilled(Event):
    event_type: Literal["RequirementFilled"] = "RequirementFilled"
    producer: Producer = "dispatch"
    incident_id: UUID
    requirement_id: UUID
    filled: int


class RequirementUnfilled(Event):
    """No one is left to call at the highest level allowed; the operator must act."""

    event_type: Literal["RequirementUnfilled"] = "RequirementUnfilled"
    producer: Producer = "dispatch"
    incident_id: UUID
    requirement_id: UUID
    filled: int
    outstanding: int
    level: Level


class IncidentClosed(Event):
    event_type: Literal["IncidentClosed"] = "IncidentClosed"
    producer: Producer = "dispatch"
    incident_id: UUID
    outcome: str


class MeetingPointChanged(Event):
    """An operator changed where to gather (or the callback number). Topic ``dispatch.incident.v1``.

    Notify words what it sends from now on for the incident's call-outs with it: the reply page, the
    automatic answer to "在哪里集合", a resend (a stale meeting point in those: break-it review).
    """

    event_type: Literal["MeetingPointChanged"] = "MeetingPointChanged"
    producer: Producer = "dispatch"
    incident_id: UUID
    meeting_point: str = Field(description="Where to gather now (the incident's place when none was given).")
    map_url: str | None = Field(default=None, description="Amap marker link of the meeting point (GCJ-02).")
    callback_phone: str | None = Field(default=None, description="The operator's callback number.")


class CallOutRequested(Event):
    """Ask one volunteer (or a team through its leader) to respond. Topic ``dispatch.callout.v1``, key volunteer id."""

    event_type: Literal["CallOutRequested"] = "CallOutRequested"
    producer: Producer = "dispatch"
    callout_id: UUID
    incident_id: UUID
    requirement_id: UUID
    volunteer_id: UUID
    team_id: UUID | None = None
    wave: int = Field(ge=1)
    level: Level
    incident_kind: str
    incident_title: str = Field(description="Short text for the message, e.g. 柯桥区鉴湖溺水.")
    place: str = Field(description="Where to go, as people say it (unit name and landmark).")
    role: str = Field(description="What they are asked to do, in Chinese, e.g. 救护员.")
    reply_code: str = Field(description="Short code that tells this call-out apart among the volunteer's open ones.")
    respond_by: AwareDatetime = Field(description="Deadline of this wave, UTC.")
    meeting_point: str = Field(default="", description="Where to gather (address or landmark); empty in events "
                               "older than the field: use ``place``.", examples=["鉴湖南门停车场"])
    meeting_lat: float | None = Field(default=None, ge=-90, le=90, description="Meeting point, WGS84 latitude.")
    meeting_lon: float | None = Field(default=None, ge=-180, le=180, description="Meeting point, WGS84 longitude.")
    map_url: str | None = Field(default=None, description="Amap marker link of the meeting point (GCJ-02), "
                                "see shared.maps.", examples=["https://uri.amap.com/marker?position=120.5,30.0"])
    callback_phone: str | None = Field(default=None, description="The operator's callback number (landline, 400 "
                                       "or 95 number: providers' notification-template rule).",
                                       examples=["0575-85123456"])


class CardiacRole(StrEnum):
    """What an accepted volunteer of the cardiac-arrest circle is asked to do."""

    CPR = "cpr"  # go to the patient and start CPR
    FETCH_AED = "fetch_aed"  # fetch the named AED, then go to the patient


class CallOutAssigned(Event):
    """The volunteer's acceptance was taken: they are assigned. Notify confirms it to them."""

    event_type: Literal["CallOutAssigned"] = "CallOutAssigned"
    producer: Producer = "dispatch"
    callout_id: UUID
    incident_id: UUID
    volunteer_id: UUID
    incident_title: str
    place: str
    meeting_point: str = Field(default="", description="Where to gather; empty in older events: use ``place``.")
    map_url: str | None = Field(default=None, description="Amap marker link of the meeting point (GCJ-02).")
    callback_phone: str | None = Field(default=None, description="The operator's callback number.")
    reply_code: str | None = Field(
        default=None, description="The call-out's reply code. A call-out an operator moved the volunteer into is "
        "announced only by this event (no CallOutRequested: they are not asked, they are told), so notify learns "
        "the call-out, and its code, from it.")
    cardiac_role: CardiacRole | None = Field(default=None, description="Cardiac-arrest circle: CPR at the patient, "
                                             "or fetch an AED first; None for other incidents.")
    aed_place: str = Field(default="", description="fetch_aed: where the AED hangs (address, building/floor).")
    aed_map_url: str | None = Field(default=None, description="fetch_aed: Amap marker link of the AED (GCJ-02).")


class BroadcastAudience(StrEnum):
    ASSIGNED = "assigned"  # accepted, on the way or arrived
    CALLED = "called"  # everyone still called: not declined, not stood down (waiting, timed out, assigned, arrived)


class BroadcastRequested(Event):
    """An operator's text to one person of an incident's audience. Topic ``dispatch.callout.v1``, key volunteer id.

    One event per recipient (their call-out in the incident); notify sends it once per call-out and broadcast
    (message id from ``broadcast_id`` and ``callout_id``). Replies to it are matched like replies to any message.
    """

    event_type: Literal["BroadcastRequested"] = "BroadcastRequested"
    producer: Producer = "dispatch"
    broadcast_id: UUID = Field(description="The operator's broadcast; idempotency key with the call-out.")
    callout_id: UUID
    incident_id: UUID
    volunteer_id: UUID
    incident_title: str
    text: str = Field(description="What the operator wrote, 1..120 characters, no URL (SMS template rule).",
                      examples=["集合点改到南门"])
    callback_phone: str | None = Field(default=None, description="The operator's callback number.")


class CancelReason(StrEnum):
    FILLED = "filled"  # the need was filled before (or as) they answered
    INCIDENT_CLOSED = "incident_closed"
    STOOD_DOWN = "stood_down"  # the operator stood everyone down
    REMOVED = "removed"  # the operator removed this volunteer
    ENGAGED_ELSEWHERE = "engaged_elsewhere"  # they accepted, but are already assigned in another open incident


class CallOutCancelled(Event):
    """Stand-down: tell the volunteer they are not needed (any more)."""

    event_type: Literal["CallOutCancelled"] = "CallOutCancelled"
    producer: Producer = "dispatch"
    callout_id: UUID
    incident_id: UUID
    volunteer_id: UUID
    reason: CancelReason
    incident_title: str
    was_assigned: bool = Field(default=False, description="They had been assigned (so they may be on their way).")
    engaged_incident_title: str | None = Field(
        default=None, description="Reason engaged_elsewhere: the title of the incident they are already assigned in.",
    )


# --------------------------------------------------------------------------- notify


class MessageKind(StrEnum):
    CALLOUT = "callout"
    ASSIGNED = "assigned"
    STAND_DOWN = "stand_down"
    REMINDER = "reminder"
    BROADCAST = "broadcast"  # an operator's text to an incident's assigned or called people
    AUTO_ANSWER = "auto_answer"  # the one automatic answer to an unrecognised reply: how to reply, where to go
    CARDIAC_CPR = "cardiac_cpr"  # cardiac arrest, assigned: go to the patient, start CPR (an assigned message)
    CARDIAC_AED = "cardiac_aed"  # cardiac arrest, assigned: fetch the named AED, then go to the patient


class _MessageEvent(Event):
    producer: Producer = "notify"
    message_id: UUID
    callout_id: UUID
    volunteer_id: UUID
    kind: MessageKind
    channel: Channel
    provider: str = Field(examples=["aliyun", "tencent", "wechat"])


class MessageSent(_MessageEvent):
    """A provider accepted the message."""

    event_type: Literal["MessageSent"] = "MessageSent"
    provider_message_id: str | None = None


class MessageDelivered(_MessageEvent):
    """The provider's delivery receipt says the phone got it."""

    event_type: Literal["MessageDelivered"] = "MessageDelivered"
    provider_message_id: str | None = None


class MessageFailed(_MessageEvent):
    """The message could not be delivered on this channel (``fallback`` tells whether another is tried)."""

    event_type: Literal["MessageFailed"] = "MessageFailed"
    error_code: str
    fallback: bool = False


class ReplyIntent(StrEnum):
    ACCEPT = "accept"
    DECLINE = "decline"
    ETA = "eta"  # accepted, with an ETA in minutes
    ARRIVED = "arrived"
    UNSUBSCRIBE = "unsubscribe"  # TD / 退订: withdraws SMS consent
    UNRECOGNISED = "unrecognised"  # kept for an operator to read


class ReplyReceived(Event):
    """A volunteer's reply, parsed. Unrecognised replies and replies from unknown phones are published too."""

    event_type: Literal["ReplyReceived"] = "ReplyReceived"
    producer: Producer = "notify"
    reply_id: UUID
    volunteer_id: UUID | None = Field(description="None when the phone is not on the roster.")
    callout_id: UUID | None = Field(description="The call-out it answers, where one could be matched.")
    intent: ReplyIntent
    eta_minutes: int | None = Field(default=None, ge=0, le=24 * 60)
    text: str = Field(description="What the volunteer wrote, with phone numbers and openids masked "
                                  "(notify keeps the raw text in its own database).")
    channel: Channel
    sender: str | None = Field(default=None, description="Masked sender (138****1234) when unknown.")
    received_at: AwareDatetime


AnyEvent = Annotated[
    VolunteerProfileUpdated
    | VolunteerContactUpdated
    | TeamUpdated
    | AedUpdated
    | IncidentOpened
    | IncidentEscalated
    | RequirementFilled
    | RequirementUnfilled
    | IncidentClosed
    | MeetingPointChanged
    | CallOutRequested
    | CallOutAssigned
    | CallOutCancelled
    | BroadcastRequested
    | MessageSent
    | MessageDelivered
    | MessageFailed
    | ReplyReceived,
    Field(discriminator="event_type"),
]

_ADAPTER: TypeAdapter[Any] = TypeAdapter(AnyEvent)


def parse_event(data: bytes | str) -> Event:
    """Parse one event from its JSON wire form.

    Raises:
        pydantic.ValidationError: not JSON, an unknown ``event_type``, or fields that do not fit.

    """
    result: Event = _ADAPTER.validate_json(data)
    return result
