"""One trace from the operator's request to the consumer: HTTP → outbox → relay → Kafka → consumer.

Tracing is on only for this module: an SDK tracer provider with an in-memory exporter is installed (and
the global provider and httpx instrumentation put back afterwards, so other tests run untraced, as
production does without ``OTEL_EXPORTER_OTLP_ENDPOINT``). Real PostgreSQL and Kafka.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from faststream.kafka import KafkaBroker
from opentelemetry import trace
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once

from services.dispatch.units import units
from shared import tracing
from shared.consumer import IdempotentConsumer, Received
from shared.topics import CALLOUT
from tests.conftest import StackAddresses

from .conftest import (
    DispatchDb,
    a_town_with_villages,
    add_volunteers,
    dispatch_schema,
    running_app,
    start_groups_at_end,
    token,
    wait_for,
)


def _reset_global_provider() -> None:
    trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]  # noqa: SLF001 - test isolation
    trace._TRACER_PROVIDER_SET_ONCE = Once()  # type: ignore[attr-defined]  # noqa: SLF001


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    assert not tracing.enabled(), "tracing must be off by default"
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    _reset_global_provider()
    trace.set_tracer_provider(provider)
    try:
        yield exporter
    finally:
        if HTTPXClientInstrumentor().is_instrumented_by_opentelemetry:
            HTTPXClientInstrumentor().uninstrument()
        _reset_global_provider()
        assert not tracing.enabled()


@pytest.fixture(scope="module")
async def dispatch_db(stack: StackAddresses) -> AsyncIterator[DispatchDb]:
    async with dispatch_schema(stack) as db:
        yield db


async def test_one_trace_from_http_through_the_outbox_and_kafka_to_the_consumer(
    spans: InMemorySpanExporter, dispatch_db: DispatchDb,
) -> None:
    db = dispatch_db
    _, villages = a_town_with_villages(1, index=17)
    vols = await add_volunteers(db, villages[0], 2)
    lat, lon = units().centres[villages[0][:9]]

    # a consumer of the real call-out topic, in a group of its own started at the topic's end
    seen: dict[str, Any] = {}

    async def handler(conn: Any, item: Received) -> None:
        if getattr(item, "volunteer_id", None) in vols:
            seen.setdefault("trace_ids", set()).add(trace.get_current_span().get_span_context().trace_id)

    async def no_dead_letters(*_: Any) -> None:
        raise AssertionError("nothing should be dead-lettered")

    group = f"trace-test-{uuid.uuid4().hex[:8]}"
    await start_groups_at_end(db.bootstrap, {group: CALLOUT})
    consumer = IdempotentConsumer(name=group, topic=CALLOUT, handler=handler, pool=lambda: db.pool,
                                  dead_letters=no_dead_letters)
    broker = KafkaBroker(db.bootstrap)
    consumer.attach(broker)
    await broker.start()
    try:
        async with running_app(db, consumers=()) as client:
            r = await client.post("/incidents", headers=await token(db), json={
                "kind": "fall", "title": "测试", "lat": lat, "lon": lon, "unit_code": villages[0], "mode": "emergency",
                "requirements": [{"skill": "first_aid", "count": 1}]})
            assert r.status_code == 201, r.text
            await wait_for(lambda: seen.get("trace_ids"), timeout=60)
    finally:
        await broker.stop()

    finished = spans.get_finished_spans()
    server = [s for s in finished if s.kind is trace.SpanKind.SERVER and s.attributes
              and s.attributes.get("http.route") == "/incidents"]
    assert len(server) == 1, [s.name for s in finished]
    trace_id = server[0].context.trace_id
    produced = [s for s in finished if s.kind is trace.SpanKind.PRODUCER and s.name == f"{CALLOUT.name} publish"
                and s.context.trace_id == trace_id]
    consumed = [s for s in finished if s.kind is trace.SpanKind.CONSUMER and s.name == f"{CALLOUT.name} process"
                and s.context.trace_id == trace_id]
    assert produced, "the relay's publish is not in the request's trace"
    assert consumed, "the consumer's batch is not in the request's trace"
    # the consumer span is the child of a publish span (its record's), the publish spans children within the trace
    assert {s.parent.span_id for s in consumed if s.parent} <= {s.context.span_id for s in produced}
    ids_in_trace = {s.context.span_id for s in finished if s.context.trace_id == trace_id}
    assert all(s.parent is not None and s.parent.span_id in ids_in_trace for s in produced)
    # and the handler ran inside that trace
    assert seen["trace_ids"] == {trace_id}
