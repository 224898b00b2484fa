"""Composition root of the roster service: settings, routers, consumers, background tasks."""

from __future__ import annotations

from fastapi import FastAPI

from shared.service import ServiceSpec, build_app
from shared.settings import RosterSettings


def create_app(settings: RosterSettings | None = None) -> FastAPI:
    """Build the roster service's app (connects nothing until started)."""
    settings = settings or RosterSettings()  # type: ignore[call-arg]
    spec = ServiceSpec(name="roster", title="muster roster")
    return build_app(spec, settings)
