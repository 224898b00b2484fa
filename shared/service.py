"""The runtime every service shares: FastAPI app, Kafka broker, pool, outbox relay, health.

A service's composition root (``services/<name>/app.py``) describes itself with a
:class:`ServiceSpec` (its routers, its consumers, its background tasks) and calls
:func:`build_app`. At start the lifespan, in order: configures logging, runs the service's
migrations, opens the asyncpg pool, starts the outbox relay, starts the FastStream broker with the
consumers, and starts background tasks; it stops them in reverse order.

Metrics: ``GET /metrics`` (Prometheus text; :mod:`shared.metrics`): HTTP requests by route template,
consumer lag and events, outbox depth and relay lag, dead letters, and the service's own ``scrape`` hooks.

Health: ``GET /health/live`` (the process answers) and ``GET /health/ready`` (PostgreSQL answers
``SELECT 1`` and the Kafka producer is connected), 200 or 503 with the failing check named.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from fastapi import APIRouter, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from faststream.kafka import KafkaBroker
from pydantic import BaseModel

from shared import tracing
from shared.consumer import TRANSIENT_ERRORS, IdempotentConsumer, is_transient
from shared.db import create_pool, upgrade_async
from shared.http_errors import error_responses
from shared.limits import DEFAULT_BODY_LIMIT, BodyLimit
from shared.logging import configure_logging, get_logger
from shared.metrics import (
    OUTBOX_OLDEST_SECONDS,
    OUTBOX_PENDING,
    install_metrics,
    on_scrape,
    register_lag_source,
)
from shared.outbox import OutboxRelay
from shared.settings import ServiceSettings

__all__ = ["Runtime", "ServiceSpec", "build_app"]

log = get_logger(__name__)
#: Errors of a value the database cannot hold: answered 422 (see :func:`build_app`).
UNSTORABLE_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.CharacterNotInRepertoireError, asyncpg.UntranslatableCharacterError,
    asyncpg.NumericValueOutOfRangeError, asyncpg.InvalidTextRepresentationError, UnicodeEncodeError,
)


def _encodable(value: Any) -> Any:
    """``value`` JSON can carry: strings UTF-8 encodable (unpaired surrogates as escapes), NaN/infinity as text."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {_encodable(k): _encodable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encodable(v) for v in value]
    return value


@dataclass
class Runtime:
    """What a running service holds; handlers reach it through ``request.app.state.runtime``."""

    settings: ServiceSettings
    broker: KafkaBroker
    pool: asyncpg.Pool | None = None
    relay: OutboxRelay | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)

    def require_pool(self) -> asyncpg.Pool:
        if self.pool is None:
            raise RuntimeError("the database pool is not open yet")
        return self.pool


@dataclass
class ServiceSpec:
    """A service's description for :func:`build_app`.

    Attributes:
        name: ``roster``, ``dispatch`` or ``notify`` (its migrations live in ``services/<name>/migrations``).
        routers: FastAPI routers of its HTTP API.
        consumers: factories of its idempotent consumers, given the runtime.
        background: coroutine functions run as tasks for the service's lifetime (e.g. dispatch's deadline
            ticker); ``asyncio.create_task`` takes a coroutine, not any awaitable.
        on_start: awaited after the pool opens and before consumers start (e.g. to build adapters).
        on_stop: awaited at shutdown before the pool closes.
        scrape: coroutine functions awaited before each ``/metrics`` answer (gauges read from PostgreSQL).
        body_limit: bytes a request body may have (413 beyond; :class:`shared.limits.BodyLimit`).
        body_limits: path prefix → bytes, for routes that take more or less than ``body_limit``.

    """

    name: str
    title: str
    routers: Sequence[APIRouter] = ()
    consumers: Sequence[Callable[[Runtime], IdempotentConsumer]] = ()
    background: Sequence[Callable[[Runtime], Coroutine[Any, Any, None]]] = ()
    on_start: Callable[[Runtime], Awaitable[None]] | None = None
    on_stop: Callable[[Runtime], Awaitable[None]] | None = None
    pool_max_size: int = 10
    scrape: Sequence[Callable[[Runtime], Awaitable[None]]] = ()
    body_limit: int = DEFAULT_BODY_LIMIT
    body_limits: Mapping[str, int] = field(default_factory=dict)


class Readiness(BaseModel):
    """``GET /health/ready``: ``status`` ok | unavailable, and each dependency's check (ok or the error)."""

    status: str
    checks: dict[str, str]


