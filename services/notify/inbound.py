"""What comes back from the phones: delivery receipts and replies, stored and published.

Called by the callback routes and the reply page (:mod:`services.notify.handlers.callbacks`), each on
a connection inside a transaction, so the stored state and the events (outbox) commit together;
:func:`record_replies` writes in one statement, so its caller needs no transaction.

* :func:`apply_receipts` — delivery receipts → ``delivered`` + ``MessageDelivered``, or a failure:
  ``MessageFailed`` and, for WeChat when the volunteer has SMS, a fallback to SMS. A receipt for a
  message already settled changes nothing (provider retries are harmless). A receipt that arrives
  before the send's result was stored is kept in ``early_receipts`` and applied when it is; one for a
  message already recorded (delivered or failed: a replay) is not kept.
* :func:`record_replies` — one provider push of replies (up to 100 SMS uplinks), or one reply
  (:func:`record_reply`, the reply page): one path for one and for many, two statements per push.
  Each reply is refused as a replay when ``(provider, dedup_key)`` was seen, else stored (always,
  even unrecognised or from an unknown phone), parsed, matched to the volunteer's call-out and
  published as ``ReplyReceived`` on ``notify.reply.v1``. TD/退订 withdraws SMS consent; a decline
  closes the call-out locally.

Personal data in replies: volunteers type phone numbers and ids into free text ("换号了 19991000398
请联系"). The event's ``text`` is masked with :func:`shared.privacy.mask_text` (``199****0398``; openids
``oUpF****eS6o``), so no other service receives them. Notify keeps the raw text in its own ``replies``
table: it is the one service that holds phone numbers (Architecture: "only notify ever holds phone
numbers and WeChat ids"), and an operator working on an unrecognised reply may need the new number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import asyncpg

from services.notify.adapters.crypto import ContactCipher
from services.notify.channels.base import DeliveryReceipt
from services.notify.domain.replies import ParsedReply, parse_reply
from services.notify.domain.routing import RecentCallOut, choose_channel, match_callout
from services.notify.handlers.consumers import message_id_for
from services.notify.sender import DROP_CLAIM
from shared import outbox
from shared.events import MessageDelivered, MessageFailed, MessageKind, ReplyIntent, ReplyReceived
from shared.inputs import storable
from shared.logging import get_logger
from shared.metrics import NOTIFY_MESSAGES, NOTIFY_PROVIDER_ERRORS, NOTIFY_RECEIPT_SECONDS
from shared.privacy import mask_mobile, mask_openid, mask_text
from shared.topics import DELIVERY, REPLY
from shared.vocabulary import Channel

if TYPE_CHECKING:
    from services.notify.sender import Sender

__all__ = ["InboundReply", "ReceiptOutcome", "apply_early_receipts", "apply_receipts", "record_replies", "record_reply"]

log = get_logger(__name__)


class ReceiptOutcome:
    """Counts of one callback's receipts: applied, unchanged (replays/settled), early (kept for later)."""

    def __init__(self) -> None:
        self.delivered = 0
        self.failed = 0
        self.unchanged = 0
        self.early = 0


def _fields(row: Any) -> dict[str, Any]:
    return {
        "message_id": row["message_id"], "callout_id": row["callout_id"], "volunteer_id": row["volunteer_id"],
        "kind": MessageKind(row["kind"]), "channel": Channel(row["channel"]), "provider": row["provider"],
        "correlation_id": row["incident_id"], "causation_id": row["causation_id"], "drill": row["drill"],
    }


_RECEIPT_ROW = """m.message_id, m.callout_id, m.volunteer_id, m.kind, m.channel, m.provider, m.incident_id,
    m.causation_id, m.drill, m.status, m.failed_channels, m.provider_message_id"""


