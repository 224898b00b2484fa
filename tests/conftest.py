"""Test tiers and the fixtures that reach the real broker and database.

Addresses come from the environment the stack sets (``muster stack up`` writes ``stack.env``;
``KAFKA_BOOTSTRAP_SERVERS`` and ``*_DATABASE_URL`` in the environment win). Where neither is
there and a Docker engine is reachable, testcontainers starts Apache Kafka and PostgreSQL.
Otherwise integration tests are skipped, unless ``MUSTER_REQUIRE_STACK=1`` (set by ``.ci/run``
and ``make test``), which turns a missing stack into a failure.

Tests use unique ids (topics, groups, incidents) instead of truncating shared tables.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from shared.db import create_pool


@dataclass(frozen=True)
class StackAddresses:
    bootstrap: str
    test_dsn: str
    roster_dsn: str
    dispatch_dsn: str
    notify_dsn: str


def _from_env() -> dict[str, str] | None:
    env: dict[str, str] = {}
    try:
        from deploy.stack import env_file

        path = env_file()
        if path.exists():
            for line in path.read_text().splitlines():
                k, _, v = line.partition("=")
                if k:
                    env[k] = v
    except Exception:  # noqa: BLE001 - no stack file: fall through to the environment
        pass
    for key in ("KAFKA_BOOTSTRAP_SERVERS", "MUSTER_TEST_DATABASE_URL", "ROSTER_DATABASE_URL",
                "DISPATCH_DATABASE_URL", "NOTIFY_DATABASE_URL"):
        if key in os.environ:
            env[key] = os.environ[key]
    return env if "KAFKA_BOOTSTRAP_SERVERS" in env and "MUSTER_TEST_DATABASE_URL" in env else None


def _docker_reachable() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env().ping()
        return True
    except Exception:  # noqa: BLE001
        return False


@pytest.fixture(scope="session")
def stack() -> Iterator[StackAddresses]:
    """Addresses of the real Kafka broker and PostgreSQL (see the module docstring)."""
    env = _from_env()
    if env is not None:
        yield StackAddresses(
            bootstrap=env["KAFKA_BOOTSTRAP_SERVERS"],
            test_dsn=env["MUSTER_TEST_DATABASE_URL"],
            roster_dsn=env.get("ROSTER_DATABASE_URL", env["MUSTER_TEST_DATABASE_URL"]),
            dispatch_dsn=env.get("DISPATCH_DATABASE_URL", env["MUSTER_TEST_DATABASE_URL"]),
            notify_dsn=env.get("NOTIFY_DATABASE_URL", env["MUSTER_TEST_DATABASE_URL"]),
        )
        return
    if _docker_reachable():
        from testcontainers.kafka import KafkaContainer
        from testcontainers.postgres import PostgresContainer

        with KafkaContainer("apache/kafka:4.1.1").with_kraft() as kafka, PostgresContainer("postgres:15") as pg:
            dsn = pg.get_connection_url(driver=None)
            yield StackAddresses(kafka.get_bootstrap_server(), dsn, dsn, dsn, dsn)
        return
    if os.environ.get("MUSTER_REQUIRE_STACK") == "1":
        pytest.fail("no Kafka/PostgreSQL: run `muster stack up` first (MUSTER_REQUIRE_STACK=1)")
    pytest.skip("no Kafka/PostgreSQL stack and no Docker engine")


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic, group and table names of one test."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
async def test_pool(stack: StackAddresses) -> AsyncIterator[object]:
    """A pool on the scratch test database, with the outbox tables in place."""
    from shared.outbox import OUTBOX_DDL

    pool = await create_pool(stack.test_dsn, min_size=1, max_size=8)
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock(4242)")
        try:
            await conn.execute(OUTBOX_DDL)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(4242)")
    yield pool
    await pool.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by their folder: tests/unit → unit, tests/integration → integration, tests/e2e → e2e."""
    for item in items:
        path = str(item.fspath)
        for tier in ("unit", "integration", "e2e", "faults"):
            if f"/tests/{tier}/" in path:
                item.add_marker(getattr(pytest.mark, tier))


async def wait_for_assignment(runtime: Any, suffix: str, timeout: float = 60.0) -> None:
    """Until the replica's consumer ``*<suffix>`` has partitions assigned (its group's rebalance is over)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not any(getattr(c._subscriber, "consumer", None) is not None and c._subscriber.consumer.assignment()
                  for c in runtime.extras["consumers"] if c.name.endswith(suffix)):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the second replica was never assigned a partition")
        await asyncio.sleep(0.1)
