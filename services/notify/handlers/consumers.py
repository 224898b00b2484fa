"""Kafka handlers: the contact projection and the call-out → message step.

Both run inside :class:`shared.consumer.IdempotentConsumer` (group = consumer name, at-least-once
delivery, ``NACK_ON_ERROR``; the event id is recorded in ``processed_events`` in the same
transaction), so a redelivered event has no second effect. Beyond that, ``messages`` has
``UNIQUE (callout_id, kind)`` and the message id is derived from that pair (UUID v5), so even a
second event for the same call-out (a re-published copy with a new event id) makes no second message.

================================  ===========================  ========================================
topic                             consumer (group id)          effect
================================  ===========================  ========================================
``roster.volunteer-contact.v1``   ``notify.contacts``          upsert ``contacts`` (newer revision wins;
                                                               mobile/openid Fernet-encrypted + HMAC),
                                                               tombstone → row deleted
``dispatch.callout.v1``           ``notify.callouts``          ``CallOutRequested`` → message ``callout``;
                                                               ``CallOutAssigned`` → ``assigned``;
                                                               ``CallOutCancelled`` → ``stand_down``
================================  ===========================  ========================================

Messages are written ``pending``; the sender (:mod:`services.notify.sender`) picks the channel, words
them and sends them.
"""

from __future__ import annotations

import uuid
from uuid import UUID

import asyncpg

from services.notify.adapters.crypto import ContactCipher
from shared.consumer import Received, Tombstone
from shared.events import (
    CallOutAssigned,
    CallOutCancelled,
    CallOutRequested,
    MessageKind,
    VolunteerContactUpdated,
)
from shared.logging import get_logger

__all__ = ["ContactProjection", "CallOutMessages", "message_id_for"]

log = get_logger(__name__)

_MESSAGE_NS = UUID("6d757374-6572-4e6f-7469-667900000001")


def message_id_for(callout_id: UUID, kind: MessageKind) -> UUID:
    """The message id of (call-out, kind): UUID v5, the same on every redelivery."""
    return uuid.uuid5(_MESSAGE_NS, f"{callout_id}:{kind.value}")


class ContactProjection:
    """Applies ``VolunteerContactUpdated`` snapshots and tombstones to ``contacts``.

    Args:
        cipher: encrypts mobiles/openids and computes their look-up hashes.

    """

    def __init__(self, cipher: ContactCipher) -> None:
        self._cipher = cipher

    async def __call__(self, conn: asyncpg.Connection, item: Received) -> None:
        if isinstance(item, Tombstone):
            await conn.execute("DELETE FROM contacts WHERE volunteer_id = $1", UUID(item.key))
            log.info("contact.retired", volunteer_id=item.key)
            return
        if not isinstance(item, VolunteerContactUpdated):
            log.warning("contact.unexpected_event", event_type=item.event_type, event_id=str(item.event_id))
            return
        c = self._cipher
        await conn.execute(
            """
            INSERT INTO contacts (volunteer_id, revision, mobile_enc, mobile_hash, openid_enc, openid_hash,
                                  wechat_subscribed, preferred_channel, sms_consent, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
            ON CONFLICT (volunteer_id) DO UPDATE SET
                revision = EXCLUDED.revision,
                mobile_enc = EXCLUDED.mobile_enc, mobile_hash = EXCLUDED.mobile_hash,
                openid_enc = EXCLUDED.openid_enc, openid_hash = EXCLUDED.openid_hash,
                wechat_subscribed = EXCLUDED.wechat_subscribed,
                preferred_channel = EXCLUDED.preferred_channel,
                -- a TD/退订 received after this snapshot was taken still holds
                sms_consent = EXCLUDED.sms_consent AND (contacts.sms_opt_out_at IS NULL
                                                        OR contacts.sms_opt_out_at < EXCLUDED.updated_at),
                sms_opt_out_at = CASE WHEN contacts.sms_opt_out_at < EXCLUDED.updated_at THEN NULL
                                      ELSE contacts.sms_opt_out_at END,
                updated_at = EXCLUDED.updated_at
            WHERE contacts.revision < EXCLUDED.revision
            """,
            item.volunteer_id, item.revision, c.encrypt(item.mobile), c.mobile_hash(item.mobile),
            c.encrypt(item.wechat_openid), c.openid_hash(item.wechat_openid), item.wechat_subscribed,
            item.preferred_channel.value, item.sms_consent, item.occurred_at,
        )