async def apply_receipts(
    conn: asyncpg.Connection, provider: str, receipts: Sequence[DeliveryReceipt], *, cipher: ContactCipher,
    sms_available: bool = True,
) -> ReceiptOutcome:
    """Apply one callback's delivery receipts (see the module docstring).

    Args:
        conn: a connection inside the callback's transaction.
        provider: ``aliyun`` | ``tencent`` | ``wechat``.
        receipts: parsed by the provider's ``parse_receipts``.
        cipher: decrypts the contact to decide a fallback.
        sms_available: an SMS provider is configured (WeChat failures can fall back).

    """
    out = ReceiptOutcome()
    delivered = [r for r in receipts if r.delivered and r.provider_message_id]
    if delivered:
        rows = await conn.fetch(
            f"""
            UPDATE messages m SET status = 'delivered', delivered_at = u.at, updated_at = now()
            FROM unnest($2::text[], $3::timestamptz[]) AS u(pid, at)
            WHERE m.provider = $1 AND m.provider_message_id = u.pid AND m.status = 'sent'
            RETURNING {_RECEIPT_ROW}, extract(epoch FROM u.at - m.sent_at)::float8 AS receipt_seconds
            """,
            provider, [r.provider_message_id for r in delivered], [r.reported_at for r in delivered],
        )
        for row in rows:
            NOTIFY_MESSAGES.labels(row["channel"], row["provider"], "delivered").inc()
            if row["receipt_seconds"] is not None:
                NOTIFY_RECEIPT_SECONDS.labels(row["channel"], row["provider"]).observe(max(0.0, row["receipt_seconds"]))
        await outbox.add_many(conn, [
            (DELIVERY, str(row["volunteer_id"]),
             MessageDelivered(**_fields(row), provider_message_id=row["provider_message_id"]))
            for row in rows
        ])
        out.delivered += len(rows)
        done = {row["provider_message_id"] for row in rows}
        rest = [r for r in delivered if r.provider_message_id not in done]
        if rest:  # a message already recorded (delivered, failed, a replay): nothing to keep for later
            known = {r["provider_message_id"] for r in await conn.fetch(
                "SELECT provider_message_id FROM messages WHERE provider = $1 AND provider_message_id = ANY($2::text[])",
                provider, [r.provider_message_id for r in rest])}
            out.unchanged += len([r for r in rest if r.provider_message_id in known])
            rest = [r for r in rest if r.provider_message_id not in known]
    else:
        rest = []
    if rest:
        # Not (yet) recorded as sent: keep them; the sender applies them when it records the send.
        await conn.execute(
            "INSERT INTO early_receipts (provider, provider_message_id, delivered, error_code, reported_at) "
            "SELECT $1, * FROM unnest($2::text[], $3::bool[], $4::text[], $5::timestamptz[]) ON CONFLICT DO NOTHING",
            provider, [r.provider_message_id for r in rest], [True] * len(rest), [None] * len(rest),
            [r.reported_at for r in rest],
        )
        out.early += len(rest)
    failed = [r for r in receipts if not r.delivered and r.provider_message_id]
    for r in failed:
        row = await conn.fetchrow(
            f"SELECT {_RECEIPT_ROW} FROM messages m WHERE m.provider = $1 AND m.provider_message_id = $2 FOR UPDATE",
            provider, r.provider_message_id,
        )
        if row is None:
            await conn.execute(
                "INSERT INTO early_receipts (provider, provider_message_id, delivered, error_code, reported_at) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                provider, r.provider_message_id, r.delivered, r.error_code, r.reported_at,
            )
            out.early += 1
            continue
        if row["status"] != "sent":
            out.unchanged += 1
            continue
        await _failed_receipt(conn, row, r.error_code or "UNDELIVERED", cipher=cipher, sms_available=sms_available)
        out.failed += 1
    out.unchanged += len([r for r in receipts if not r.provider_message_id])
    return out


async def _failed_receipt(
    conn: asyncpg.Connection, row: Any, code: str, *, cipher: ContactCipher, sms_available: bool
) -> None:
    NOTIFY_MESSAGES.labels(row["channel"], row["provider"], "undelivered").inc()
    NOTIFY_PROVIDER_ERRORS.labels(row["provider"], code).inc()
    fallback = False
    if row["channel"] == Channel.WECHAT.value and sms_available:
        c = await conn.fetchrow("SELECT mobile_enc, sms_consent FROM contacts WHERE volunteer_id = $1",
                                row["volunteer_id"])
        if c is not None and c["mobile_enc"] is not None and c["sms_consent"]:
            from services.notify.domain.routing import ContactView

            view = ContactView(mobile=cipher.decrypt(c["mobile_enc"]), openid=None, wechat_subscribed=False,
                               sms_consent=True)
            fallback = choose_channel(view, exclude=[Channel.WECHAT]) is Channel.SMS
    if fallback:
        await conn.execute(
            f"""
            UPDATE messages SET status = 'pending', failed_channels = array_append(failed_channels, channel),
                channel = NULL, provider = NULL, provider_message_id = NULL, error_code = $2, attempts = 0,
                next_attempt_at = now(), {DROP_CLAIM}, updated_at = now()
            WHERE message_id = $1
            """,
            row["message_id"], code,
        )
    else:
        await conn.execute(
            "UPDATE messages SET status = 'failed', error_code = $2, updated_at = now() WHERE message_id = $1",
            row["message_id"], code,
        )
    await outbox.add(conn, DELIVERY, str(row["volunteer_id"]),
                     MessageFailed(**_fields(row), error_code=code, fallback=fallback))
    log.info("message.undelivered", message_id=str(row["message_id"]), error_code=code, fallback=fallback)


