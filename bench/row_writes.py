"""Rows each service's database wrote between two moments: the durability a benchmark's figure pays for.

:func:`snapshot` reads ``n_tup_ins``, ``n_tup_upd`` and ``n_tup_del`` of every table in the roster,
dispatch and notify databases (PostgreSQL's cumulative statistics, ``pg_stat_user_tables``; addresses
from the stack's env file). :func:`spent` subtracts two snapshots: ``{"tables": {"<db>.<table>":
{"ins", "upd", "del"}}, "by_database": {"<db>": rows}, "total": rows}``, tables with no change left out.

A backend reports its counters when its transaction ends, at most once a second while busy
(PostgreSQL 15, "The Cumulative Statistics System"), so a snapshot taken right after a burst of writes
misses up to its last second: :data:`FLUSH_SECONDS` is the wait before the closing snapshot. Counts are
rows, not statements or bytes; an updated row counts once per update (an outbox row written, then
stamped published, is two).
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

__all__ = ["DATABASES", "FLUSH_SECONDS", "snapshot", "spent"]

DATABASES = ("roster", "dispatch", "notify")
FLUSH_SECONDS = 1.5
"""Seconds to wait after the last write before the closing snapshot (backends report at most every 1 s)."""


async def _one(dsn: str) -> dict[str, tuple[int, int, int]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT schemaname || '.' || relname AS t, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables")
        return {r["t"]: (r["n_tup_ins"], r["n_tup_upd"], r["n_tup_del"]) for r in rows}
    finally:
        await conn.close()


async def snapshot(env: dict[str, str] | None = None) -> dict[str, tuple[int, int, int]]:
    """``{"<db>.<schema>.<table>": (inserted, updated, deleted)}`` now, cumulative since the statistics reset.

    Args:
        env: the stack's settings (``<DB>_DATABASE_URL``); read from the state directory when None.

    Raises:
        asyncpg.PostgresError / OSError: a database cannot be read.

    """
    if env is None:
        from deploy.stack import stack_env

        env = stack_env()
    parts = await asyncio.gather(*(_one(env[f"{db.upper()}_DATABASE_URL"]) for db in DATABASES))
    return {f"{db}.{t}": v for db, part in zip(DATABASES, parts, strict=True) for t, v in part.items()}


def spent(before: dict[str, tuple[int, int, int]], after: dict[str, tuple[int, int, int]]) -> dict[str, Any]:
    """Rows written between two snapshots (shape in the module docstring); a table new since ``before`` counts from 0."""
    tables: dict[str, dict[str, int]] = {}
    for name, now in sorted(after.items()):
        then = before.get(name, (0, 0, 0))
        ins, upd, dele = (now[i] - then[i] for i in range(3))
        if ins or upd or dele:
            tables[name] = {"ins": ins, "upd": upd, "del": dele}
    by_database = {db: sum(sum(v.values()) for t, v in tables.items() if t.startswith(f"{db}.")) for db in DATABASES}
    return {"tables": tables, "by_database": by_database, "total": sum(by_database.values())}
