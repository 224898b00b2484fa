"""The Alembic ``env.py`` body every service's migrations share (online mode, psycopg 3).

Migrations are raw SQL scripts (``op.execute``); psycopg runs multi-statement scripts as they are.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool


def run() -> None:
    """Entry point called from each service's ``migrations/env.py``."""
    if context.is_offline_mode():
        raise RuntimeError("offline migrations are not supported; run `muster db upgrade`")
    config = context.config
    engine = engine_from_config(
        {"sqlalchemy.url": config.get_main_option("sqlalchemy.url")}, prefix="sqlalchemy.", poolclass=pool.NullPool
    )
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=None, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
