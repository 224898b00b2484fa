"""The roster's consumers: replies that withdraw SMS consent (TD / 退订).

``roster.replies`` reads ``notify.reply.v1``. Delivery semantics: consumer group
``roster.replies``, at-least-once with ``NACK_ON_ERROR`` and dedup on ``event_id`` in the same
transaction (see :mod:`shared.consumer`). A :class:`~shared.events.ReplyReceived` with intent
``unsubscribe`` sets the volunteer's ``sms_consent`` to false and republishes their contact (and
profile) with a new revision; other intents are ignored. A reply from an unknown or retired
volunteer is logged and skipped.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from services.roster import commands
from shared.consumer import IdempotentConsumer, Received
from shared.events import ReplyIntent, ReplyReceived
from shared.logging import get_logger
from shared.service import Runtime
from shared.topics import REPLY

__all__ = ["handle_replies", "handle_reply", "unsubscribe_consumer"]

log = get_logger(__name__)


async def handle_reply(conn: asyncpg.Connection, item: Received) -> None:
    """Apply one reply (see the module docstring)."""
    if not isinstance(item, ReplyReceived) or item.intent is not ReplyIntent.UNSUBSCRIBE:
        return
    if item.volunteer_id is None:
        log.info("roster.unsubscribe_unknown_sender", reply_id=str(item.reply_id), sender=item.sender)
        return
    try:
        v = await commands.update_volunteer(conn, item.volunteer_id, {"sms_consent": False})
    except commands.NotFound:
        log.warning("roster.unsubscribe_no_volunteer", volunteer_id=str(item.volunteer_id))
        return
    log.info("roster.sms_consent_withdrawn", volunteer_id=str(v.id), revision=v.revision)


async def handle_replies(conn: asyncpg.Connection, items: Sequence[Received]) -> None:
    """Apply a batch of replies in one savepoint (see :class:`shared.consumer.IdempotentConsumer`).

    Nearly every reply is an accept, a decline or an arrival, which the roster ignores; applied one by one,
    each cost a savepoint and its release (two round trips) in the consumer.
    """
    for item in items:
        await handle_reply(conn, item)


async def _no_sink(topic: str, value: bytes | None, key: bytes | None, headers: dict[str, str]) -> None:
    raise RuntimeError("dead-letter sink not wired")  # replaced by shared.service.build_app


def unsubscribe_consumer(runtime: Runtime) -> IdempotentConsumer:
    """The ``roster.replies`` consumer, wired to the runtime's pool."""
    return IdempotentConsumer(name="roster.replies", topic=REPLY, handler=handle_reply, batch_handler=handle_replies,
                              pool=runtime.require_pool, dead_letters=_no_sink)
