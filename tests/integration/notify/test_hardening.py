"""Issue #20 on notify: limits before work (finding 5) and no dead rows at rest (finding 7)."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from services.notify.channels.base import DeliveryReceipt
from services.notify.inbound import apply_receipts
from services.notify.testing import NotifyStack
from tests.integration.notify.test_pipeline import add_volunteer, message_row, request


async def test_a_replayed_receipt_for_a_delivered_message_is_not_kept(notify_stack: NotifyStack) -> None:
    ns = notify_stack
    vid, _, _ = await add_volunteer(ns)
    e = request(vid)
    await ns.publish(ns.callout_topic, str(vid), e)
    row = await message_row(ns, e.callout_id, status=("delivered",), timeout=60.0)
    assert row is not None and row["provider_message_id"]
    pid, provider = row["provider_message_id"], row["provider"]
    replay = DeliveryReceipt(provider_message_id=pid, message_id=None, recipient=None, delivered=True,
                             error_code=None, reported_at=datetime.now(UTC))
    failed = DeliveryReceipt(provider_message_id=pid, message_id=None, recipient=None, delivered=False,
                             error_code="MK:0001", reported_at=datetime.now(UTC))
    async with ns.pool.acquire() as conn, conn.transaction():
        outcome = await apply_receipts(conn, provider, [replay, failed], cipher=ns.runtime.extras["notify"].cipher)
    assert (outcome.delivered, outcome.early, outcome.unchanged) == (0, 0, 2)
    async with ns.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM early_receipts WHERE provider_message_id = $1", pid) == 0
        assert await conn.fetchval("SELECT status FROM messages WHERE message_id = $1", row["message_id"]) == "delivered"


async def test_a_callback_body_over_its_limit_is_413_before_it_is_read(notify_stack: NotifyStack) -> None:
    ns = notify_stack
    token = ns.settings.callback_token.get_secret_value()
    big = b"[" + b'{"phone_number": "13900000000", "content": "1"},' * 60_000 + b"{}]"  # ~3 MB
    r = await ns.http.post(f"{ns.url}/callbacks/aliyun/{token}/report", content=big,
                           headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text
    live = await ns.http.get(f"{ns.url}/health/live")
    assert live.status_code == 200


async def test_a_reply_with_nul_and_control_characters_is_stored_without_them(notify_stack: NotifyStack) -> None:
    ns = notify_stack
    token = ns.settings.callback_token.get_secret_value()
    seq = random.randint(10**9, 10**10)
    body = '[{"phone_number": "13900000001", "content": "1\\u0000\\u001b\\u0007", "send_time": "2026-11-29 16:00:00", ' \
           f'"dest_code": "1234", "sequence_id": {seq}}}]'
    r = await ns.http.post(f"{ns.url}/callbacks/aliyun/{token}/up", content=body.encode(),
                           headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    async with ns.pool.acquire() as conn:
        text = await conn.fetchval("SELECT text FROM replies WHERE dedup_key = $1", f"aliyun:{seq}")
    assert text == "1"  # (a lone surrogate is refused by the JSON parser: 400 malformed)