async def apply_early_receipts(
    conn: asyncpg.Connection, sender: Sender, sent: Sequence[tuple[str, str | None]]
) -> int:
    """Apply receipts that arrived before these sends were recorded as ``sent``. Returns how many."""
    pids = [pid for _, pid in sent if pid]
    if not pids:
        return 0
    early = await conn.fetch(
        "DELETE FROM early_receipts WHERE provider_message_id = ANY($1::text[]) "
        "RETURNING provider, provider_message_id, delivered, error_code, reported_at",
        pids,
    )
    by_provider: dict[str, list[DeliveryReceipt]] = {}
    for e in early:
        by_provider.setdefault(e["provider"], []).append(DeliveryReceipt(
            provider_message_id=e["provider_message_id"], message_id=None, recipient=None,
            delivered=e["delivered"], error_code=e["error_code"], reported_at=e["reported_at"],
        ))
    for provider, receipts in by_provider.items():
        await apply_receipts(conn, provider, receipts, cipher=sender._cipher,  # noqa: SLF001
                             sms_available=Channel.SMS in sender._providers)  # noqa: SLF001
    return len(early)


# A volunteer's call-outs within the reply window, as reply matching reads them (``RecentCallOut``): a
# stand-down or a decline sets ``closed_at``; an incident's close does not (no message is sent then).
_RECENT_COLUMNS = """
    c.callout_id, c.reply_code, c.requested_at, c.incident_id, c.drill, c.state <> 'closed' AS open,
    c.closed_at AS stood_down_at, EXISTS (SELECT 1 FROM replies r WHERE r.callout_id = c.callout_id) AS answered,
    c.state = 'assigned' AS assigned
"""
_RECENT_FIELDS = ("callout_id", "reply_code", "requested_at", "incident_id", "drill", "open", "stood_down_at",
                  "answered", "assigned")


def _match(rows: Sequence[Any], parsed: ParsedReply) -> UUID | None:
    """:func:`match_callout` over rows of ``_RECENT_COLUMNS`` (records or dicts) for the ``parsed`` reply."""
    return match_callout([RecentCallOut(r["callout_id"], r["reply_code"], r["requested_at"], open=r["open"],
                                        stood_down_at=r["stood_down_at"], answered=r["answered"],
                                        assigned=r["assigned"]) for r in rows],
                         parsed.code, arrival=parsed.intent is ReplyIntent.ARRIVED)


# The one automatic answer to an unrecognised reply: a message of kind auto_answer for the call-out, its
# content copied from the call-out's own message (title, meeting point, map link, callback number). The
# message id is (call-out, kind) and messages_one_per_callout_kind is unique, so a call-out gets at most one
# however many unrecognised replies come: an auto-responder answering it cannot start a loop.
_AUTO_ANSWER = """
    INSERT INTO messages (message_id, callout_id, kind, volunteer_id, incident_id, causation_id, drill, content)
    SELECT a.message_id, m.callout_id, 'auto_answer', m.volunteer_id, m.incident_id, a.causation_id, m.drill, m.content
    FROM unnest($1::uuid[], $2::uuid[], $3::uuid[]) AS a(message_id, callout_id, causation_id)
    JOIN messages m ON m.callout_id = a.callout_id AND m.kind = 'callout'
    JOIN callouts c ON c.callout_id = a.callout_id AND c.state <> 'closed'
    ON CONFLICT ON CONSTRAINT messages_one_per_callout_kind DO NOTHING
"""


