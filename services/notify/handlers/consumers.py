"""Kafka handlers: the contact projection and the call-out → message step.

Both run inside :class:`shared.consumer.IdempotentConsumer` with a batch handler (group = consumer name, at-least-once delivery,
``NACK_ON_ERROR``; the event ids are recorded in ``processed_events`` in the same transaction), so a
redelivered event has no second effect. Each handler has a per-event ``__call__`` and an
``apply_batch`` that writes a whole Kafka batch with a few statements (``unnest`` arrays). Beyond that, ``messages`` has
``UNIQUE (callout_id, kind)`` and the message id is derived from that pair (UUID v5), so even a
second event for the same call-out (a re-published copy with a new event id) makes no second message.

================================  ===========================  ========================================
topic                             consumer (group id)          effect
================================  ===========================  ========================================
``roster.volunteer-contact.v1``   ``notify.contacts``          upsert ``contacts`` (newer revision wins;
                                                               mobile/openid AES-GCM-sealed + HMAC),
                                                               tombstone → row deleted
``dispatch.callout.v1``           ``notify.callouts``          ``CallOutRequested`` → message ``callout``;
                                                               ``CallOutAssigned`` → ``assigned``;
                                                               ``CallOutCancelled`` → ``stand_down``;
                                                               ``BroadcastRequested`` → ``broadcast``
================================  ===========================  ========================================

Messages are written ``pending``; the sender (:mod:`services.notify.sender`) picks the channel, words
them and sends them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from uuid import UUID

import asyncpg
import orjson

from services.notify.adapters.crypto import ContactCipher
from services.notify.domain.routing import NORMAL_PRIORITY, URGENT_PRIORITY, priority_of
from shared.consumer import Received, Tombstone
from shared.events import (
    BroadcastRequested,
    CallOutAssigned,
    CallOutCancelled,
    CallOutRequested,
    IncidentClosed,
    MeetingPointChanged,
    MessageKind,
    VolunteerContactUpdated,
)
from shared.logging import get_logger

__all__ = ["CallOutMessages", "ContactProjection", "close_incident_callouts", "message_id_for"]

log = get_logger(__name__)

_MESSAGE_NS = UUID("6d757374-6572-4e6f-7469-667900000001")


def message_id_for(callout_id: UUID, kind: MessageKind) -> UUID:
    """The message id of (call-out, kind): UUID v5, the same on every redelivery."""
    return uuid.uuid5(_MESSAGE_NS, f"{callout_id}:{kind.value}")


def broadcast_message_id(broadcast_id: UUID, callout_id: UUID) -> UUID:
    """The message id of a broadcast to one call-out: UUID v5, the same on every redelivery."""
    return uuid.uuid5(_MESSAGE_NS, f"{callout_id}:broadcast:{broadcast_id}")


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
        await self._upsert(conn, [item])

    async def apply_batch(self, conn: asyncpg.Connection, items: Sequence[Received]) -> None:
        """Apply a batch in order: runs of snapshots as one upsert (newest revision per volunteer), tombstones between."""
        run: dict[UUID, VolunteerContactUpdated] = {}
        for item in items:
            if isinstance(item, VolunteerContactUpdated):
                known = run.get(item.volunteer_id)
                if known is None or known.revision < item.revision:
                    run[item.volunteer_id] = item
                continue
            if run:
                await self._upsert(conn, list(run.values()))
                run = {}
            await self(conn, item)
        if run:
            await self._upsert(conn, list(run.values()))

    async def _upsert(self, conn: asyncpg.Connection, items: Sequence[VolunteerContactUpdated]) -> None:
        c = self._cipher
        await conn.execute(
            """
            INSERT INTO contacts (volunteer_id, revision, mobile_enc, mobile_hash, openid_enc, openid_hash,
                                  wechat_subscribed, preferred_channel, sms_consent, updated_at)
            SELECT * FROM unnest($1::uuid[], $2::int[], $3::bytea[], $4::bytea[], $5::bytea[], $6::bytea[],
                                 $7::bool[], $8::text[], $9::bool[], $10::timestamptz[])
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
            [i.volunteer_id for i in items], [i.revision for i in items], [c.encrypt(i.mobile) for i in items],
            [c.mobile_hash(i.mobile) for i in items], [c.encrypt(i.wechat_openid) for i in items],
            [c.openid_hash(i.wechat_openid) for i in items], [i.wechat_subscribed for i in items],
            [i.preferred_channel.value for i in items], [i.sms_consent for i in items],
            [i.occurred_at for i in items],
        )


