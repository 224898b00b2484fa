"""Composition root of the notify service: settings, routers, consumers, background tasks."""

from __future__ import annotations

from fastapi import FastAPI

from shared.service import ServiceSpec, build_app
from shared.settings import NotifySettings


def create_app(settings: NotifySettings | None = None) -> FastAPI:
    """Build the notify service's app (connects nothing until started)."""
    settings = settings or NotifySettings()  # type: ignore[call-arg]
    spec = ServiceSpec(name="notify", title="muster notify")
    return build_app(spec, settings)
