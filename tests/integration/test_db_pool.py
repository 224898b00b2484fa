"""The services' asyncpg pools: session settings hold for every use of a pooled connection."""

from __future__ import annotations

from typing import Any

from shared.db import create_pool


async def test_session_settings_survive_the_pools_reset(stack: Any) -> None:
    # max_size 1: the second acquire gets the same connection back, after the pool's RESET ALL
    pool = await create_pool(stack.test_dsn, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("SET TIME ZONE 'Asia/Shanghai'")
            await conn.execute("SET max_parallel_workers_per_gather = 4")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW TimeZone") == "UTC"
            assert await conn.fetchval("SHOW max_parallel_workers_per_gather") == "0"
    finally:
        await pool.close()


async def test_callers_settings_are_added(stack: Any) -> None:
    pool = await create_pool(stack.test_dsn, min_size=1, max_size=1, server_settings={"application_name": "probe"})
    try:
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW application_name") == "probe"
            assert await conn.fetchval("SHOW TimeZone") == "UTC"
    finally:
        await pool.close()
