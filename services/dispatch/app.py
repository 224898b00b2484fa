"""Composition root of the dispatch service: settings, routers, consumers, background tasks."""

from __future__ import annotations

from fastapi import FastAPI

from shared.service import ServiceSpec, build_app
from shared.settings import DispatchSettings


def create_app(settings: DispatchSettings | None = None) -> FastAPI:
    """Build the dispatch service's app (connects nothing until started)."""
    settings = settings or DispatchSettings()  # type: ignore[call-arg]
    spec = ServiceSpec(name="dispatch", title="muster dispatch")
    return build_app(spec, settings)
