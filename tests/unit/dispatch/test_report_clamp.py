"""Regression (flood drill): time to first acceptance came out negative (-0.27 s)."""

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from services.dispatch.domain.model import CallOutState
from services.dispatch.domain.report import CallOutFact, RequirementFact, incident_figures
from shared.vocabulary import Level


def test_an_acceptance_stamped_with_a_whole_second_is_not_before_its_request():
    opened = datetime(2026, 11, 29, 9, 33, 5, 270000, tzinfo=UTC)
    rid = uuid4()
    requested = opened + timedelta(milliseconds=20)
    reply_time = opened.replace(microsecond=0)  # the provider's whole-second send_time
    figures = incident_figures(
        opened_at=opened,
        requirements=[RequirementFact(rid, 1, 1, Level.VILLAGE, requested + timedelta(seconds=1))],
        callouts=[CallOutFact(rid, Level.VILLAGE, 1, CallOutState.ASSIGNED, requested, reply_time)],
    )
    assert figures["time_to_first_acceptance_s"] == 0.02
