"""The new call-out fields are optional: events written before them still parse (issue 14)."""

from __future__ import annotations

import json
from uuid import uuid4

from shared.events import BroadcastRequested, CallOutAssigned, CallOutRequested, MessageKind, parse_event


def test_an_old_callout_requested_without_meeting_point_parses() -> None:
    old = {"event_type": "CallOutRequested", "producer": "dispatch", "callout_id": str(uuid4()),
           "incident_id": str(uuid4()), "requirement_id": str(uuid4()), "volunteer_id": str(uuid4()), "wave": 1,
           "level": "village", "incident_kind": "drowning", "incident_title": "鉴湖溺水", "place": "鉴湖村",
           "role": "救护员", "reply_code": "A7", "respond_by": "2026-12-03T08:00:00+00:00"}
    e = parse_event(json.dumps(old))
    assert isinstance(e, CallOutRequested)
    assert (e.meeting_point, e.meeting_lat, e.map_url, e.callback_phone) == ("", None, None, None)


def test_an_old_callout_assigned_parses_and_a_broadcast_round_trips() -> None:
    old = {"event_type": "CallOutAssigned", "producer": "dispatch", "callout_id": str(uuid4()),
           "incident_id": str(uuid4()), "volunteer_id": str(uuid4()), "incident_title": "鉴湖溺水", "place": "鉴湖村"}
    e = parse_event(json.dumps(old))
    assert isinstance(e, CallOutAssigned) and e.meeting_point == "" and e.map_url is None
    b = BroadcastRequested(broadcast_id=uuid4(), callout_id=uuid4(), incident_id=uuid4(), volunteer_id=uuid4(),
                           incident_title="鉴湖溺水", text="集合点改到南门", drill=True)
    assert parse_event(b.to_bytes()) == b
    assert {MessageKind.BROADCAST.value, MessageKind.AUTO_ANSWER.value} <= {k.value for k in MessageKind}