_INSERT_MESSAGE = """
INSERT INTO messages (message_id, callout_id, kind, volunteer_id, incident_id, causation_id, drill, content)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT ON CONSTRAINT messages_one_per_callout_kind DO NOTHING
"""


class CallOutMessages:
    """Turns call-out events into ``pending`` messages (one per call-out and kind)."""

    async def __call__(self, conn: asyncpg.Connection, item: Received) -> None:
        if isinstance(item, CallOutRequested):
            await self._requested(conn, item)
        elif isinstance(item, CallOutAssigned):
            await self._assigned(conn, item)
        elif isinstance(item, CallOutCancelled):
            await self._cancelled(conn, item)
        # other events on the topic are not ours; the consumer records them as processed

    async def _requested(self, conn: asyncpg.Connection, e: CallOutRequested) -> None:
        content = {
            "title": e.incident_title, "place": e.place, "role": e.role, "reply_code": e.reply_code,
            "respond_by": e.respond_by.isoformat(),
        }
        await conn.execute(
            f"""
            WITH c AS (
                INSERT INTO callouts (callout_id, volunteer_id, incident_id, reply_code, drill, requested_at)
                VALUES ($2, $4, $5, $9, $7, $10) ON CONFLICT (callout_id) DO NOTHING
            )
            {_INSERT_MESSAGE}
            """,
            message_id_for(e.callout_id, MessageKind.CALLOUT), e.callout_id, MessageKind.CALLOUT.value,
            e.volunteer_id, e.incident_id, e.event_id, e.drill, content, e.reply_code, e.occurred_at,
        )

    async def _assigned(self, conn: asyncpg.Connection, e: CallOutAssigned) -> None:
        code = await conn.fetchval(
            "UPDATE callouts SET state = 'assigned' WHERE callout_id = $1 AND state <> 'closed' RETURNING reply_code",
            e.callout_id,
        )
        content = {"title": e.incident_title, "place": e.place, "reply_code": code or ""}
        await conn.execute(
            _INSERT_MESSAGE,
            message_id_for(e.callout_id, MessageKind.ASSIGNED), e.callout_id, MessageKind.ASSIGNED.value,
            e.volunteer_id, e.incident_id, e.event_id, e.drill, content,
        )

    async def _cancelled(self, conn: asyncpg.Connection, e: CallOutCancelled) -> None:
        await conn.execute(
            "UPDATE callouts SET state = 'closed', closed_at = now() WHERE callout_id = $1 AND state <> 'closed'",
            e.callout_id,
        )
        # A call-out that has not left yet is simply not sent: no stand-down for a message never received.
        withheld = await conn.fetchval(
            """
            UPDATE messages SET status = 'failed', error_code = 'cancelled_before_send', updated_at = now()
            WHERE callout_id = $1 AND kind = 'callout' AND status = 'pending' AND channel IS NULL AND attempts = 0
            RETURNING message_id
            """,
            e.callout_id,
        )
        if withheld is not None:
            log.info("message.withheld", callout_id=str(e.callout_id), reason=e.reason.value)
            return
        content = {"title": e.incident_title, "reason": e.reason.value, "was_assigned": e.was_assigned}
        await conn.execute(
            _INSERT_MESSAGE,
            message_id_for(e.callout_id, MessageKind.STAND_DOWN), e.callout_id, MessageKind.STAND_DOWN.value,
            e.volunteer_id, e.incident_id, e.event_id, e.drill, content,
        )
