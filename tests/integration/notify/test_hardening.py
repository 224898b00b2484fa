"""Issue #20 on notify: limits before work (finding 5) and no dead rows at rest (finding 7)."""

from __future__ import annotations

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
    row = await message_row(ns, e.callout_id, status=("delivered",))
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