def build_app(spec: ServiceSpec, settings: ServiceSettings, *, migrate: bool = True) -> FastAPI:
    """Build the service's FastAPI app; nothing connects until the app starts (no I/O at import)."""
    # Per-message "Received/Processed" records at DEBUG: a fan-out of 10,000 must not flood the log.
    broker = KafkaBroker(
        settings.kafka_bootstrap_servers, client_id=spec.name, enable_idempotence=True, log_level=logging.DEBUG
    )
    runtime = Runtime(settings=settings, broker=broker)

    async def dead_letters(topic: str, value: bytes | None, key: bytes | None, headers: dict[str, str]) -> None:
        await broker.publish(value or b"", topic, key=key, headers=headers)

    consumers = [factory(runtime) for factory in spec.consumers]
    for consumer in consumers:
        consumer._dead_letters = dead_letters  # noqa: SLF001 - wired here, the composition root
        consumer.service = spec.name
        consumer.attach(broker, max_records=settings.consumer_max_records)
    runtime.extras["consumers"] = consumers

    def lags() -> list[tuple[str, str, str, int, int]]:
        return [(c.service, c.name, c.topic.name, p, lag) for c in consumers for p, lag in c.partition_lags()]

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(level=settings.log_level, service=spec.name)
        if migrate:
            await upgrade_async(spec.name, settings.dsn)
        runtime.pool = await create_pool(settings.dsn, max_size=spec.pool_max_size)
        runtime.relay = OutboxRelay(
            runtime.pool, settings.kafka_bootstrap_servers, name=spec.name, batch_size=settings.outbox_batch_size
        )
        runtime.tasks.append(asyncio.create_task(runtime.relay.run(), name=f"{spec.name}-outbox-relay"))
        if spec.on_start:
            await spec.on_start(runtime)
        await broker.start()
        for job in spec.background:
            runtime.tasks.append(asyncio.create_task(job(runtime), name=f"{spec.name}-{job.__name__}"))
        unregister_lags = register_lag_source(lags)
        log.info("service.started", port=settings.http_port)
        try:
            yield
        finally:
            for task in reversed(runtime.tasks):
                task.cancel()
            for task in runtime.tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            runtime.tasks.clear()
            unregister_lags()
            await broker.stop()
            if spec.on_stop:
                await spec.on_stop(runtime)
            if runtime.relay:
                await runtime.relay.stop()
            await runtime.pool.close()
            log.info("service.stopped")

    # Any route may meet a restarting database or broker (the handler below): 503 is documented for all.
    app = FastAPI(title=spec.title, lifespan=lifespan, responses=error_responses(503))
    app.state.runtime = runtime

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        # The database or broker is restarting: a 503 with Retry-After (RFC 9110 §15.6.4) tells a provider's
        # callback, an operator's console or a volunteer's reply page to try again, where a 500 says "bug".
        if not is_transient(exc):
            raise exc  # a bug of the same class (asyncpg's ProtocolError): the 500 it is
        log.warning("http.unavailable", path=request.url.path, error=type(exc).__name__)
        return JSONResponse({"error": "unavailable", "retry_after_seconds": 2}, status_code=503,
                            headers={"Retry-After": "2"})

    app.add_middleware(BodyLimit, default=spec.body_limit, limits=spec.body_limits)
    install_metrics(app, spec.name)
    tracing.instrument(app, spec.name)  # only when OTEL_EXPORTER_OTLP_ENDPOINT is set (or a test's provider)

    async def outbox_depth() -> None:
        if runtime.relay is not None:
            pending, oldest = await runtime.relay.depth()
            OUTBOX_PENDING.labels(spec.name).set(pending)
            OUTBOX_OLDEST_SECONDS.labels(spec.name).set(oldest)

    async def consumer_lags() -> None:
        await asyncio.gather(*(c.measure_lag() for c in consumers))

    on_scrape(app, outbox_depth)
    on_scrape(app, consumer_lags)
    for hook in spec.scrape:
        on_scrape(app, functools.partial(hook, runtime))

    for transient in TRANSIENT_ERRORS:
        app.add_exception_handler(transient, unavailable)

    async def unstorable(request: Request, exc: Exception) -> JSONResponse:
        # The last line behind the request models (shared.inputs): a value PostgreSQL refuses to store or
        # compare (NUL, an unencodable character, a number out of range) is the client's 422, not a 500.
        log.warning("http.unstorable_input", path=request.url.path, error=type(exc).__name__)
        return JSONResponse({"detail": [{"loc": ["body"], "msg": f"a value cannot be stored: {type(exc).__name__}",
                                         "type": "unstorable"}]}, status_code=422)

    for unstorable_error in UNSTORABLE_ERRORS:
        app.add_exception_handler(unstorable_error, unstorable)

    async def invalid_request(_request: Request, exc: Exception) -> JSONResponse:
        # FastAPI's 422, with the refused input echoed in a form JSON can carry (a lone surrogate cannot be
        # encoded as UTF-8: echoing it as given made the refusal itself a 500).
        assert isinstance(exc, RequestValidationError)
        return JSONResponse({"detail": _encodable(jsonable_encoder(exc.errors()))}, status_code=422)

    app.add_exception_handler(RequestValidationError, invalid_request)

    @app.get("/health/live", tags=["health"])
    async def live() -> dict[str, str]:
        return {"status": "ok", "service": spec.name}

    @app.get("/health/ready", tags=["health"], responses={
        200: {"model": Readiness, "description": "PostgreSQL and Kafka answer."},
        503: {"model": Readiness, "description": "PostgreSQL or Kafka does not answer (`status: unavailable`)."}})
    async def ready() -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            async with runtime.require_pool().acquire(timeout=2) as conn:
                await conn.fetchval("SELECT 1")
            checks["postgres"] = "ok"
        except Exception as exc:
            checks["postgres"] = f"error: {type(exc).__name__}"
        try:
            checks["kafka"] = "ok" if await broker.ping(timeout=2.0) else "error: no answer"
        except Exception as exc:
            checks["kafka"] = f"error: {type(exc).__name__}"
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503)

    for router in spec.routers:
        app.include_router(router)
    return app