async def _answer_unrecognised(conn: asyncpg.Connection, events: Sequence[ReplyReceived]) -> None:
    """Queue the automatic answer for each unrecognised reply matched to an open call-out (at most one each)."""
    todo = [(e.callout_id, e.event_id) for e in events
            if e.intent is ReplyIntent.UNRECOGNISED and e.callout_id is not None]
    if todo:
        await conn.execute(_AUTO_ANSWER, [message_id_for(c, MessageKind.AUTO_ANSWER) for c, _ in todo],
                           [c for c, _ in todo], [eid for _, eid in todo])


@dataclass(frozen=True)
class InboundReply:
    """One reply to record (:func:`record_replies`).

    Attributes:
        dedup_key: the provider's id of this reply (``aliyun:<sequence_id>``, …); a second delivery is a replay.
        text: what the volunteer wrote (or the reply-page button's label), unchanged.
        received_at: when the provider received it, UTC.
        sender: E.164 mobile (SMS) or openid; looked up when ``volunteer_id`` is not given.
        volunteer_id: the volunteer, when already known (reply page).
        callout_id: the call-out, when already known (reply page).
        parsed: the intent, when already known (reply page); else parsed from ``text``.

    """

    dedup_key: str
    text: str
    received_at: datetime
    sender: str | None = None
    volunteer_id: UUID | None = None
    callout_id: UUID | None = None
    parsed: ParsedReply | None = None


async def record_reply(
    conn: asyncpg.Connection,
    *,
    provider: str,
    dedup_key: str,
    channel: Channel,
    text: str,
    received_at: datetime,
    cipher: ContactCipher,
    sender: str | None = None,
    volunteer_id: UUID | None = None,
    callout_id: UUID | None = None,
    parsed: ParsedReply | None = None,
    window_hours: float = 24.0,
) -> ReplyReceived | None:
    """One reply: :func:`record_replies` with a push of one (the fields as in :class:`InboundReply`).

    Returns:
        The published event (``text`` masked), or None when the reply is a replay (nothing changed).

    """
    published = await record_replies(
        conn, provider=provider, channel=channel, cipher=cipher, window_hours=window_hours,
        uplinks=[InboundReply(dedup_key, text, received_at, sender=sender, volunteer_id=volunteer_id,
                              callout_id=callout_id, parsed=parsed)],
    )
    return published[0] if published else None


