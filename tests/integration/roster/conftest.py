"""A scratch roster database for integration tests: a schema of its own in the test database.

The roster's migrations run into schema ``roster_it_<unique>`` of ``MUSTER_TEST_DATABASE_URL``
(``PGOPTIONS`` sets the search path for Alembic's psycopg connection; the asyncpg pool gets it as a
server setting), the bundled divisions are loaded, and the schema is dropped at the end, so the
demo roster is never touched. Events go to the real topics through a relay on this pool; the
volunteers created here are retired at the end (tombstones), so consumers' projections drop them.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from shared.db import create_pool, upgrade
from shared.outbox import OutboxRelay


def migrate_schema(dsn: str, schema: str) -> None:
    """Run the roster's migrations into ``schema`` (created if missing)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    old = os.environ.get("PGOPTIONS")
    os.environ["PGOPTIONS"] = f"-c search_path={schema}"
    try:
        upgrade("roster", dsn)
    finally:
        if old is None:
            os.environ.pop("PGOPTIONS", None)
        else:
            os.environ["PGOPTIONS"] = old


@pytest.fixture(scope="session")
async def roster_pool(stack: Any) -> AsyncIterator[Any]:
    from services.roster import commands
    from services.roster.divisions import load_file

    schema = f"roster_it_{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(migrate_schema, stack.test_dsn, schema)
    pool = await create_pool(stack.test_dsn, min_size=1, max_size=6, server_settings={"search_path": schema})
    async with pool.acquire() as conn:
        await load_file(conn)
    yield pool
    try:
        async with pool.acquire() as conn:
            for r in await conn.fetch("SELECT id FROM volunteers WHERE active"):
                await commands.retire_volunteer(conn, r["id"])
            for r in await conn.fetch("SELECT id FROM teams WHERE active"):
                await commands.retire_team(conn, r["id"])
        relay = OutboxRelay(pool, stack.bootstrap, name="roster-it-cleanup", batch_size=2000)
        await relay.publish_pending()
        await relay.stop()
    finally:
        async with pool.acquire() as conn:
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await pool.close()


@pytest.fixture
async def relay(roster_pool: Any, stack: Any) -> AsyncIterator[OutboxRelay]:
    r = OutboxRelay(roster_pool, stack.bootstrap, name="roster-it", batch_size=2000)
    yield r
    await r.stop()


async def consume(bootstrap: str, topic: str, keys: set[str], *, expect: int, timeout: float = 30.0
                  ) -> list[Any]:
    """Records of ``topic`` whose key is in ``keys``, read from the earliest offset with a fresh group.

    Stops when ``expect`` such records were read or ``timeout`` seconds passed.
    """
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"roster-it-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest", enable_auto_commit=False,
    )
    await consumer.start()
    found: list[Any] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(found) < expect and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batch.values():
                found.extend(r for r in records if r.key is not None and r.key.decode() in keys)
    finally:
        await consumer.stop()
    return found


def headers_of(record: Any) -> dict[str, str]:
    hs: Sequence[tuple[str, bytes]] = record.headers
    return {k: v.decode() for k, v in hs}
