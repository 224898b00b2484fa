"""Smoke test of the benchmark floor (bench/floor.py) and machine facts on the real broker and database.

Counts only: every message produced is consumed once, every row written is there, and what the floor
creates is gone afterwards. No timing is asserted (speed belongs to the benchmark's printed figures).
"""

from __future__ import annotations

import asyncio
import re

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient

from bench.floor import kafka_floor, pg_floor, roundtrip_floor
from bench.machine import machine


async def _topics(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def test_kafka_floor_consumes_every_message_once_both_ways_and_deletes_its_topics(stack) -> None:
    result = await kafka_floor(200, bootstrap=stack.bootstrap)

    assert result["partitions"] == 12  # as dispatch.callout.v1
    for way in ("send", "batch"):
        figures = result[way]
        assert figures["produced"] == 200
        assert figures["consumed"] == 200  # no message read twice
        assert figures["distinct"] == 200  # none lost
        assert figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]
    assert result["wall_seconds"] == min(result["send"]["wall_seconds"], result["batch"]["wall_seconds"])
    topics = {result["send"]["topic"], result["batch"]["topic"]}
    deadline = asyncio.get_running_loop().time() + 30  # deletion is asynchronous in Kafka; a loaded CI is slow
    while topics & await _topics(stack.bootstrap) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.2)
    assert not topics & await _topics(stack.bootstrap)


async def test_roundtrip_floor_gets_every_message_back(stack) -> None:
    result = await roundtrip_floor(40, bootstrap=stack.bootstrap, rate=200)

    assert (result["count"], result["consumed"], result["distinct"]) == (40, 40, 40)


async def test_pg_floor_writes_n_rows_both_ways_and_drops_its_schema(stack) -> None:
    result = await pg_floor(200, dsn=stack.test_dsn)

    assert result["copy_rows"] == 200
    assert result["executemany_rows"] == 200
    assert result["method"] in ("copy", "executemany")
    assert result["wall_seconds"] == min(result["copy_seconds"], result["executemany_seconds"])
    conn = await asyncpg.connect(stack.test_dsn)
    try:
        left = await conn.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = $1", result["schema"])
    finally:
        await conn.close()
    assert left == 0


async def test_machine_facts_carry_the_running_servers_postgresql_version(stack) -> None:
    # Regression: bench/machine.py looked for a postgres binary and recorded "" on this machine.
    conn = await asyncpg.connect(stack.test_dsn)
    try:
        version = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()

    facts = machine(dsn=stack.test_dsn)

    assert facts["postgresql"] == version
    assert re.match(r"^\d+\.\d+", facts["postgresql"])
