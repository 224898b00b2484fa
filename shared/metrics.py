"""Prometheus metrics every service and the simulator expose at ``GET /metrics``.

Names and labels follow Prometheus' naming conventions (https://prometheus.io/docs/practices/naming/):
a ``muster_`` prefix, base units (``_seconds``), ``_total`` on counters. No label carries a phone
number, an openid, a volunteer, incident or message id, or a raw URL path: HTTP requests are labelled
with the route template (``/incidents/{incident_id}``), so every label has a small, bounded set of values.

The metrics are module-level objects in the process-wide registry (one process runs one service in
production; tests that run several apps in one process share the series, told apart by ``service``).
Figures that live in PostgreSQL (outbox depth, call-outs by state) are read on scrape by the async
collectors a service registers with :func:`on_scrape`; consumer lag is each running consumer's fetch
position against its partitions' end offsets, asked of the broker on scrape.

Series (labels in braces):

* ``muster_http_requests_total{service,method,route,status_class}``, ``muster_http_request_duration_seconds``
* ``muster_consumer_lag_messages{service,group,topic,partition}`` (gauge, end offset − fetch position)
* ``muster_consumer_events_total{service,group,topic,outcome}`` (outcome: applied | duplicate)
* ``muster_dead_letters_total{service,source,topic}`` (source: the consumer, or ``<service>.outbox-relay``)
* ``muster_outbox_pending_events{service}``, ``muster_outbox_oldest_pending_age_seconds{service}`` (relay lag),
  ``muster_outbox_published_total{service}``, ``muster_outbox_relay_errors_total{service}``
* dispatch: ``muster_dispatch_callouts{state}`` (call-outs of open incidents), ``muster_dispatch_fanout_seconds``,
  ``muster_dispatch_callouts_requested_total``, ``muster_dispatch_ticks_total``,
  ``muster_dispatch_last_tick_timestamp_seconds``, ``muster_dispatch_replies_total``,
  ``muster_dispatch_reply_to_board_seconds``
* notify: ``muster_notify_messages_total{channel,provider,outcome}`` (sent | retry | fallback | failed |
  delivered | undelivered), ``muster_notify_delivery_receipt_seconds{channel,provider}``,
  ``muster_notify_provider_errors_total{provider,code}``, ``muster_notify_messages_waiting{status}``
* simulator: ``muster_simulator_messages_total{provider}`` plus the HTTP series (service ``simulator``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from shared.logging import get_logger

__all__ = [
    "CONSUMER_EVENTS",
    "ServiceView",
    "DEAD_LETTERS",
    "DISPATCH_CALLOUTS",
    "DISPATCH_CALLOUTS_REQUESTED",
    "DISPATCH_FANOUT_SECONDS",
    "DISPATCH_LAST_TICK",
    "DISPATCH_REPLIES",
    "DISPATCH_REPLY_SECONDS",
    "DISPATCH_TICKS",
    "HTTP_REQUESTS",
    "HTTP_SECONDS",
    "NOTIFY_MESSAGES",
    "NOTIFY_PROVIDER_ERRORS",
    "NOTIFY_RECEIPT_SECONDS",
    "NOTIFY_WAITING",
    "OUTBOX_OLDEST_SECONDS",
    "OUTBOX_PENDING",
    "OUTBOX_PUBLISHED",
    "OUTBOX_RELAY_ERRORS",
    "SIMULATOR_MESSAGES",
    "HttpMetricsMiddleware",
    "install_metrics",
    "on_scrape",
    "register_lag_source",
]

log = get_logger(__name__)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_SLOW_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

HTTP_REQUESTS = Counter(
    "muster_http_requests_total", "HTTP requests answered, by route template and status class (2xx, 4xx, 5xx).",
    ["service", "method", "route", "status_class"],
)
HTTP_SECONDS = Histogram(
    "muster_http_request_duration_seconds", "Time from request to the response's start, by route template.",
    ["service", "method", "route"], buckets=_LATENCY_BUCKETS,
)
CONSUMER_EVENTS = Counter(
    "muster_consumer_events_total", "Events a consumer took from Kafka: applied, or skipped as a duplicate.",
    ["service", "group", "topic", "outcome"],
)
DEAD_LETTERS = Counter(
    "muster_dead_letters_total", "Records set aside in dead_letters (a consumer's poison record, or an "
    "event the broker refused from the outbox).", ["service", "source", "topic"],
)
OUTBOX_PUBLISHED = Counter("muster_outbox_published_total", "Outbox rows the relay published.", ["service"])
OUTBOX_RELAY_ERRORS = Counter(
    "muster_outbox_relay_errors_total", "Relay rounds that failed (broker or database down) and backed off.",
    ["service"],
)
OUTBOX_PENDING = Gauge("muster_outbox_pending_events", "Outbox rows not yet published (read on scrape).", ["service"])
OUTBOX_OLDEST_SECONDS = Gauge(
    "muster_outbox_oldest_pending_age_seconds", "Age of the oldest unpublished outbox row; 0 when drained "
    "(the relay's lag, read on scrape).", ["service"],
)
DISPATCH_CALLOUTS = Gauge(
    "muster_dispatch_callouts", "Call-outs of open incidents by state (read from PostgreSQL on scrape).", ["state"],
)
DISPATCH_CALLOUTS_REQUESTED = Counter(
    "muster_dispatch_callouts_requested_total", "Call-outs written (CallOutRequested events), all waves."
)
DISPATCH_FANOUT_SECONDS = Histogram(
    "muster_dispatch_fanout_seconds", "Time to select and write one wave of call-outs (in the transaction).",
    buckets=_LATENCY_BUCKETS,
)
DISPATCH_TICKS = Counter("muster_dispatch_ticks_total", "Deadline ticker rounds that completed.")
DISPATCH_LAST_TICK = Gauge(
    "muster_dispatch_last_tick_timestamp_seconds", "Unix time of the deadline ticker's last completed round."
)
DISPATCH_REPLY_SECONDS = Histogram(
    "muster_dispatch_reply_to_board_seconds", "From a reply's arrival at notify (received_at) to its application "
    "to the call-out in dispatch.", buckets=_LATENCY_BUCKETS,
)
DISPATCH_REPLIES = Counter("muster_dispatch_replies_total", "Volunteers' replies dispatch took in: applied to their call-out, or kept as unmatched.")
NOTIFY_MESSAGES = Counter(
    "muster_notify_messages_total", "Message outcomes: sent (provider accepted), retry, fallback (to another "
    "channel), failed, delivered and undelivered (delivery receipts).", ["channel", "provider", "outcome"],
)
NOTIFY_RECEIPT_SECONDS = Histogram(
    "muster_notify_delivery_receipt_seconds", "From the provider's acceptance (sent_at) to the delivery "
    "receipt's report time.", ["channel", "provider"], buckets=_SLOW_BUCKETS,
)
NOTIFY_PROVIDER_ERRORS = Counter(
    "muster_notify_provider_errors_total", "Sends a provider refused, by the provider's error code "
    "(e.g. isv.BUSINESS_LIMIT_CONTROL, 43004).", ["provider", "code"],
)
NOTIFY_WAITING = Gauge(
    "muster_notify_messages_waiting", "Messages not yet sent: pending or sending (read on scrape).", ["status"],
)
SIMULATOR_MESSAGES = Counter(
    "muster_simulator_messages_total", "Messages the simulated providers delivered to a phone.", ["provider"],
)

ScrapeHook = Callable[[], Awaitable[None]]


class HttpMetricsMiddleware:
    """ASGI middleware counting requests by route template; one counter and one histogram observation each.

    The route is the matched route's template (FastAPI stores the route in ``scope["route"]``), or
    ``unmatched`` for a 404 outside every route: a scanner's random paths add no series.
    """

    def __init__(self, app: Any, service: str) -> None:
        self.app = app
        self.service = service
        # the labelled children, looked up once per (method, route, status class): labels() costs ~3 µs
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        answered = False

        def count(status: int) -> None:
            template = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope.get("method", "GET")
            key = (method, template, status // 100)
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = (HTTP_SECONDS.labels(self.service, method, template),
                                              HTTP_REQUESTS.labels(self.service, method, template, f"{key[2]}xx"))
            series[0].observe(time.perf_counter() - started)
            series[1].inc()

        async def sending(message: dict[str, Any]) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                answered = True
                count(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            if not answered:  # an unhandled error: the server answers 500 outside this middleware
                count(500)
            raise


class _LagCollector(Collector):
    """``muster_consumer_lag_messages`` from every registered source, computed at scrape time."""

    def __init__(self) -> None:
        self.sources: list[Callable[[], Iterable[tuple[str, str, str, int, int]]]] = []

    def describe(self) -> Iterable[GaugeMetricFamily]:
        yield self._family()

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = self._family()
        for source in list(self.sources):
            try:
                for service, group, topic, partition, lag in source():
                    family.add_metric([service, group, topic, str(partition)], lag)
            except Exception as exc:  # a consumer mid-rebalance: its partitions are missing this scrape
                log.debug("metrics.lag_unavailable", error=repr(exc))
        yield family

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "muster_consumer_lag_messages", "Records behind the partition's end, per consumer group and partition "
            "this process is assigned (end offset at scrape − fetch position).",
            labels=["service", "group", "topic", "partition"],
        )


_LAG = _LagCollector()
REGISTRY.register(_LAG)


def register_lag_source(source: Callable[[], Iterable[tuple[str, str, str, int, int]]]) -> Callable[[], None]:
    """Add a source of ``(service, group, topic, partition, lag)``; returns a function that removes it."""
    _LAG.sources.append(source)

    def remove() -> None:
        if source in _LAG.sources:
            _LAG.sources.remove(source)

    return remove


def on_scrape(app: FastAPI, hook: ScrapeHook) -> None:
    """Run ``hook`` (async, e.g. a PostgreSQL count setting a gauge) before each ``/metrics`` answer."""
    hooks: list[ScrapeHook] | None = getattr(app.state, "metrics_hooks", None)
    if hooks is None:
        hooks = app.state.metrics_hooks = []
    hooks.append(hook)


_SERVICES = ("roster", "dispatch", "notify", "simulator")


class ServiceView:
    """The process registry as one service exposes it: the shared series and its own ``muster_<service>_*``.

    The series are module-level objects, so every process that imports this module has every service's
    families; without the view roster answered ``muster_dispatch_ticks_total 0``, which tells an
    administrator reading it something false. ``collect`` is what ``generate_latest`` calls.
    """

    def __init__(self, service: str, registry: Any = REGISTRY) -> None:
        self._service = service
        self._registry = registry

    def collect(self) -> Iterable[Any]:
        for family in self._registry.collect():
            owner = next((s for s in _SERVICES if family.name.startswith(f"muster_{s}_")), None)
            if owner is None or owner == self._service:
                yield family


def install_metrics(app: FastAPI, service: str, *, scrape_timeout: float = 5.0) -> None:
    """Add the HTTP middleware and ``GET /metrics`` (Prometheus text format 0.0.4) to ``app``.

    The answer holds the shared series and ``service``'s own (:class:`ServiceView`).

    The scrape hooks run concurrently, each bounded by ``scrape_timeout`` seconds; one that fails or times
    out leaves its gauges at their last value (logged), so a database restart never fails the scrape.
    """
    app.add_middleware(HttpMetricsMiddleware, service=service)
    view = ServiceView(service)

    @app.get("/metrics", tags=["health"], include_in_schema=False)
    async def metrics() -> Response:
        hooks: list[ScrapeHook] = getattr(app.state, "metrics_hooks", [])
        results = await asyncio.gather(*(asyncio.wait_for(h(), scrape_timeout) for h in hooks), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                log.warning("metrics.scrape_hook_failed", error=repr(result))
        return Response(generate_latest(view), media_type=CONTENT_TYPE_LATEST)
