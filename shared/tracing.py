"""OpenTelemetry traces across HTTP and Kafka: off by default, OTLP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.

One trace follows an operator's request: the FastAPI server span (opentelemetry-instrumentation-fastapi),
the events its transaction writes to the outbox (the W3C ``traceparent`` of the current span is stored in
the row's headers, :func:`inject`), the relay's publish (a producer span per traced row, child of the stored
context, whose own context replaces it in the Kafka record headers), and the consumer's batch (a consumer
span, child of the first traced record, linked to the others). Outgoing provider calls are httpx client
spans (opentelemetry-instrumentation-httpx).

Off (no exporter configured, the API's no-op provider): :func:`enabled` is False, nothing is instrumented and
no header is read or written, so the hot paths pay nothing. On: :func:`configure_tracing` installs an SDK
provider exporting over OTLP/HTTP (``OTEL_EXPORTER_OTLP_ENDPOINT``, e.g. ``http://collector:4318``; the
other ``OTEL_*`` variables of the OpenTelemetry specification apply). Tests install their own SDK provider
with an in-memory exporter; that also turns tracing on.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager

from fastapi import FastAPI
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider

__all__ = [
    "TRACEPARENT",
    "configure_tracing",
    "consumer_span",
    "contexts",
    "enabled",
    "extract",
    "inject",
    "instrument",
    "producer_headers",
    "record_context",
    "tracer",
]

TRACEPARENT = "traceparent"  # W3C Trace Context header (https://www.w3.org/TR/trace-context/)


def enabled() -> bool:
    """True when an SDK tracer provider is installed (by :func:`configure_tracing` or a test)."""
    return isinstance(trace.get_tracer_provider(), TracerProvider)


def configure_tracing(service: str) -> bool:
    """Install the OTLP exporter when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set; returns :func:`enabled`.

    Idempotent; a provider already installed (a test's) is kept.
    """
    if not enabled() and os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider(resource=Resource.create({"service.name": f"muster-{service}"}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
    return enabled()


def tracer() -> trace.Tracer:
    return trace.get_tracer("muster")


def inject(headers: MutableMapping[str, str]) -> None:
    """Add the current span's ``traceparent`` (and ``tracestate``) to ``headers`` when tracing is on."""
    if enabled() and trace.get_current_span().get_span_context().is_valid:
        propagate.inject(headers)


def extract(headers: Mapping[str, str]) -> Context:
    """The context carried by ``headers`` (an empty context when they carry none)."""
    return propagate.extract(headers)


def record_context(headers: Sequence[tuple[str, bytes]]) -> Context | None:
    """The trace context of a Kafka record's headers, or None when it carries no ``traceparent``."""
    carrier = {k: v.decode(errors="replace") for k, v in headers if k in (TRACEPARENT, "tracestate")}
    return extract(carrier) if TRACEPARENT in carrier else None


def contexts(all_headers: Iterable[Sequence[tuple[str, bytes]]]) -> list[Context]:
    """The trace contexts of records, in order, skipping those without one."""
    return [c for h in all_headers if (c := record_context(h)) is not None]


def producer_headers(topic: str, partition: int, headers: Mapping[str, object]) -> list[tuple[str, bytes]]:
    """A traced outbox row's Kafka headers: a producer span, child of the row's stored context, replaces it.

    The span covers handing the record to the producer (the relay waits for the broker's acknowledgement
    of the whole round afterwards).
    """
    carrier = {k: str(v) for k, v in headers.items() if k not in (TRACEPARENT, "tracestate")}
    parent = extract({k: str(v) for k, v in headers.items()})
    with tracer().start_as_current_span(
        f"{topic} publish", context=parent, kind=trace.SpanKind.PRODUCER,
        attributes={"messaging.system": "kafka", "messaging.destination.name": topic,
                    "messaging.destination.partition.id": str(partition), "messaging.operation.type": "send"},
    ):
        propagate.inject(carrier)
    return [(k, v.encode()) for k, v in carrier.items()]


def consumer_span(
    topic: str, group: str, headers: Iterable[Sequence[tuple[str, bytes]]], count: int
) -> AbstractContextManager[object]:
    """A consumer span for one batch: child of its first traced record, linked to the other traced ones.

    A no-op context manager when tracing is off or no record of the batch carries a context.
    """
    if not enabled():
        return contextlib.nullcontext()
    found = contexts(headers)
    if not found:
        return contextlib.nullcontext()
    links = [trace.Link(trace.get_current_span(c).get_span_context()) for c in found[1:33]]
    return tracer().start_as_current_span(
        f"{topic} process", context=found[0], kind=trace.SpanKind.CONSUMER, links=links,
        attributes={"messaging.system": "kafka", "messaging.destination.name": topic,
                    "messaging.consumer.group.name": group, "messaging.batch.message_count": count,
                    "messaging.operation.type": "process"},
    )


def instrument(app: FastAPI, service: str) -> bool:
    """Trace ``app``'s requests (server spans) and every httpx client's (provider calls) when tracing is on.

    Returns whether tracing is on; off, nothing is instrumented (no middleware, no per-request cost).
    """
    if not configure_tracing(service):
        return False
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    FastAPIInstrumentor.instrument_app(app, excluded_urls="/metrics,/health/live,/health/ready")
    instrumentor = HTTPXClientInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()
    return True
