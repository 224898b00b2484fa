"""Database helpers: asyncpg pools and per-service migrations with Alembic.

Each service owns one database and its migrations in ``services/<name>/migrations`` (Alembic,
raw SQL through ``op.execute``). :func:`upgrade` runs them to ``head``; services call it at
start and ``muster db upgrade`` calls it for all three. The tables every service shares in
shape (outbox, processed events) are created from :data:`shared.outbox.OUTBOX_DDL` by each
service's first migration, so the rule stays in one place.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import orjson

__all__ = ["SERVER_SETTINGS", "create_pool", "init_connection", "upgrade", "upgrade_async"]

ROOT = Path(__file__).resolve().parent.parent


# Session settings sent at connection start-up, so they are the session's defaults and survive the
# ``RESET ALL`` the pool runs when a connection is released (a ``SET`` at init would not):
# - UTC, whatever the server's time zone;
# - no parallel workers: the services run short OLTP statements, and starting workers (~10 ms) cost
#   more than they saved. Measured: notify's early-receipt sweep took 10.2 ms with 2 workers and
#   0.2 ms without, once a table's statistics were stale (PostgreSQL docs, "Parallel Query").
SERVER_SETTINGS = {"TimeZone": "UTC", "max_parallel_workers_per_gather": "0"}


async def init_connection(conn: asyncpg.Connection) -> None:
    """Per-connection setup: jsonb ↔ Python via orjson (the session settings are :data:`SERVER_SETTINGS`)."""
    # Binary format (a version byte 1, then the JSON text) so COPY (outbox.add_many) can write jsonb too.
    await conn.set_type_codec(
        "jsonb", encoder=lambda v: b"\x01" + orjson.dumps(v), decoder=lambda b: orjson.loads(b[1:]),
        schema="pg_catalog", format="binary",
    )
    await conn.set_type_codec(
        "json", encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads, schema="pg_catalog"
    )


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 10, **kwargs: Any) -> asyncpg.Pool:
    """An asyncpg pool whose connections went through :func:`init_connection`, with :data:`SERVER_SETTINGS`.

    ``server_settings`` in ``kwargs`` are added to (and override) :data:`SERVER_SETTINGS`.

    Raises:
        asyncpg.PostgresError | OSError: the database cannot be reached.

    """
    settings = {**SERVER_SETTINGS, **kwargs.pop("server_settings", {})}
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=init_connection,
                                     server_settings=settings, **kwargs)
    assert pool is not None
    return pool


def _alembic_config(service: str, dsn: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "services" / service / "migrations"))
    cfg.set_main_option("sqlalchemy.url", dsn.replace("postgresql://", "postgresql+psycopg://", 1))
    cfg.set_main_option("version_table", "alembic_version")
    return cfg


def upgrade(service: str, dsn: str, revision: str = "head") -> None:
    """Run ``service``'s migrations up to ``revision`` (blocking; do not call inside a running loop).

    Args:
        service: ``roster``, ``dispatch`` or ``notify``.
        dsn: ``postgresql://…`` URL of the service's database.
        revision: Alembic revision to reach (``head`` = the newest).

    """
    from alembic import command

    command.upgrade(_alembic_config(service, dsn), revision)


async def upgrade_async(service: str, dsn: str, revision: str = "head") -> None:
    """:func:`upgrade` from inside an event loop (runs in a worker thread)."""
    await asyncio.to_thread(upgrade, service, dsn, revision)
