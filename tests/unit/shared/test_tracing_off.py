"""Tracing is off by default: no exporter, no instrumentation, no trace header on events (no I/O)."""

from __future__ import annotations

import pytest
from fastapi import FastAPI

from shared import tracing
from shared.events import IncidentClosed
from shared.outbox import event_headers


def test_off_without_an_otlp_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    app = FastAPI()
    before = len(app.user_middleware)
    assert tracing.instrument(app, "dispatch") is False
    assert len(app.user_middleware) == before
    assert not tracing.enabled()
    headers = event_headers(IncidentClosed.model_validate({"incident_id": "00000000-0000-0000-0000-000000000001",
                                                           "outcome": "filled", "producer": "test"}))
    assert tracing.TRACEPARENT not in headers
