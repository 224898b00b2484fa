"""Migration 0009_provider_ids: Aliyun ids stored with the mobile in clear are rewritten to the keyed form."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg

from services.notify.channels import aliyun_id_key
from services.notify.channels.aliyun import aliyun_provider_message_id
from services.notify.testing import schema_dsn
from shared.db import _alembic_config
from shared.settings import NotifySettings


def _upgrade(dsn: str, revision: str) -> None:
    from alembic import command

    command.upgrade(_alembic_config("notify", dsn.replace("%", "%%")), revision)


async def test_stored_ids_with_a_mobile_are_rewritten_to_what_the_service_now_computes(stack: Any) -> None:
    schema = f"notify_mig_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(stack.notify_dsn)
    await admin.execute(f"CREATE SCHEMA {schema}")
    dsn = schema_dsn(stack.notify_dsn, schema)
    try:
        await asyncio.to_thread(_upgrade, dsn, "0008")
        conn = await asyncpg.connect(dsn)
        mid, out_id = uuid.uuid4(), str(uuid.uuid4())
        await conn.execute(
            "INSERT INTO messages (message_id, callout_id, kind, volunteer_id, content, status, provider, "
            "provider_message_id) VALUES ($1, $2, 'callout', $3, '{}', 'sent', 'aliyun', $4)",
            mid, uuid.uuid4(), uuid.uuid4(), f"{out_id}:13811112222")
        await conn.execute("INSERT INTO early_receipts (provider, provider_message_id, delivered, reported_at) "
                           "VALUES ('aliyun', 'b0123:13811113333', true, now())")
        await asyncio.to_thread(_upgrade, dsn, "0009")
        key = aliyun_id_key(NotifySettings())
        assert await conn.fetchval("SELECT provider_message_id FROM messages WHERE message_id = $1", mid) \
            == aliyun_provider_message_id(out_id, "+8613811112222", key)
        early = await conn.fetchval("SELECT provider_message_id FROM early_receipts")
        assert early == aliyun_provider_message_id("b0123", "+8613811113333", key)
        assert "1381111" not in early
        await conn.close()
    finally:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()
