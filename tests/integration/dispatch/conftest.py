"""Dispatch integration fixtures: a private schema in the scratch test database, the app in-process.

Each test session migrates dispatch into its own schema (``dispatch_t_<hex>``) of the test
database (``MUSTER_TEST_DATABASE_URL``), selected by ``search_path``, so it never touches the demo
database nor another engineer's tables; the schema is dropped at the end. A module whose
assertions cover whole tables gets a schema of its own (:func:`dispatch_schema`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.dispatch.adapters.projection import upsert_profile
from services.dispatch.app import create_app
from services.dispatch.auth import create_token
from services.dispatch.units import units
from shared.db import create_pool, upgrade_async
from shared.events import CertificateInfo, VolunteerProfileUpdated
from shared.settings import DispatchSettings
from shared.topics import DELIVERY, REPLY, ROSTER_AED, ROSTER_PROFILE, ROSTER_TEAM, TopicSpec
from tests.conftest import StackAddresses


@dataclass(frozen=True)
class DispatchDb:
    dsn: str
    pool: asyncpg.Pool
    schema: str
    bootstrap: str


@pytest.fixture(scope="session")
async def dispatch_db(stack: StackAddresses) -> AsyncIterator[DispatchDb]:
    """The session's schema, shared by the modules that do not override it (see :func:`dispatch_schema`)."""
    async with dispatch_schema(stack) as db:
        yield db


@asynccontextmanager
async def dispatch_schema(stack: StackAddresses) -> AsyncIterator[DispatchDb]:
    """A fresh schema with dispatch migrated into it, dropped at the end.

    The session's schema holds every earlier test's incidents, and their deadlines fall due while
    later tests run (an emergency's first wave waits 180 s): any deadline ticker then writes their
    next waves. A module that counts whole tables or asks the ticker how many requirements it
    handled overrides ``dispatch_db`` with a module-scoped fixture over this, so only its own
    incidents are there.
    """
    schema = f"dispatch_t_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(stack.test_dsn)
    await admin.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in stack.test_dsn else "?"
    dsn = f"{stack.test_dsn}{sep}options=-csearch_path={schema}"
    try:
        await upgrade_async("dispatch", dsn)
        pool = await create_pool(dsn, min_size=1, max_size=6)
        try:
            yield DispatchDb(dsn, pool, schema, stack.bootstrap)
        finally:
            await pool.close()
    finally:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


def settings_for(db: DispatchDb, *, tick: float = 0.2) -> DispatchSettings:
    return DispatchSettings(
        database_url=db.dsn, kafka_bootstrap_servers=db.bootstrap, tick_seconds=tick,  # type: ignore[arg-type]
        consumer_prefix=f"dispatch-test-{uuid.uuid4().hex[:8]}", http_port=0,
    )


_CONSUMER_TOPICS = {"roster-profiles": ROSTER_PROFILE, "roster-teams": ROSTER_TEAM, "roster-aeds": ROSTER_AED,
                    "replies": REPLY, "deliveries": DELIVERY}


async def start_groups_at_end(bootstrap: str, groups: dict[str, TopicSpec]) -> None:
    """Commit each new consumer group's offsets at its topic's current end.

    The real topics hold every other test's and the demo's history; a test's fresh group starts
    after it instead of replaying it (the service itself reads from the earliest offset).
    """
    for group, topic in groups.items():
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            parts = [TopicPartition(topic.name, p) for p in range(topic.partitions)]
            consumer.assign(parts)
            ends = await consumer.end_offsets(parts)
            await consumer.commit({tp: off for tp, off in ends.items()})
        finally:
            await consumer.stop()


@asynccontextmanager
async def running_app(
    db: DispatchDb, *, consumers: Iterable[str] = ("replies",), tick: float = 0.2,
    settings: DispatchSettings | None = None,
) -> AsyncIterator[httpx.AsyncClient]:
    """The dispatch app started in-process (migrations, pool, relay, real Kafka consumers, ticker).

    Its consumers are new groups started at the current end of their real topics.
    """
    settings = settings or settings_for(db, tick=tick)
    names = list(consumers)
    await start_groups_at_end(db.bootstrap, {f"{settings.consumer_prefix}.{n}": _CONSUMER_TOPICS[n] for n in names})
    app = create_app(settings, consumers=names)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://dispatch") as client:
            yield client


async def token(db: DispatchDb, role: str = "city", unit: str = "330600") -> dict[str, str]:
    async with db.pool.acquire() as conn:
        t = await create_token(conn, name=f"{role}-{uuid4().hex[:6]}", role=role, unit_code=unit)
    return {"Authorization": f"Bearer {t}"}


def town_villages(town: str) -> list[str]:
    return sorted(c for c in units().names if len(c) == 12 and c.startswith(town))


def a_town_with_villages(n: int, index: int = 0) -> tuple[str, list[str]]:
    """A real town with at least ``n`` villages and a known centre (the ``index``-th such, for separate tests)."""
    u = units()
    towns = sorted(c for c in u.names if len(c) == 9 and c in u.centres and len(town_villages(c)) >= n)
    town = towns[index * 7 % len(towns)]
    return town, town_villages(town)


async def add_volunteers(
    db: DispatchDb, village: str, n: int, *, skill: str = "first_aid", near: tuple[float, float] | None = None,
) -> list[UUID]:
    """Put ``n`` certified volunteers of ``village`` into the projection (as the roster consumer would)."""
    lat, lon = near or units().centres[village[:9]]
    ids = []
    async with db.pool.acquire() as conn:
        for i in range(n):
            vid = uuid4()
            await upsert_profile(conn, VolunteerProfileUpdated(
                volunteer_id=vid, revision=1, display_name=f"测试{i}", unit_code=village, lat=lat + 0.001 * (i + 1),
                lon=lon, skills=(skill,), certificates=(CertificateInfo(skill=skill, expires_on=date(2099, 1, 1)),),
                consent=True,
            ))
            ids.append(vid)
    return ids


async def wait_for(check: Callable[[], Any], *, timeout: float = 20.0, every: float = 0.1) -> Any:
    """Poll ``check`` (sync or async) until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(every)


def now() -> datetime:
    return datetime.now(UTC)


@asynccontextmanager
async def served_app(db: DispatchDb, *, consumers: Iterable[str] = ()) -> AsyncIterator[str]:
    """The dispatch app served by uvicorn on a free port (for clients outside the process's loop, e.g. the CLI)."""
    import socket

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(settings_for(db), consumers=list(consumers))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
    task = asyncio.create_task(server.serve())
    try:
        await wait_for(lambda: server.started, timeout=20)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
