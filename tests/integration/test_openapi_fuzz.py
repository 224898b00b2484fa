"""Property-based tests of the three services' OpenAPI documents (schemathesis) on the real PostgreSQL.

Schemathesis generates requests from each service's ``/openapi.json`` (valid and invalid parameters and
bodies) and checks every answer with ``not_a_server_error`` (no 5xx) and ``status_code_conformance`` (the
status is one the document lists for that operation), so a generated client never meets an undocumented
status.

Each service is served by uvicorn in a thread of its own (its own event loop: schemathesis calls are
synchronous) on a scratch schema of the test database, dropped at the end. Roster and dispatch run without
their lifespan: no outbox relay and no consumers, so nothing generated here reaches the shared topics or
another engineer's consumer groups. Notify runs as its integration tests run it
(:func:`services.notify.testing.running_notify`: private call-out/contact topics, the simulator); the
fuzzer is given no callback token, so no generated callback is accepted and nothing is published.

Roster and dispatch get an admin / city-operator token so that generation reaches past authentication;
``max_examples`` is small per operation to keep the file within a few minutes on a loaded 2-core machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from pydantic import SecretStr
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import status_code_conformance

from shared.db import create_pool, upgrade_async
from shared.settings import DispatchSettings, RosterSettings
from tests.conftest import StackAddresses

pytestmark = pytest.mark.integration

CHECKS = [not_a_server_error, status_code_conformance]
FUZZ = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.function_scoped_fixture])


@dataclass
class Served:
    url: str
    headers: dict[str, str] = field(default_factory=dict)


class ThreadServer:
    """Runs an async context manager yielding a :class:`Served` on an event loop in a thread of its own."""

    def __init__(self, factory: Callable[[], AbstractAsyncContextManager[Served]]) -> None:
        self._factory = factory
        self._ready = threading.Event()
        self._served: Served | None = None
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            try:
                async with self._factory() as served:
                    self._served = served
                    self._ready.set()
                    await self._stop.wait()
            except BaseException as exc:
                self._error = exc
                self._ready.set()

        asyncio.run(main())

    def __enter__(self) -> Served:
        self._thread.start()
        if not self._ready.wait(120):
            raise RuntimeError("the service did not start within 120 s")
        if self._error is not None:
            raise self._error
        assert self._served is not None
        return self._served

    def __exit__(self, *_: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)


@asynccontextmanager
async def _uvicorn(app: Any) -> AsyncIterator[str]:
    """``app`` on a free loopback port, without its lifespan (the caller wired the pool)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(1000):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        if not server.started:
            raise RuntimeError("server did not start")
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        sock.close()


@asynccontextmanager
async def _scratch_schema(dsn: str, service: str) -> AsyncIterator[tuple[str, asyncpg.Pool]]:
    schema = f"{service}_fuzz_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(dsn)
    await admin.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in dsn else "?"
    scoped = f"{dsn}{sep}options=-csearch_path={schema}"
    try:
        await upgrade_async(service, scoped)
        pool = await create_pool(scoped, min_size=1, max_size=4)
        try:
            yield scoped, pool
        finally:
            await pool.close()
    finally:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


def _roster(stack: StackAddresses) -> Callable[[], AbstractAsyncContextManager[Served]]:
    @asynccontextmanager
    async def serve() -> AsyncIterator[Served]:
        from services.roster.app import create_app
        from services.roster.divisions import load_file

        token = f"roster-fuzz-{uuid.uuid4().hex}"
        async with _scratch_schema(stack.test_dsn, "roster") as (dsn, pool):
            async with pool.acquire() as conn:
                await load_file(conn)
            app = create_app(RosterSettings(database_url=dsn, kafka_bootstrap_servers=stack.bootstrap,  # type: ignore[call-arg]
                                            admin_token=SecretStr(token)))
            app.state.runtime.pool = pool
            async with _uvicorn(app) as url:
                yield Served(url, {"Authorization": f"Bearer {token}"})

    return serve


def _dispatch(stack: StackAddresses) -> Callable[[], AbstractAsyncContextManager[Served]]:
    @asynccontextmanager
    async def serve() -> AsyncIterator[Served]:
        from services.dispatch.app import create_app
        from services.dispatch.auth import create_token

        async with _scratch_schema(stack.test_dsn, "dispatch") as (dsn, pool):
            async with pool.acquire() as conn:
                token = await create_token(conn, name="fuzz", role="city", unit_code="330600")
            app = create_app(DispatchSettings(database_url=dsn, kafka_bootstrap_servers=stack.bootstrap),  # type: ignore[call-arg]
                             migrate=False, consumers=[])
            app.state.runtime.pool = pool
            async with _uvicorn(app) as url:
                yield Served(url, {"Authorization": f"Bearer {token}"})

    return serve


def _notify(stack: StackAddresses) -> Callable[[], AbstractAsyncContextManager[Served]]:
    @asynccontextmanager
    async def serve() -> AsyncIterator[Served]:
        from services.notify.testing import running_notify

        async with running_notify(stack.bootstrap, stack.notify_dsn) as ns:
            yield Served(ns.url)

    return serve


def _served(stack: StackAddresses, factory: Callable[[StackAddresses], Any]) -> Iterator[Served]:
    with ThreadServer(factory(stack)) as served:
        yield served


@pytest.fixture(scope="module")
def roster(stack: StackAddresses) -> Iterator[Served]:
    yield from _served(stack, _roster)


@pytest.fixture(scope="module")
def dispatch(stack: StackAddresses) -> Iterator[Served]:
    yield from _served(stack, _dispatch)


@pytest.fixture(scope="module")
def notify(stack: StackAddresses) -> Iterator[Served]:
    yield from _served(stack, _notify)


def fuzz(schema: Any, served: Served) -> list[str]:
    """Every operation of ``schema``, valid and invalid requests; one line per operation that failed a check.

    Hypothesis shrinks each failure to a small example; every operation is tried even after one failed.
    """
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.startswith("/health/"):
            continue  # no input; /health/ready is 503 here by design: the harness starts no broker client
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @FUZZ
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                case.call_and_validate(base_url=served.url, headers=served.headers, checks=CHECKS)

            try:
                run()
            except Unsatisfiable:
                continue  # no invalid request exists (e.g. a free-text path parameter only)
            except (Exception, BaseExceptionGroup) as exc:  # the checks' failures, with the request
                failures.append(f"{operation.method.upper()} {operation.path} ({mode.value}): {exc}")
    return failures


def test_roster_answers_no_5xx_and_only_documented_statuses(roster: Served) -> None:
    failures = fuzz(schemathesis.openapi.from_url(f"{roster.url}/openapi.json"), roster)
    assert not failures, "\n\n".join(failures)


def test_dispatch_answers_no_5xx_and_only_documented_statuses(dispatch: Served) -> None:
    failures = fuzz(schemathesis.openapi.from_url(f"{dispatch.url}/openapi.json"), dispatch)
    assert not failures, "\n\n".join(failures)


def test_notify_answers_no_5xx_and_only_documented_statuses(notify: Served) -> None:
    failures = fuzz(schemathesis.openapi.from_url(f"{notify.url}/openapi.json"), notify)
    assert not failures, "\n\n".join(failures)