async def record_replies(
    conn: asyncpg.Connection,
    *,
    provider: str,
    channel: Channel,
    uplinks: Sequence[Any],
    cipher: ContactCipher,
    window_hours: float = 24.0,
) -> list[ReplyReceived]:
    """Store, parse, match and publish one push of replies (or one reply), in push order.

    Each reply is refused as a replay when ``(provider, dedup_key)`` was seen, else stored (always,
    even unrecognised or from an unknown phone), parsed (:func:`services.notify.domain.replies.parse_reply`),
    matched to the volunteer's call-out (:func:`services.notify.domain.routing.match_callout`), and
    published as ``ReplyReceived`` on ``notify.reply.v1`` keyed by volunteer id (or the masked sender
    when the phone is unknown). TD/退订 withdraws SMS consent; a decline closes the call-out locally.

    Two statements per push, whatever its size (each a round trip on the notify event loop that serves
    every callback; the reply path's cost under load, ``bench/reply_path.py``): one read of the push's
    dedup keys already stored, the senders' contacts and their call-outs within the window (and the
    call-outs named by the caller); and one write — the replies (``INSERT … unnest … ON CONFLICT DO
    NOTHING``), the declined call-outs closed and the opt-outs recorded (for the replies that insert
    stored), and their ``ReplyReceived`` events in the outbox, in push order — as data-modifying CTEs
    of one statement, so they commit together without a transaction of their own (inside the
    caller's, they commit with it). Replies are matched in order against the call-outs as the earlier
    replies of the push left them (a decline closes its call-out for the replies after it). A dedup
    key already stored, or twice in the push, is a replay: nothing is stored or published for it; one
    stored concurrently by a retried push is dropped at the insert, with its effects.

    Args:
        conn: a connection (in a transaction or not).
        provider: ``aliyun`` | ``tencent`` | ``wechat``.
        channel: SMS or WeChat.
        uplinks: the push's replies: :class:`InboundReply`, or provider uplinks
            (:class:`services.notify.channels.base.Uplink`: ``sender`` E.164 or openid, ``text``,
            ``received_at`` UTC, ``dedup_key``).
        cipher: hashes the senders for the look-up.
        window_hours: how old a call-out may be and still be answered without being named.

    Returns:
        The published events (``text`` masked), in push order; replays left out.

    """
    if not uplinks:
        return []
    # NUL or a lone surrogate typed into an SMS: stored without them, not a 500 that loses the whole push
    items = [InboundReply(storable(u.dedup_key), storable(u.text), u.received_at,
                          sender=storable(u.sender) if u.sender is not None else None,
                          volunteer_id=getattr(u, "volunteer_id", None), callout_id=getattr(u, "callout_id", None),
                          parsed=getattr(u, "parsed", None))
             for u in uplinks]
    sms = channel is Channel.SMS
    column = "mobile_hash" if sms else "openid_hash"
    hash_of = {u.sender: cipher.mobile_hash(u.sender) if sms else cipher.openid_hash(u.sender)
               for u in items if u.sender is not None}
    stored_before: set[str] = set()
    owners: dict[bytes, UUID] = {}
    recent: dict[UUID, list[dict[str, Any]]] = {}
    named: dict[UUID, dict[str, Any]] = {}  # call-outs the caller named (reply page), whatever their age
    for r in await conn.fetch(
        f"""
        WITH own AS (
            SELECT DISTINCT ON ({column}) {column} AS h, volunteer_id FROM contacts
            WHERE {column} = ANY($3::bytea[]) ORDER BY {column}, updated_at DESC
        )
        SELECT 'dup' AS kind, dedup_key, NULL::bytea AS h, NULL::uuid AS volunteer_id, NULL::uuid AS callout_id,
               NULL::text AS reply_code, NULL::timestamptz AS requested_at, NULL::uuid AS incident_id,
               NULL::bool AS drill, NULL::bool AS open, NULL::timestamptz AS stood_down_at, NULL::bool AS answered,
               NULL::bool AS assigned
        FROM replies WHERE provider = $1 AND dedup_key = ANY($2::text[])
        UNION ALL
        SELECT 'own', NULL, h, volunteer_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM own
        UNION ALL
        SELECT 'call', NULL, NULL, c.volunteer_id, {_RECENT_COLUMNS}
        FROM callouts c WHERE (c.volunteer_id IN (SELECT volunteer_id FROM own) OR c.volunteer_id = ANY($5::uuid[]))
          AND c.requested_at > now() - make_interval(secs => $4)
        UNION ALL
        SELECT 'named', NULL, NULL, c.volunteer_id, {_RECENT_COLUMNS}
        FROM callouts c WHERE c.callout_id = ANY($6::uuid[])
        """,
        provider, [u.dedup_key for u in items], list(set(hash_of.values())), window_hours * 3600,
        list({u.volunteer_id for u in items if u.volunteer_id is not None}),
        list({u.callout_id for u in items if u.callout_id is not None}),
    ):
        if r["kind"] == "dup":
            stored_before.add(r["dedup_key"])
        elif r["kind"] == "own":
            owners[r["h"]] = r["volunteer_id"]
        elif r["kind"] == "call":
            recent.setdefault(r["volunteer_id"], []).append({k: r[k] for k in _RECENT_FIELDS})
        else:
            named[r["callout_id"]] = {k: r[k] for k in _RECENT_FIELDS}
    for mine in recent.values():
        mine.sort(key=lambda c: c["requested_at"], reverse=True)  # newest first
    rows: list[tuple[Any, ...]] = []
    events: list[ReplyReceived] = []
    declines: dict[UUID, UUID] = {}  # reply id → call-out it closes
    opt_outs: dict[UUID, UUID] = {}  # reply id → volunteer
    for u in items:
        if u.dedup_key in stored_before:
            log.info("reply.replay_ignored", provider=provider)
            continue
        stored_before.add(u.dedup_key)  # a second copy in the same push is a replay too
        sender_hash = hash_of[u.sender] if u.sender is not None else None
        volunteer_id = u.volunteer_id or (owners.get(sender_hash) if sender_hash is not None else None)
        masked = None if u.sender is None else mask_mobile(u.sender) if sms else mask_openid(u.sender)
        mine = recent.get(volunteer_id, []) if volunteer_id else []
        parsed = u.parsed or parse_reply(u.text, [r["reply_code"] for r in mine])
        callout_id = u.callout_id
        if callout_id is None and parsed.intent is not ReplyIntent.UNSUBSCRIBE:
            callout_id = _match(mine, parsed)
        meta = None
        if callout_id is not None:
            meta = next((r for r in mine if r["callout_id"] == callout_id), None) or named.get(callout_id)
        if meta is not None:
            meta["answered"] = True  # the replies after it in the push see it answered, as they would one by one
        reply_id = uuid4()
        rows.append((reply_id, provider, u.dedup_key, channel.value, volunteer_id, callout_id, sender_hash,
                     masked if volunteer_id is None else None, u.text, parsed.intent.value, parsed.eta_minutes,
                     u.received_at))
        if parsed.intent is ReplyIntent.UNSUBSCRIBE and volunteer_id is not None:
            opt_outs[reply_id] = volunteer_id
        if parsed.intent is ReplyIntent.DECLINE and meta is not None:
            declines[reply_id] = meta["callout_id"]
            meta["open"] = False  # the replies after it see it closed, as they would one by one
        events.append(ReplyReceived(
            reply_id=reply_id, volunteer_id=volunteer_id, callout_id=callout_id, intent=parsed.intent,
            eta_minutes=parsed.eta_minutes, text=mask_text(u.text), channel=channel,
            sender=masked if volunteer_id is None else None, received_at=u.received_at,
            correlation_id=meta["incident_id"] if meta else None, drill=bool(meta["drill"]) if meta else False,
        ))
    if not rows:
        return []
    event_ids, topics, keys, payloads, headers = outbox.columns(
        (REPLY, str(e.volunteer_id) if e.volunteer_id else (e.sender or "unknown"), e) for e in events)
    stored = {r["reply_id"] for r in await conn.fetch(
        """
        WITH ins AS (
            INSERT INTO replies (reply_id, provider, dedup_key, channel, volunteer_id, callout_id, sender_hash,
                                 sender_masked, text, intent, eta_minutes, received_at)
            SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::uuid[], $6::uuid[],
                                 $7::bytea[], $8::text[], $9::text[], $10::text[], $11::int[], $12::timestamptz[])
            ON CONFLICT ON CONSTRAINT replies_dedup DO NOTHING RETURNING reply_id
        ), closing AS (
            UPDATE callouts SET state = 'closed', closed_at = now()
            WHERE callout_id IN (SELECT d.callout_id FROM unnest($13::uuid[], $14::uuid[]) AS d(reply_id, callout_id)
                                 JOIN ins USING (reply_id))
              AND state = 'open'
        ), leaving AS (
            UPDATE contacts SET sms_consent = false, sms_opt_out_at = now()
            WHERE volunteer_id IN (SELECT o.volunteer_id FROM unnest($15::uuid[], $16::uuid[]) AS o(reply_id, volunteer_id)
                                   JOIN ins USING (reply_id))
        ), published AS (
            INSERT INTO outbox (event_id, topic, key, payload, headers)
            SELECT e.event_id, e.topic, e.key, e.payload, e.headers
            FROM unnest($17::uuid[], $18::uuid[], $19::text[], $20::text[], $21::bytea[], $22::jsonb[])
                 WITH ORDINALITY AS e(reply_id, event_id, topic, key, payload, headers, n)
            WHERE e.reply_id IN (SELECT reply_id FROM ins)
            ORDER BY e.n
        )
        SELECT reply_id FROM ins
        """,
        *[list(col) for col in zip(*rows, strict=True)],
        list(declines), list(declines.values()), list(opt_outs), list(opt_outs.values()),
        [e.reply_id for e in events], event_ids, topics, keys, payloads, headers,
    )}
    if len(stored) < len(rows):
        log.info("reply.replay_ignored", provider=provider, count=len(rows) - len(stored))
    published = [e for e in events if e.reply_id in stored]
    await _answer_unrecognised(conn, published)
    for e in published:
        log.info("reply.received", reply_id=str(e.reply_id), volunteer_id=str(e.volunteer_id) if e.volunteer_id else None,
                 callout_id=str(e.callout_id) if e.callout_id else None, intent=e.intent.value)
    return published