_INSERT_MESSAGE = """
INSERT INTO messages (message_id, callout_id, kind, volunteer_id, incident_id, causation_id, drill, content, priority)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT ON CONSTRAINT messages_one_per_callout_kind DO NOTHING
"""


async def close_incident_callouts(conn: asyncpg.Connection, item: Received) -> None:
    """Incident events (topic ``dispatch.incident.v1``): a close, or a changed meeting point.

    ``IncidentClosed`` closes notify's view of the incident's call-outs; ``MeetingPointChanged`` rewords the
    place, map link and callback number of its call-out messages (what is sent from then on). Assigned and arrived volunteers get no stand-down when an incident closes, so without this their
    call-outs would stay open in notify for the whole reply window and a later reply without a code
    (to a newer call-out) would be matched to them. No message is sent; other incident events are
    ignored (recorded as processed by the consumer).
    """
    if isinstance(item, MeetingPointChanged):
        # what notify sends from now on for these call-outs (reply page, automatic answer) says the new place
        await conn.execute(
            """UPDATE messages SET content = content || jsonb_build_object('place', $2::text, 'map_url', $3::text,
                                                                          'callback_phone', $4::text)
               WHERE incident_id = $1 AND kind IN ('callout', 'assigned')""",
            item.incident_id, item.meeting_point, item.map_url or "", item.callback_phone or "",
        )
        return
    if isinstance(item, IncidentClosed):
        # Rows are locked in call-out id order, the order the stand-downs' UPDATE … = ANY(ids) takes them
        # in (the two consumers run at once when an incident closes; in table order they could deadlock).
        await conn.execute(
            """
            UPDATE callouts SET state = 'closed' WHERE callout_id IN (
                SELECT callout_id FROM callouts WHERE incident_id = $1 AND state <> 'closed'
                ORDER BY callout_id FOR UPDATE)
            """,
            item.incident_id,
        )


def _where(e: CallOutRequested | CallOutAssigned) -> dict[str, str]:
    """The message content's map link and callback number (empty for events older than these fields)."""
    return {"map_url": e.map_url or "", "callback_phone": e.callback_phone or ""}


