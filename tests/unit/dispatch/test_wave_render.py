"""A wave's CallOutRequested events rendered from one serialized template are the bytes pydantic would write.

:class:`services.dispatch.usecases._CallOutRenderer` serializes a wave's template once and puts each
call-out's ids and reply code between the pieces; every consumer parses those bytes, so they must
equal ``model_copy(update=…).to_bytes()`` for any title, place, team or code — including free text
that happens to contain a sentinel (the renderer then serializes per event).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from hypothesis import given, settings
from hypothesis import strategies as st

from services.dispatch.usecases import _CallOutRenderer
from shared.events import CallOutRequested, parse_event
from shared.vocabulary import Level

T0 = datetime(2026, 7, 1, 4, 0, tzinfo=UTC)
CODES = st.from_regex(r"[A-Z][0-9]{1,2}", fullmatch=True)


def _template(title: str, place: str, team: UUID | None, causation: UUID | None, drill: bool) -> CallOutRequested:
    incident = uuid4()
    return CallOutRequested(
        callout_id=uuid4(), incident_id=incident, requirement_id=uuid4(), volunteer_id=uuid4(), team_id=team,
        wave=2, level=Level.TOWN, incident_kind="溺水", incident_title=title, place=place, role="救护员",
        reply_code="00", respond_by=T0 + timedelta(seconds=600), occurred_at=T0, correlation_id=incident,
        causation_id=causation, drill=drill,
    )


@settings(max_examples=200, deadline=None)
@given(
    title=st.text(min_size=1, max_size=40) | st.sampled_from(['~reply-code~', '100% 到场 %s', '"00000000-0000-0000-0000-000000000002"']),
    place=st.text(max_size=20),
    teams=st.booleans(),
    causation=st.none() | st.uuids(),
    drill=st.booleans(),
    codes=st.lists(CODES, min_size=1, max_size=5),
)
def test_rendered_events_equal_pydantic_serialization(
    title: str, place: str, teams: bool, causation: UUID | None, drill: bool, codes: list[str]
) -> None:
    template = _template(title, place, uuid4() if teams else None, causation, drill)
    render = _CallOutRenderer(template)
    for code in codes:
        ids = (uuid4(), uuid4(), uuid4(), uuid4() if teams else None)
        expected = template.model_copy(update={
            "event_id": ids[0], "callout_id": ids[1], "volunteer_id": ids[2], "team_id": ids[3], "reply_code": code,
        })
        got = render(*ids, code)
        assert got == expected.to_bytes()
        assert parse_event(got) == expected


def test_a_title_holding_a_sentinel_falls_back_to_per_event_serialization() -> None:
    template = _template("~reply-code~", "鉴湖", None, None, True)  # the whole title is the code's sentinel
    render = _CallOutRenderer(template)
    assert render._parts is None
    ids = (uuid4(), uuid4(), uuid4(), None)
    event = parse_event(render(*ids, "K7"))
    assert isinstance(event, CallOutRequested)
    assert (event.event_id, event.callout_id, event.volunteer_id, event.team_id, event.reply_code) == (*ids, "K7")
    assert event.incident_title == "~reply-code~"


def test_an_ordinary_title_uses_the_template() -> None:
    assert _CallOutRenderer(_template("柯桥区鉴湖溺水", "鉴湖", uuid4(), uuid4(), False))._parts is not None

