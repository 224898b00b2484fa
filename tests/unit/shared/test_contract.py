import json
import typing
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from shared import events as ev
from shared.asyncapi import ASYNCAPI_PATH, EVENTS_BY_TOPIC, asyncapi_document
from shared.topics import ALL_TOPICS


def _all_event_classes() -> list[type[ev.Event]]:
    union = typing.get_args(ev.AnyEvent)[0]
    return list(typing.get_args(union))


def test_every_event_is_frozen_forbids_extra_and_round_trips():
    e = ev.IncidentClosed(incident_id=uuid.uuid4(), outcome="rescued", drill=True)
    with pytest.raises(ValidationError):
        e.outcome = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        ev.IncidentClosed(incident_id=uuid.uuid4(), outcome="x", unexpected=1)  # type: ignore[call-arg]
    back = ev.parse_event(e.to_bytes())
    assert back == e and isinstance(back, ev.IncidentClosed) and back.drill is True


def test_occurred_at_is_utc_and_must_be_aware():
    shanghai = timezone(timedelta(hours=8))
    e = ev.IncidentClosed(incident_id=uuid.uuid4(), outcome="x", occurred_at=datetime(2026, 1, 1, 8, tzinfo=shanghai))
    assert e.occurred_at == datetime(2026, 1, 1, 0, tzinfo=UTC) and e.occurred_at.tzinfo == UTC
    with pytest.raises(ValidationError):
        ev.IncidentClosed(incident_id=uuid.uuid4(), outcome="x", occurred_at=datetime(2026, 1, 1))


def test_unknown_type_and_bad_json_are_validation_errors():
    with pytest.raises(ValidationError):
        ev.parse_event(b'{"event_type": "Nope"}')
    with pytest.raises(ValidationError):
        ev.parse_event(b"{not json")


def test_profile_event_has_no_contact_fields():
    fields = set(ev.VolunteerProfileUpdated.model_fields)
    assert not fields & {"mobile", "phone", "wechat_openid", "openid"}


def test_every_event_is_on_exactly_one_topic_and_every_topic_has_events():
    mapped = [m for models in EVENTS_BY_TOPIC.values() for m in models]
    assert sorted(c.__name__ for c in mapped) == sorted(c.__name__ for c in _all_event_classes())
    assert set(EVENTS_BY_TOPIC) == set(ALL_TOPICS)


def test_asyncapi_document_is_in_step_with_the_models():
    generated = asyncapi_document()
    committed = json.loads(ASYNCAPI_PATH.read_text(encoding="utf-8"))
    assert generated == committed, "run `muster contract asyncapi --write` and commit docs/asyncapi.json"
    schemas = generated["components"]["schemas"]
    for cls in _all_event_classes():
        assert cls.__name__ in schemas
        assert set(schemas[cls.__name__]["properties"]) == set(cls.model_fields)
    assert {spec.name for spec in ALL_TOPICS} <= set(generated["channels"])
