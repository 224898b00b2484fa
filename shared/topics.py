"""Topic names and their layout: the one place the contract's topics are defined.

Each topic carries one family of events (see :mod:`shared.events`). Keys (partition keys) are
chosen so that everything about one volunteer stays in one partition and in order:

=================================  =================  =========  ==========  =========================
topic                              key                partitions compacted   producer -> consumers
=================================  =================  =========  ==========  =========================
roster.volunteer-profile.v1        volunteer id       6          yes         roster -> dispatch
roster.volunteer-contact.v1        volunteer id       6          yes         roster -> notify
roster.team.v1                     team id            3          yes         roster -> dispatch
roster.aed.v1                      AED id             3          yes         roster -> dispatch
dispatch.incident.v1               incident id        3          no          dispatch -> (board, report)
dispatch.callout.v1                volunteer id       12         no          dispatch -> notify
notify.delivery.v1                 volunteer id       6          no          notify -> dispatch
notify.reply.v1                    volunteer id       6          no          notify -> dispatch, roster
=================================  =================  =========  ==========  =========================

Every consumed topic has a dead-letter topic named ``<topic>.dlq`` (see :func:`dead_letter`).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ALL_TOPICS",
    "CALLOUT",
    "DELIVERY",
    "INCIDENT",
    "REPLY",
    "ROSTER_AED",
    "ROSTER_CONTACT",
    "ROSTER_PROFILE",
    "ROSTER_TEAM",
    "TopicSpec",
    "dead_letter",
    "ensure_topics",
]


@dataclass(frozen=True)
class TopicSpec:
    """A topic's name and layout.

    Attributes:
        name: the Kafka topic name.
        partitions: number of partitions.
        compacted: ``cleanup.policy=compact`` (latest snapshot per key; a null value is a tombstone).
        key: what the partition key is, for documentation.

    """

    name: str
    partitions: int
    compacted: bool
    key: str


ROSTER_PROFILE = TopicSpec("roster.volunteer-profile.v1", 6, True, "volunteer_id")
ROSTER_CONTACT = TopicSpec("roster.volunteer-contact.v1", 6, True, "volunteer_id")
ROSTER_TEAM = TopicSpec("roster.team.v1", 3, True, "team_id")
ROSTER_AED = TopicSpec("roster.aed.v1", 3, True, "aed_id")
INCIDENT = TopicSpec("dispatch.incident.v1", 3, False, "incident_id")
CALLOUT = TopicSpec("dispatch.callout.v1", 12, False, "volunteer_id")
DELIVERY = TopicSpec("notify.delivery.v1", 6, False, "volunteer_id")
REPLY = TopicSpec("notify.reply.v1", 6, False, "volunteer_id")

ALL_TOPICS: tuple[TopicSpec, ...] = (
    ROSTER_PROFILE, ROSTER_CONTACT, ROSTER_TEAM, ROSTER_AED, INCIDENT, CALLOUT, DELIVERY, REPLY,
)


def dead_letter(topic: str | TopicSpec) -> str:
    """Name of the dead-letter topic for ``topic`` (``<topic>.dlq``)."""
    name = topic.name if isinstance(topic, TopicSpec) else topic
    return f"{name}.dlq"


async def ensure_topics(bootstrap: str, specs: tuple[TopicSpec, ...] = ALL_TOPICS) -> list[str]:
    """Create the topics (and their dead-letter topics) that do not exist yet.

    Args:
        bootstrap: ``host:port`` of a broker.
        specs: the topics to create.

    Returns:
        Names of the topics created by this call.

    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new: list[NewTopic] = []
        for spec in specs:
            if spec.name not in existing:
                configs = {"cleanup.policy": "compact"} if spec.compacted else {}
                new.append(NewTopic(spec.name, spec.partitions, 1, topic_configs=configs))
            if dead_letter(spec) not in existing:
                new.append(NewTopic(dead_letter(spec), 1, 1))
        if new:
            await admin.create_topics(new)
        return [t.name for t in new]
    finally:
        await admin.close()
