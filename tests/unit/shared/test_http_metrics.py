"""HTTP request metrics: route templates (never raw paths), status classes, unhandled errors counted (no I/O)."""

from __future__ import annotations

import httpx
from fastapi import FastAPI, HTTPException

from shared.metrics import HTTP_REQUESTS, install_metrics


def count(service: str, method: str, route: str, status_class: str) -> float:
    return HTTP_REQUESTS.labels(service, method, route, status_class)._value.get()  # type: ignore[attr-defined]


async def test_requests_are_counted_by_route_template_and_status_class() -> None:
    app = FastAPI()
    install_metrics(app, "unit-http")

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, str]:
        if item_id == "missing":
            raise HTTPException(404)
        if item_id == "bug":
            raise RuntimeError("bug")
        return {"id": item_id}

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/items/13900001111")).status_code == 200
        assert (await client.get("/items/missing")).status_code == 404
        assert (await client.get("/items/bug")).status_code == 500
        assert (await client.get("/no/such/path")).status_code == 404
        text = (await client.get("/metrics")).text
    assert count("unit-http", "GET", "/items/{item_id}", "2xx") == 1
    assert count("unit-http", "GET", "/items/{item_id}", "4xx") == 1
    assert count("unit-http", "GET", "/items/{item_id}", "5xx") == 1
    assert count("unit-http", "GET", "unmatched", "4xx") == 1
    assert "13900001111" not in text and "/no/such/path" not in text


async def test_each_service_exposes_the_shared_series_and_only_its_own() -> None:
    """Regression: roster answered ``muster_dispatch_ticks_total 0`` (every family lives in one module)."""

    async def scrape(service: str) -> set[str]:
        app = FastAPI()
        install_metrics(app, service)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            text = (await client.get("/metrics")).text
        return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line.startswith("muster_")}

    roster, dispatch, notify = await scrape("roster"), await scrape("dispatch"), await scrape("notify")
    assert not [n for n in roster if n.startswith(("muster_dispatch_", "muster_notify_", "muster_simulator_"))]
    assert "muster_dispatch_ticks_total" in dispatch and not [n for n in dispatch if n.startswith("muster_notify_")]
    assert {"muster_http_requests_total", "muster_dispatch_ticks_total"} & notify == {"muster_http_requests_total"}