class CallOutMessages:
    """Turns call-out events into ``pending`` messages (one per call-out and kind)."""

    async def __call__(self, conn: asyncpg.Connection, item: Received) -> None:
        if isinstance(item, CallOutRequested):
            await self._requested(conn, item)
        elif isinstance(item, CallOutAssigned):
            await self._assigned(conn, item)
        elif isinstance(item, CallOutCancelled):
            await self._cancelled(conn, item)
        elif isinstance(item, BroadcastRequested):
            await self._broadcast(conn, item)
        # other events on the topic are not ours; the consumer records them as processed

    async def apply_batch(self, conn: asyncpg.Connection, items: Sequence[Received]) -> None:
        """Apply a batch in order: runs of ``CallOutRequested`` and of ``CallOutCancelled`` in a few statements each.

        Cancellations come in thousands when an incident closes or a requirement fills; other events are
        applied one by one.

        Within a run only the first event of each call-out is kept: a second ``CallOutRequested`` or
        ``CallOutCancelled`` for the same call-out changes nothing, applied one by one or not. A run's order
        therefore does not matter; runs and the other events keep the topic's order.
        """
        run: dict[UUID, CallOutRequested | CallOutCancelled] = {}
        kind: type | None = None

        async def flush() -> None:
            if kind is CallOutRequested:
                await self._requested_many(conn, list(run.values()))  # type: ignore[arg-type]
            elif kind is CallOutCancelled:
                await self._cancelled_many(conn, list(run.values()))  # type: ignore[arg-type]
            run.clear()

        for item in items:
            if isinstance(item, CallOutRequested | CallOutCancelled):
                if type(item) is not kind:
                    await flush()
                    kind = type(item)
                run.setdefault(item.callout_id, item)
                continue
            await flush()
            kind = None
            await self(conn, item)
        await flush()

    async def _requested(self, conn: asyncpg.Connection, e: CallOutRequested) -> None:
        await self._requested_many(conn, [e])

    async def _requested_many(self, conn: asyncpg.Connection, events: Sequence[CallOutRequested]) -> None:
        contents = [
            orjson.dumps({"title": e.incident_title, "place": e.meeting_point or e.place, "role": e.role,
                          "reply_code": e.reply_code, "respond_by": e.respond_by.isoformat(), **_where(e)}).decode()
            for e in events
        ]
        await conn.execute(
            """
            WITH c AS (
                INSERT INTO callouts (callout_id, volunteer_id, incident_id, reply_code, drill, requested_at)
                SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::bool[], $6::timestamptz[])
                ON CONFLICT (callout_id) DO NOTHING
            )
            INSERT INTO messages (message_id, callout_id, kind, volunteer_id, incident_id, causation_id, drill, content,
                                  priority)
            SELECT u.message_id, u.callout_id, 'callout', u.volunteer_id, u.incident_id, u.causation_id, u.drill,
                   u.content::jsonb, u.priority
            FROM unnest($7::uuid[], $1::uuid[], $2::uuid[], $3::uuid[], $8::uuid[], $5::bool[], $9::text[],
                        $10::smallint[])
                 AS u(message_id, callout_id, volunteer_id, incident_id, causation_id, drill, content, priority)
            ON CONFLICT ON CONSTRAINT messages_one_per_callout_kind DO NOTHING
            """,
            [e.callout_id for e in events], [e.volunteer_id for e in events], [e.incident_id for e in events],
            [e.reply_code for e in events], [e.drill for e in events], [e.occurred_at for e in events],
            [message_id_for(e.callout_id, MessageKind.CALLOUT) for e in events], [e.event_id for e in events],
            contents, [priority_of(e.incident_kind) for e in events],
        )

    async def _assigned(self, conn: asyncpg.Connection, e: CallOutAssigned) -> None:
        code = await conn.fetchval(
            "UPDATE callouts SET state = 'assigned' WHERE callout_id = $1 AND state <> 'closed' RETURNING reply_code",
            e.callout_id,
        )
        if code is None and e.reply_code is not None:  # a move: the call-out is announced by this event alone
            code = await conn.fetchval(
                """INSERT INTO callouts (callout_id, volunteer_id, incident_id, reply_code, drill, requested_at, state)
                   VALUES ($1, $2, $3, $4, $5, $6, 'assigned') ON CONFLICT (callout_id) DO NOTHING RETURNING reply_code""",
                e.callout_id, e.volunteer_id, e.incident_id, e.reply_code, e.drill, e.occurred_at,
            )
        content = {"title": e.incident_title, "place": e.meeting_point or e.place, "reply_code": code or "",
                   **_where(e)}
        if e.cardiac_role is not None:  # what to do: CPR, or fetch this AED first (sender words it)
            content.update(cardiac_role=e.cardiac_role.value, aed_place=e.aed_place, aed_map_url=e.aed_map_url or "")
        await conn.execute(
            _INSERT_MESSAGE,
            message_id_for(e.callout_id, MessageKind.ASSIGNED), e.callout_id, MessageKind.ASSIGNED.value,
            e.volunteer_id, e.incident_id, e.event_id, e.drill, content,
            URGENT_PRIORITY if e.cardiac_role is not None else NORMAL_PRIORITY,
        )

    async def _broadcast(self, conn: asyncpg.Connection, e: BroadcastRequested) -> None:
        """Queue an operator broadcast for one call-out: once per (call-out, broadcast), on the call-out's channel.

        The content keeps the call-out's reply code, so the volunteer can still answer it from this message.
        """
        code = await conn.fetchval("SELECT reply_code FROM callouts WHERE callout_id = $1", e.callout_id)
        await conn.execute(
            """
            INSERT INTO messages (message_id, callout_id, kind, volunteer_id, incident_id, causation_id, drill, content,
                                  broadcast_id)
            VALUES ($1, $2, 'broadcast', $3, $4, $5, $6, $7, $8)
            ON CONFLICT ON CONSTRAINT messages_one_per_callout_kind DO NOTHING
            """,
            broadcast_message_id(e.broadcast_id, e.callout_id), e.callout_id, e.volunteer_id, e.incident_id,
            e.event_id, e.drill,
            {"title": e.incident_title, "text": e.text, "callback_phone": e.callback_phone or "",
             "reply_code": code or ""},
            e.broadcast_id,
        )

    async def _cancelled(self, conn: asyncpg.Connection, e: CallOutCancelled) -> None:
        await self._cancelled_many(conn, [e])

    async def _cancelled_many(self, conn: asyncpg.Connection, events: Sequence[CallOutCancelled]) -> None:
        """Close the call-outs, withhold those not sent yet, and queue the stand-downs (four statements).

        ``events`` concern distinct call-outs (see :meth:`apply_batch`).
        """
        ids = [e.callout_id for e in events]
        await conn.execute(
            "UPDATE callouts SET state = 'closed', closed_at = now() WHERE callout_id = ANY($1::uuid[]) "
            "AND state <> 'closed'",
            ids,
        )
        # A call-out that has not left yet is simply not sent: no stand-down for a message never received.
        # One that went by WeChat without a receipt and waits to go again by SMS is not sent again either,
        # but may have reached the phone by WeChat: it is stood down.
        withheld = await conn.fetch(
            """
            WITH unsent AS (
                SELECT message_id, callout_id, error_code FROM messages
                WHERE callout_id = ANY($1::uuid[]) AND kind = 'callout' AND status = 'pending' AND channel IS NULL
                  AND attempts = 0
                ORDER BY message_id
                FOR UPDATE
            )
            UPDATE messages m SET status = 'failed', updated_at = now(),
                error_code = CASE WHEN unsent.error_code = 'no_receipt' THEN 'cancelled_before_resend'
                                  ELSE 'cancelled_before_send' END
            FROM unsent WHERE m.message_id = unsent.message_id
            RETURNING unsent.callout_id, coalesce(unsent.error_code = 'no_receipt', false) AS maybe_received
            """,
            ids,
        )
        reasons = {e.callout_id: e.reason.value for e in events}
        for w in withheld:
            log.info("message.withheld", callout_id=str(w["callout_id"]), reason=reasons[w["callout_id"]],
                     maybe_received=w["maybe_received"])
        # Never received: withheld before it was ever sent, now or by an earlier cancellation (a second
        # CallOutCancelled with its own event id must not stand down a call-out the phone never got).
        never_received = {r["callout_id"] for r in await conn.fetch(
            "SELECT callout_id FROM messages WHERE callout_id = ANY($1::uuid[]) AND kind = 'callout' "
            "AND status = 'failed' AND error_code = 'cancelled_before_send'",
            ids,
        )}
        stand_downs = [e for e in events if e.callout_id not in never_received]
        if not stand_downs:
            return
        await conn.execute(
            """
            INSERT INTO messages (message_id, callout_id, kind, volunteer_id, incident_id, causation_id, drill, content)
            SELECT u.message_id, u.callout_id, 'stand_down', u.volunteer_id, u.incident_id, u.causation_id, u.drill,
                   u.content::jsonb
            FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[], $6::bool[], $7::text[])
                 AS u(message_id, callout_id, volunteer_id, incident_id, causation_id, drill, content)
            ON CONFLICT ON CONSTRAINT messages_one_per_callout_kind DO NOTHING
            """,
            [message_id_for(e.callout_id, MessageKind.STAND_DOWN) for e in stand_downs],
            [e.callout_id for e in stand_downs], [e.volunteer_id for e in stand_downs],
            [e.incident_id for e in stand_downs], [e.event_id for e in stand_downs], [e.drill for e in stand_downs],
            [orjson.dumps({"title": e.incident_title, "reason": e.reason.value, "was_assigned": e.was_assigned,
                           **({"engaged_in": e.engaged_incident_title} if e.engaged_incident_title else {}),
                           }).decode() for e in stand_downs],
        )
