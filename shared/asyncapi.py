"""The event contract published as an AsyncAPI 3.0 document, generated from the code by FastStream.

:data:`EVENTS_BY_TOPIC` says which events travel on which topic; :func:`asyncapi_document`
builds a FastStream broker whose publishers carry those pydantic models and renders the
specification. ``docs/asyncapi.json`` is this output, regenerated with ``muster contract
asyncapi --write``; a test keeps the two in step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Union

from shared import events as ev
from shared import topics

__all__ = ["ASYNCAPI_PATH", "EVENTS_BY_TOPIC", "asyncapi_document"]

ASYNCAPI_PATH = Path(__file__).resolve().parent.parent / "docs" / "asyncapi.json"

EVENTS_BY_TOPIC: dict[topics.TopicSpec, tuple[type[ev.Event], ...]] = {
    topics.ROSTER_PROFILE: (ev.VolunteerProfileUpdated,),
    topics.ROSTER_CONTACT: (ev.VolunteerContactUpdated,),
    topics.ROSTER_TEAM: (ev.TeamUpdated,),
    topics.ROSTER_AED: (ev.AedUpdated,),
    topics.INCIDENT: (ev.IncidentOpened, ev.IncidentEscalated, ev.RequirementFilled, ev.RequirementUnfilled,
                      ev.IncidentClosed, ev.MeetingPointChanged),
    topics.CALLOUT: (ev.CallOutRequested, ev.CallOutAssigned, ev.CallOutCancelled, ev.BroadcastRequested),
    topics.DELIVERY: (ev.MessageSent, ev.MessageDelivered, ev.MessageFailed),
    topics.REPLY: (ev.ReplyReceived,),
}


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI document of every topic and event, as a JSON-able dict."""
    from faststream import FastStream
    from faststream.kafka import KafkaBroker
    from faststream.specification import AsyncAPI

    broker = KafkaBroker("kafka:9092", description="Apache Kafka; topics and keys in shared/topics.py")
    for spec, models in EVENTS_BY_TOPIC.items():
        schema: Any = models[0] if len(models) == 1 else Union[models]  # noqa: UP007 - a runtime union of classes
        broker.publisher(
            spec.name,
            title=spec.name,
            description=(
                f"Key: {spec.key}. Partitions: {spec.partitions}. "
                f"{'Compacted (a null value is a tombstone). ' if spec.compacted else ''}"
                f"Events: {', '.join(m.__name__ for m in models)}. Dead letters: {topics.dead_letter(spec)}."
            ),
            schema=schema,
        )
    app = FastStream(broker, specification=AsyncAPI(title="muster events", version="1", description=__doc__))
    result: dict[str, Any] = json.loads(app.schema.to_specification().to_json())
    return result
