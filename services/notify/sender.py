"""The sender: claims pending messages, sends them through the providers, records what happened.

A background task of the notify service (``ServiceSpec.background``). Exactly one message per
call-out and kind, even when notify dies in the middle of a send:

1. **Claim** (one transaction): pending messages that are due are locked ``FOR UPDATE SKIP LOCKED``
   (several replicas never take the same row), their channel is chosen and their text rendered
   (pure: :mod:`services.notify.domain`), and they are marked ``sending`` with the channel, provider and
   text **before** any provider is called; the transaction commits.
2. **Send**: per provider, in pieces of ``max_batch × send_concurrency`` (the provider batches and
   rate-limits inside), providers concurrently. The message id is the provider's idempotency key.
3. **Record** (group commit: one transaction for every answer that came in while the previous record
   ran): accepted → ``sent`` + provider message id + ``MessageSent``; retryable (rate limit, busy,
   timeout) → ``pending`` again after an exponential backoff; permanent for this recipient on WeChat
   (43004 not following, 40003, 43101) or no delivery receipt within ``wechat_receipt_timeout_seconds``
   → ``MessageFailed(fallback=True)`` and back to ``pending`` on SMS; nothing left → ``failed`` +
   ``MessageFailed``. Events go through the outbox in the same transaction.
4. **In doubt**: a message left ``sending`` by a sender that is gone (notify died between 1 and 3, on this
   host or another replica), or ``sending`` for longer than ``sending_timeout_seconds``, is resolved with
   ``provider.query`` before anything is resent: accepted → ``sent``; certainly not → ``pending``; unknown
   → asked again later, and resent only after ``in_doubt_resend_after_seconds`` (a possible duplicate is
   preferred to a lost call-out). A sender is alive while it holds the session advisory lock
   (``SENDER_LOCK_KEY``, ``hashtext(instance id)``) on its loop's connection; a claim records the
   sender's instance id (``claimed_by``), so a replica that starts later leaves a live sender's
   requests in flight alone. The lock goes with the sender's database session: a killed process's rows
   are resolvable at once. A failed round keeps the lock's connection; if that connection dies (PostgreSQL
   restarted) while the process lives, another notify may take this one's rows as gone in the moment
   before the loop takes the lock again, so a request claimed under a lost lease is sent only if its row
   is still under its claim once the lease is held again (:meth:`Sender._still_claimed`).
5. **Ownership**: each claim has its own ``claim_id``; a provider's answer is recorded only on rows still
   ``sending`` under that claim. An answer that comes after its rows were resolved elsewhere changes
   nothing and emits no second event.

Errors: provider business errors never raise (see :mod:`services.notify.channels.base`); a database
or network error in a round is logged and the round is retried after ``send_poll_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from services.notify.adapters.crypto import ContactCipher
from services.notify.adapters.reply_links import ReplyLinks
from services.notify.channels.base import ChannelProvider, OutboundMessage, SendResult
from services.notify.domain.routing import (
    URGENT_PRIORITY,
    ContactView,
    choose_channel,
    receipt_overdue_reason,
    retry_delay,
)
from services.notify.domain.templates import MessageContent, render
from shared import outbox
from shared.consumer import is_transient
from shared.events import CancelReason, MessageFailed, MessageKind, MessageSent, utcnow
from shared.groupcommit import GroupCommit
from shared.logging import get_logger
from shared.maps import position_of
from shared.metrics import NOTIFY_MESSAGES, NOTIFY_PROVIDER_ERRORS
from shared.settings import NotifySettings
from shared.topics import DELIVERY
from shared.vocabulary import Channel

__all__ = ["DROP_CLAIM", "SENDER_LOCK_KEY", "Claimed", "Sender", "SenderStats"]

log = get_logger(__name__)
SENDER_LOCK_KEY = 0x6D73_6E64  # "msnd": a live sender holds (SENDER_LOCK_KEY, hashtext(its instance id))
# A provider's answer is recorded only on a row still sending under the claim it answers (u.claim_id).
_OWNED = "m.status = 'sending' AND m.claim_id IS NOT DISTINCT FROM u.claim_id"
DROP_CLAIM = "claimed_by = NULL, claim_id = NULL"
"""SET clause of every update that puts a message back to ``pending``: the next claim names its own sender, and
an older notify's claim (which sets neither column) cannot inherit a gone sender's."""

_WITHHELD_WHEN_CLOSED = frozenset({MessageKind.CALLOUT.value, MessageKind.BROADCAST.value, MessageKind.AUTO_ANSWER.value})

_MESSAGE_COLUMNS = """m.message_id, m.callout_id, m.kind, m.volunteer_id, m.incident_id, m.causation_id, m.drill, m.priority,
    m.content, m.status, m.channel, m.provider, m.failed_channels, m.body, m.attempts, m.sending_since, m.claim_id,
    c.mobile_enc, c.openid_enc, c.wechat_subscribed, c.sms_consent, c.preferred_channel,
    c.volunteer_id IS NOT NULL AS has_contact"""


@dataclass
class SenderStats:
    """Counters for logs, tests and the benchmark."""

    sent: int = 0
    retried: int = 0
    failed: int = 0
    fallbacks: int = 0
    in_doubt_resolved: int = 0
    receipts_overdue: int = 0  # WeChat messages past the receipt time-out not sent again (see fallback_unreceipted)
    rounds: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Claimed:
    """A message marked ``sending``, with what is needed to send it and to record the result."""

    row: Any  # the asyncpg record (ids, kind, drill...)
    channel: Channel
    provider: ChannelProvider
    outbound: OutboundMessage
    contact: ContactView
    claim_id: UUID | None  # the claim that marked it sending; None for a row claimed before claims had ids
    lease: int | None = None  # the loop's lease (Sender._lease_epoch) it was claimed under; None: not in the loop


def _usable(conn: asyncpg.Connection | None) -> bool:
    """False for no connection or a lost one.

    asyncpg detaches a pooled connection whose link died: asking it anything then raises ``InterfaceError``.
    """
    if conn is None:
        return False
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:
        return False


def _event_fields(row: Any, channel: str, provider: str) -> dict[str, Any]:
    return {
        "message_id": row["message_id"], "callout_id": row["callout_id"], "volunteer_id": row["volunteer_id"],
        "kind": MessageKind(row["kind"]), "channel": Channel(channel), "provider": provider,
        "correlation_id": row["incident_id"], "causation_id": row["causation_id"], "drill": row["drill"],
    }


class Sender:
    """Sends pending messages (see the module docstring).

    Args:
        pool: notify's asyncpg pool.
        providers: the active providers by channel (:func:`services.notify.channels.build_providers`).
        settings: notify's settings (claim size, retries, time-outs, SMS signature).
        cipher: decrypts recipients.
        links: makes the reply-page links of WeChat messages.

    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        providers: dict[Channel, ChannelProvider],
        settings: NotifySettings,
        cipher: ContactCipher,
        links: ReplyLinks | None,
    ) -> None:
        self._pool = pool
        self._providers = providers
        self._s = settings
        self._cipher = cipher
        self._links = links
        self._wake = asyncio.Event()
        self._gates: dict[str, asyncio.Semaphore] = {}
        self._inflight: set[asyncio.Task[None]] = set()
        self._inflight_messages = 0
        self._records: GroupCommit[tuple[Sequence[Claimed], Sequence[SendResult]], None] = GroupCommit(
            self._record_group, transient=is_transient, name="sender_records")
        self._started_at = utcnow()
        self.instance_id = uuid4()
        """This sender's id in ``messages.claimed_by``; alive while :meth:`run` holds its advisory lock."""
        self._lease: asyncpg.Connection | None = None  # the loop's connection holding the lock, once taken
        self._lease_epoch = 0  # counts the leases taken: a claim made under an earlier one is checked before sending
        self.stats = SenderStats()
        self._signature = settings.aliyun_sign_name if settings.sms_provider == "aliyun" else settings.tencent_sign_name

    # ------------------------------------------------------------------ the loop

    def wake(self, *_: Any) -> None:
        """Wake the loop (LISTEN ``notify_messages`` calls this when messages are written)."""
        self._wake.set()

    async def run(self) -> None:
        """Run until cancelled: resolve in-doubt messages, then send what is due, woken by NOTIFY."""
        listen: asyncpg.Connection | None = None
        housekept = -math.inf
        try:
            while True:
                try:
                    if not _usable(listen):
                        self._lease = None
                        listen = await self._pool.acquire()
                        await self._hold_lease(listen)
                        await listen.add_listener("notify_messages", self.wake)
                        self._lease, self._lease_epoch = listen, self._lease_epoch + 1
                    self._wake.clear()
                    # Housekeeping once per poll interval, not on every wake: a fan-out wakes the loop
                    # hundreds of times a second, and these three queries cost more than the sends.
                    if time.monotonic() - housekept >= self._s.send_poll_seconds:
                        housekept = time.monotonic()
                        await self.resolve_in_doubt()
                        await self.fallback_unreceipted()
                        await self.sweep_early_receipts()
                    # At the in-flight limit, wait for a request to finish; but come round to take the lease
                    # again if its connection died: requests claimed under it wait for that (_still_claimed).
                    while self._inflight and self._inflight_messages >= 2 * self._s.send_claim_size \
                            and _usable(listen):
                        # urgent messages (a cardiac arrest's) do not wait for a fan-out's requests to drain; a
                        # failing urgent claim (database away) leaves the loop to wait as it did before
                        try:
                            urgent = await self.send_due(wait=False, min_priority=URGENT_PRIORITY)
                        except Exception as exc:
                            log.warning("sender.urgent_claim_failed", error=repr(exc))
                            urgent = 0
                        if urgent:
                            continue
                        await asyncio.wait(set(self._inflight), timeout=self._s.send_poll_seconds,
                                           return_when=asyncio.FIRST_COMPLETED)
                    if not _usable(listen):
                        continue
                    n = await self.send_due(wait=False)
                    self.stats.rounds += 1
                    if n >= self._s.send_claim_size:
                        continue
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # database or network gone: log, wait, try again
                    self.stats.errors.append(repr(exc))
                    log.warning("sender.round_failed", error=repr(exc))
                    # The connection holding the lease is let go only if it is broken (or the lease was never
                    # taken): releasing it frees the lock, and another notify would take this live sender's
                    # requests in flight as a gone sender's and send them again.
                    if listen is not None and (not _usable(listen) or listen is not self._lease):
                        self._lease = None
                        with contextlib.suppress(Exception):
                            await self._pool.release(listen)
                        listen = None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self._s.send_poll_seconds)
        finally:
            self._lease = None
            for task in list(self._inflight):
                task.cancel()
            self._records.cancel()
            if listen is not None:
                with contextlib.suppress(Exception):
                    await listen.remove_listener("notify_messages", self.wake)
                    await self._pool.release(listen)

    async def _hold_lease(self, conn: asyncpg.Connection) -> None:
        """Take this sender's liveness lock on ``conn`` (held for the loop's life; the pool's reset releases it).

        Another notify's :meth:`_gone_claimers` holds the lock for a moment while it looks, so a busy lock is
        tried again for about a second (20 × 0.05 s) before it is taken for a ``hashtext`` collision with a
        live sender's (instance ids are random); then this sender takes a new id (its earlier claims, if any,
        are resolved as a gone sender's).
        """
        tries = 0
        while not await conn.fetchval("SELECT pg_try_advisory_lock($1, hashtext($2))", SENDER_LOCK_KEY,
                                      str(self.instance_id)):
            tries += 1
            if tries < 20:
                await asyncio.sleep(0.05)
                continue
            log.warning("sender.instance_id_collision", instance_id=str(self.instance_id))
            self.instance_id, tries = uuid4(), 0

    async def _still_claimed(self, items: Sequence[Claimed]) -> list[Claimed]:
        """The items still ``sending`` under their claim, asked once this sender holds its lease again.

        Called before a request claimed under a lease that has since been lost (the connection holding the
        lock died: PostgreSQL restarted, the backend was terminated): meanwhile another notify may have
        resolved these messages as a gone sender's (the provider had no record of a request still queued
        here) and sent them. Once the lease is held again nobody takes them as gone, so what is still under
        its claim then is this sender's to send. Raises the database's error (the piece then fails and its
        rows stay ``sending``: in doubt).
        """
        while not _usable(self._lease):
            await asyncio.sleep(0.05)
        async with self._pool.acquire() as conn:
            owned = {r["message_id"] for r in await conn.fetch(
                f"SELECT m.message_id FROM messages m JOIN unnest($1::uuid[], $2::uuid[]) AS u(message_id, claim_id) "
                f"ON m.message_id = u.message_id WHERE {_OWNED}",
                [c.row["message_id"] for c in items], [c.claim_id for c in items])}
        if len(owned) < len(items):
            log.warning("message.claim_lost_before_send", count=len(items) - len(owned),
                        message_ids=[str(c.row["message_id"]) for c in items if c.row["message_id"] not in owned][:20])
        return [c for c in items if c.row["message_id"] in owned]

    async def _gone_claimers(self, conn: asyncpg.Connection) -> list[UUID]:
        """Instance ids of senders with ``sending`` rows whose liveness lock nobody holds (their process is gone)."""
        gone = []
        for claimer in await conn.fetchval(
            "SELECT coalesce(array_agg(DISTINCT claimed_by), '{}') FROM messages "
            "WHERE status = 'sending' AND claimed_by <> $1", self.instance_id,
        ):
            if await conn.fetchval("SELECT pg_try_advisory_lock($1, hashtext($2))", SENDER_LOCK_KEY, str(claimer)):
                await conn.execute("SELECT pg_advisory_unlock($1, hashtext($2))", SENDER_LOCK_KEY, str(claimer))
                gone.append(claimer)
        return gone

    # ------------------------------------------------------------------ claim

    def _outbound(self, row: Any, channel: Channel, contact: ContactView, open_count: int) -> OutboundMessage:
        c = row["content"]
        respond_by = c.get("respond_by")
        kind = MessageKind(row["kind"])
        if kind is MessageKind.ASSIGNED and c.get("cardiac_role"):  # a cardiac arrest: say what to do
            kind = MessageKind.CARDIAC_AED if c["cardiac_role"] == "fetch_aed" else MessageKind.CARDIAC_CPR
        content = MessageContent(
            kind=kind, incident_title=c.get("title", ""), place=c.get("place", ""),
            role=c.get("role", ""), reply_code=c.get("reply_code", ""), map_position=position_of(c.get("map_url")),
            callback_phone=c.get("callback_phone", ""), broadcast_text=c.get("text", ""),
            respond_by=datetime.fromisoformat(respond_by) if respond_by else None,
            reason=CancelReason(c["reason"]) if c.get("reason") else None,
            was_assigned=bool(c.get("was_assigned", False)), engaged_incident_title=c.get("engaged_in", ""),
            drill=row["drill"], aed_place=c.get("aed_place", ""), aed_position=position_of(c.get("aed_map_url")),
        )
        rendered = render(content, channel, signature=self._signature, several_open=open_count > 1)
        recipient = contact.openid if channel is Channel.WECHAT else contact.mobile
        assert recipient is not None
        url = None
        if channel is Channel.WECHAT and self._links is not None and content.kind is not MessageKind.STAND_DOWN:
            url = self._links.url(row["message_id"])
        return OutboundMessage(
            message_id=row["message_id"], recipient=recipient, kind=content.kind, text=rendered.text,
            template_params=rendered.template_params, url=url, drill=row["drill"],
        )

    def _contact(self, row: Any) -> ContactView | None:
        if not row["has_contact"]:
            return None
        return ContactView(
            mobile=self._cipher.decrypt(row["mobile_enc"]), openid=self._cipher.decrypt(row["openid_enc"]),
            wechat_subscribed=row["wechat_subscribed"], sms_consent=row["sms_consent"],
            preferred=Channel(row["preferred_channel"]) if row["preferred_channel"] else None,
        )

    async def _claim(self, conn: asyncpg.Connection, *, min_priority: int = 0) -> list[Claimed]:
        rows = await conn.fetch(
            f"""
            WITH due AS (
                SELECT message_id FROM messages
                WHERE status = 'pending' AND next_attempt_at <= now() AND priority >= $2
                ORDER BY priority DESC, next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED
            )
            SELECT {_MESSAGE_COLUMNS}, cl.state AS callout_state, m.error_code
            FROM messages m JOIN due USING (message_id) LEFT JOIN contacts c ON c.volunteer_id = m.volunteer_id
                 LEFT JOIN callouts cl ON cl.callout_id = m.callout_id
            """,
            self._s.send_claim_size, min_priority,
        )
        # A call-out whose call-out closed meanwhile (filled, stood down) is not sent: its stand-down may
        # already be out. This covers what the stand-down's own withhold cannot see: a call-out waiting to
        # retry (rate limit) or to go again by SMS (a receipt sweep that read the call-out open just before).
        # A broadcast or automatic answer to a call-out closed since is not sent either: they are not needed.
        withheld = [r for r in rows if r["kind"] in _WITHHELD_WHEN_CLOSED and r["callout_state"] == "closed"]
        if withheld:
            await conn.execute(
                """
                UPDATE messages SET status = 'failed', sending_since = NULL, updated_at = now(),
                    error_code = CASE WHEN error_code = 'no_receipt' THEN 'cancelled_before_resend'
                                      ELSE 'cancelled_before_send' END
                WHERE message_id = ANY($1::uuid[])
                """,
                [r["message_id"] for r in withheld],
            )
            log.info("message.withheld_at_claim", count=len(withheld))
            gone = {r["message_id"] for r in withheld}
            rows = [r for r in rows if r["message_id"] not in gone]
        if not rows:
            return []
        open_counts = dict(
            await conn.fetch(
                "SELECT volunteer_id, count(*) FROM callouts WHERE state <> 'closed' AND volunteer_id = ANY($1::uuid[]) "
                "AND requested_at > now() - make_interval(secs => $2) GROUP BY volunteer_id",
                list({r["volunteer_id"] for r in rows}), self._s.reply_window_hours * 3600,
            )
        )
        claimed: list[Claimed] = []
        claim_id = uuid4()
        no_contact: list[Any] = []
        no_channel: list[Any] = []
        for row in rows:
            contact = self._contact(row)
            failed = {Channel(c) for c in row["failed_channels"]} | (set(Channel) - set(self._providers))
            channel = choose_channel(contact, exclude=failed)
            if contact is None:
                no_contact.append(row)
            elif channel is None:
                no_channel.append(row)
            else:
                provider = self._providers[channel]
                out = self._outbound(row, channel, contact, open_counts.get(row["volunteer_id"], 0))
                claimed.append(Claimed(row, channel, provider, out, contact, claim_id,
                                       self._lease_epoch if self._lease is not None else None))
        if claimed:
            await conn.execute(
                """
                UPDATE messages m SET status = 'sending', sending_since = now(), attempts = m.attempts + 1,
                    channel = u.channel, provider = u.provider, body = u.body, updated_at = now(),
                    claimed_by = $5, claim_id = $6
                FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) AS u(message_id, channel, provider, body)
                WHERE m.message_id = u.message_id
                """,
                [c.row["message_id"] for c in claimed], [c.channel.value for c in claimed],
                [c.provider.name for c in claimed], [c.outbound.text for c in claimed], self.instance_id, claim_id,
            )
        # The contact may still be on its way (projection behind): try again a few times, then give up.
        retry_later = [r for r in no_contact if r["attempts"] + 1 < self._s.max_attempts]
        if retry_later:
            await self._reschedule(conn, retry_later, error="no_contact")
        give_up = [r for r in no_contact if r["attempts"] + 1 >= self._s.max_attempts] + no_channel
        for row in give_up:
            code = "no_contact" if row in no_contact else "no_channel"
            await self._fail(conn, row, code, channel=row["channel"] or Channel.SMS.value, provider=row["provider"] or "none")
        return claimed

    async def _reschedule(self, conn: asyncpg.Connection, rows: Sequence[Any], *, error: str,
                          claims: Sequence[Claimed] | None = None) -> None:
        """Back to ``pending`` after a backoff.

        With ``claims`` (a provider's answers; ``rows`` are then their rows), only rows still ``sending``
        under those claims (``_OWNED``).
        """
        delays = [retry_delay(r["attempts"] + 1, base=self._s.retry_base_seconds, cap=self._s.retry_max_seconds)
                  for r in rows]
        done = await conn.fetch(
            f"""
            UPDATE messages m SET status = 'pending', attempts = m.attempts + CASE WHEN m.status = 'pending' THEN 1 ELSE 0 END,
                next_attempt_at = now() + make_interval(secs => u.delay), error_code = $3, sending_since = NULL,
                {DROP_CLAIM}, updated_at = now()
            FROM unnest($1::uuid[], $2::float8[], $4::uuid[]) AS u(message_id, delay, claim_id)
            WHERE m.message_id = u.message_id {"AND " + _OWNED if claims is not None else ""}
            RETURNING m.message_id
            """,
            [r["message_id"] for r in rows], delays, error,
            [c.claim_id for c in claims] if claims is not None else [None] * len(rows),
        )
        self._superseded(rows, done)
        self.stats.retried += len(done)

    def _superseded(self, rows: Sequence[Any], done: Sequence[Any]) -> set[UUID]:
        """Log the rows a record found no longer under their claim; returns the ids of those recorded."""
        ids = {r["message_id"] for r in done}
        if len(ids) < len(rows):
            log.warning("message.record_superseded", count=len(rows) - len(ids),
                        message_ids=[str(r["message_id"]) for r in rows if r["message_id"] not in ids][:20])
        return ids

    async def _fail(self, conn: asyncpg.Connection, row: Any, code: str, *, channel: str, provider: str,
                    claim: Claimed | None = None) -> None:
        """Mark failed with ``MessageFailed``; with ``claim``, only while the row is still under that claim."""
        done = await conn.fetch(
            "UPDATE messages m SET status = 'failed', error_code = $2, sending_since = NULL, updated_at = now() "
            f"FROM (SELECT $3::uuid AS claim_id) u WHERE m.message_id = $1 {'AND ' + _OWNED if claim else ''} "
            "RETURNING m.message_id",
            row["message_id"], code, claim.claim_id if claim else None,
        )
        if not self._superseded([row], done):
            return
        await outbox.add(conn, DELIVERY, str(row["volunteer_id"]),
                         MessageFailed(**_event_fields(row, channel, provider), error_code=code, fallback=False))
        self.stats.failed += 1
        log.warning("message.failed", message_id=str(row["message_id"]), callout_id=str(row["callout_id"]),
                    error_code=code)

    async def _fall_back(self, conn: asyncpg.Connection, row: Any, channel: Channel, provider: str, code: str,
                         claim: Claimed | None = None) -> None:
        """Exclude a channel that cannot reach the volunteer and let the next claim choose another.

        With ``claim`` (a provider's answer), only while the row is still under that claim: a message
        resolved elsewhere meanwhile is not sent again on another channel.
        """
        done = await conn.fetch(
            f"""
            UPDATE messages m SET status = 'pending', failed_channels = array_append(failed_channels, $2),
                channel = NULL, provider = NULL, provider_message_id = NULL, error_code = $3, attempts = 0,
                next_attempt_at = now(), sending_since = NULL, {DROP_CLAIM}, updated_at = now()
            FROM (SELECT $4::uuid AS claim_id) u
            WHERE m.message_id = $1 {"AND " + _OWNED if claim else ""}
            RETURNING m.message_id
            """,
            row["message_id"], channel.value, code, claim.claim_id if claim else None,
        )
        if not self._superseded([row], done):
            return
        await outbox.add(conn, DELIVERY, str(row["volunteer_id"]),
                         MessageFailed(**_event_fields(row, channel.value, provider), error_code=code, fallback=True))
        self.stats.fallbacks += 1
        log.info("message.fallback", message_id=str(row["message_id"]), from_channel=channel.value, error_code=code)

    # ------------------------------------------------------------------ send and record

    async def send_due(self, *, wait: bool = True, min_priority: int = 0) -> int:
        """One round: claim due messages, send them, record the results. Returns how many were claimed.

        Args:
            wait: wait until every request of the round is answered and recorded (raising its error, if any);
                the loop passes False and keeps claiming while earlier requests are in flight.
            min_priority: claim only messages of at least this priority (the loop's urgent lane, see
                :data:`URGENT_PRIORITY`).

        Urgent messages are claimed first, and go through a gate of their own per provider: they do not queue
        behind a fan-out's requests waiting for the provider.

        """
        async with self._pool.acquire() as conn, conn.transaction():
            claimed = await self._claim(conn, min_priority=min_priority)
        if not claimed:
            return 0
        by_provider: dict[tuple[str, bool], list[Claimed]] = {}
        for c in claimed:
            by_provider.setdefault((c.provider.name, c.row["priority"] >= URGENT_PRIORITY), []).append(c)
        tasks = []
        for (name, urgent), items in by_provider.items():
            size = max(items[0].provider.max_batch, 1)
            # Requests in flight per provider; a provider that takes one recipient per request (WeChat) gets more.
            permits = self._s.send_concurrency if size > 1 else self._s.send_concurrency * 8
            gate = self._gates.setdefault(f"{name}:urgent" if urgent else name, asyncio.Semaphore(permits))
            for start in range(0, len(items), size):
                piece = items[start:start + size]
                self._inflight_messages += len(piece)
                tasks.append(asyncio.create_task(self._send_piece(piece, gate)))
        if wait:
            await asyncio.gather(*tasks)
        else:
            for task in tasks:
                self._inflight.add(task)
                task.add_done_callback(self._piece_done)
        return len(claimed)

    def _piece_done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # The rows stay 'sending': in doubt, resolved with query() after sending_timeout_seconds.
            self.stats.errors.append(repr(exc))
            log.warning("sender.piece_failed", error=repr(exc))

    async def _send_piece(self, items: Sequence[Claimed], gate: asyncio.Semaphore) -> None:
        """One provider request's worth (``max_batch``), recorded as soon as the provider answers.

        The answer joins the next group record (:meth:`_record_group`); this returns once it is committed,
        raising the record's error if that failed (the rows then stay ``sending``: in doubt).
        """
        try:
            async with gate:
                sending = list(items)
                lease = items[0].lease
                if lease is not None and (lease != self._lease_epoch or not _usable(self._lease)):
                    sending = await self._still_claimed(items)  # the lease was lost since the claim
                    if not sending:
                        return
                results = await items[0].provider.send([c.outbound for c in sending])
            await self._records.submit((sending, results))
        finally:
            self._inflight_messages -= len(items)

    async def _record_group(self, pieces: Sequence[tuple[Sequence[Claimed], Sequence[SendResult]]]) -> list[None]:
        """Record every answer that arrived while the previous record ran, in one transaction (group commit).

        WeChat takes one recipient per request, so a fan-out brings hundreds of answers a second; one
        transaction each queued for the pool's connections ahead of the call-out consumer (a 10,000 fan-out
        consumed at ~170 events/s). At most one group record runs at a time (:class:`GroupCommit`), so a
        record holds one connection and covers everything answered since the last. A group that fails for
        a reason other than a transient one is recorded again piece by piece (``transient=``), so one bad
        answer leaves only its own messages in doubt.
        """
        await self.record([c for items, _ in pieces for c in items], [r for _, results in pieces for r in results])
        return [None] * len(pieces)

    async def record(self, items: Sequence[Claimed], results: Sequence[SendResult]) -> None:
        """Store the providers' answers for ``items`` (same order) and their events, in one transaction."""
        accepted: list[tuple[Claimed, SendResult]] = []
        retry: list[Claimed] = []
        outcomes: list[tuple[str, str, str, str | None]] = []  # (channel, provider, outcome, refusal code)
        async with self._pool.acquire() as conn, conn.transaction():
            for c, r in zip(items, results, strict=True):
                if r.accepted:
                    accepted.append((c, r))
                    continue
                outcome = "failed"
                if r.retryable and c.row["attempts"] + 1 < self._s.max_attempts:
                    outcome = "retry"
                    retry.append(c)
                    log.info("message.retry", message_id=str(c.row["message_id"]), error_code=r.error_code,
                             attempt=c.row["attempts"] + 1)
                elif choose_channel(c.contact, exclude={*map(Channel, c.row["failed_channels"]), c.channel,
                                                        *(set(Channel) - set(self._providers))}):
                    outcome = "fallback"
                    await self._fall_back(conn, c.row, c.channel, c.provider.name, r.error_code or "failed", claim=c)
                else:
                    await self._fail(conn, c.row, r.error_code or "failed", channel=c.channel.value,
                                     provider=c.provider.name, claim=c)
                outcomes.append((c.channel.value, c.provider.name, outcome, r.error_code or "unknown"))
            if accepted:
                await self._mark_sent(conn, accepted)
            if retry:
                await self._reschedule(conn, [c.row for c in retry], error="retryable", claims=retry)
        # counted once committed: a transaction that rolled back leaves the rows in doubt, counted when resolved
        for c, _ in accepted:
            NOTIFY_MESSAGES.labels(c.channel.value, c.provider.name, "sent").inc()
        for channel, provider, outcome, code in outcomes:
            NOTIFY_MESSAGES.labels(channel, provider, outcome).inc()
            NOTIFY_PROVIDER_ERRORS.labels(provider, code).inc()

    async def _mark_sent(self, conn: asyncpg.Connection, accepted: Sequence[tuple[Claimed, SendResult]], *,
                         in_doubt: bool = False) -> None:
        """Record ``accepted`` as sent, with their ``MessageSent`` events: only rows still under their claim.

        ``sent_at`` is now or, for a message found sent when resolving it in doubt, when its request went out
        (``sending_since``): its receipt was due from then, possibly while no notify was listening
        (:meth:`fallback_unreceipted`).
        """
        done = await conn.fetch(
            f"""
            UPDATE messages m SET status = 'sent', provider_message_id = u.pid, error_code = NULL,
                sent_at = CASE WHEN $3 THEN coalesce(m.sending_since, now()) ELSE now() END,
                sending_since = NULL, updated_at = now()
            FROM unnest($1::uuid[], $2::text[], $4::uuid[]) AS u(message_id, pid, claim_id)
            WHERE m.message_id = u.message_id AND {_OWNED}
            RETURNING m.message_id
            """,
            [c.row["message_id"] for c, _ in accepted], [r.provider_message_id for _, r in accepted], in_doubt,
            [c.claim_id for c, _ in accepted],
        )
        ids = self._superseded([c.row for c, _ in accepted], done)
        accepted = [(c, r) for c, r in accepted if c.row["message_id"] in ids]
        await outbox.add_many(conn, [
            (DELIVERY, str(c.row["volunteer_id"]),
             MessageSent(**_event_fields(c.row, c.channel.value, c.provider.name),
                         provider_message_id=r.provider_message_id))
            for c, r in accepted
        ])
        self.stats.sent += len(accepted)
        # Receipts that came before this commit (the provider is fast) are applied now.
        from services.notify.inbound import apply_early_receipts

        await apply_early_receipts(conn, self, [(c.provider.name, r.provider_message_id) for c, r in accepted])

    # ------------------------------------------------------------------ in doubt and fallback by time-out

    async def resolve_in_doubt(self) -> int:
        """Resolve messages left ``sending`` by a gone sender, or for too long (module docstring, 4). Returns how many.

        A row claimed before claims named their sender, or by an older notify during a rolling upgrade, has
        ``claimed_by`` NULL (a row going back to ``pending`` drops its claim: an older notify's claim leaves
        the columns as it finds them) and is in doubt when it was claimed before this sender started, as before.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"""
                SELECT {_MESSAGE_COLUMNS}
                FROM messages m LEFT JOIN contacts c ON c.volunteer_id = m.volunteer_id
                WHERE m.status = 'sending'
                  AND (m.sending_since < now() - make_interval(secs => $2)
                       OR m.claimed_by = ANY($3::uuid[])
                       OR (m.claimed_by IS NULL AND m.sending_since < $1))
                FOR UPDATE OF m SKIP LOCKED
                """,
                self._started_at, self._s.sending_timeout_seconds, await self._gone_claimers(conn),
            )
            if not rows:
                return 0
            by_id = {p.name: p for p in self._providers.values()}
            resolved = 0
            for row in rows:
                contact = self._contact(row)
                provider = by_id.get(row["provider"] or "")
                channel = Channel(row["channel"]) if row["channel"] else None
                if contact is None or provider is None or channel is None or choose_channel(
                    contact, exclude=[ch for ch in Channel if ch is not channel]
                ) is None:
                    await self._reschedule(conn, [row], error="in_doubt")
                    continue
                out = self._outbound(row, channel, contact, 0)
                out = OutboundMessage(message_id=out.message_id, recipient=out.recipient, kind=out.kind,
                                      text=row["body"] or out.text, template_params=out.template_params, url=out.url,
                                      drill=out.drill)
                answer = await provider.query(out, row["sending_since"])
                claimed = Claimed(row, channel, provider, out, contact, row["claim_id"])
                if answer is not None and answer.accepted:
                    await self._mark_sent(conn, [(claimed, answer)], in_doubt=True)
                elif answer is not None or (
                    row["sending_since"] < utcnow() - timedelta(seconds=self._s.in_doubt_resend_after_seconds)
                ):
                    if answer is None:
                        log.warning("message.in_doubt_resend", message_id=str(row["message_id"]),
                                    provider=provider.name)
                    await conn.execute(
                        "UPDATE messages SET status = 'pending', next_attempt_at = now(), sending_since = NULL, "
                        f"{DROP_CLAIM}, updated_at = now() WHERE message_id = $1", row["message_id"])
                else:
                    continue  # unknown: ask again next round
                resolved += 1
            self.stats.in_doubt_resolved += resolved
            log.info("sender.in_doubt", found=len(rows), resolved=resolved)
            return resolved

    async def sweep_early_receipts(self) -> int:
        """Apply receipts kept in ``early_receipts`` whose message is now recorded as sent.

        Such a receipt's callback committed just after the send's record looked for it. Unmatched ones are dropped
        after a day. Returns how many were applied.
        """
        from services.notify.inbound import apply_early_receipts

        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """
                SELECT e.provider, e.provider_message_id FROM early_receipts e
                JOIN messages m ON m.provider = e.provider AND m.provider_message_id = e.provider_message_id
                WHERE m.status = 'sent' LIMIT 2000
                """
            )
            applied = await apply_early_receipts(conn, self, [(r["provider"], r["provider_message_id"]) for r in rows])
            if self.stats.rounds % 1000 == 0:
                await conn.execute("DELETE FROM early_receipts WHERE stored_at < now() - interval '1 day'")
            return applied

    async def fallback_unreceipted(self) -> int:
        """WeChat messages past the receipt time-out: sent again by SMS, or marked why not. Returns how many sent again.

        The rule is :func:`services.notify.domain.routing.receipt_overdue_reason`. A message not sent again
        stays ``sent`` (a late receipt still marks it delivered) with ``receipt_overdue`` = the reason.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"""
                SELECT {_MESSAGE_COLUMNS}, cl.state AS callout_state, m.sent_at < $2 AS sent_before_listening,
                       coalesce((m.content->>'respond_by')::timestamptz < now(), false) AS expired,
                       EXISTS (SELECT 1 FROM replies r WHERE r.callout_id = m.callout_id) AS answered
                FROM messages m LEFT JOIN contacts c ON c.volunteer_id = m.volunteer_id
                     LEFT JOIN callouts cl ON cl.callout_id = m.callout_id
                WHERE m.status = 'sent' AND m.channel = 'wechat' AND m.receipt_overdue IS NULL
                  AND m.sent_at < now() - make_interval(secs => $1)
                ORDER BY m.sent_at LIMIT 500
                FOR UPDATE OF m SKIP LOCKED
                """,
                self._s.wechat_receipt_timeout_seconds, self._started_at,
            )
            kept: list[tuple[Any, str]] = []
            again = 0
            for row in rows:
                reason = receipt_overdue_reason(
                    kind=row["kind"], callout_state=row["callout_state"], answered=row["answered"],
                    sent_before_listening=row["sent_before_listening"],
                    sms_possible=row["mobile_enc"] is not None and bool(row["sms_consent"]), expired=row["expired"],
                )
                if reason is None:
                    await self._fall_back(conn, row, Channel.WECHAT, row["provider"] or "wechat", "no_receipt")
                    again += 1
                else:
                    kept.append((row, reason))
            if kept:
                await conn.execute(
                    "UPDATE messages m SET receipt_overdue = u.reason, updated_at = now() "
                    "FROM unnest($1::uuid[], $2::text[]) AS u(message_id, reason) WHERE m.message_id = u.message_id",
                    [r["message_id"] for r, _ in kept], [reason for _, reason in kept],
                )
                self.stats.receipts_overdue += len(kept)
                log.info("message.receipt_overdue", count=len(kept),
                         reasons=dict(Counter(reason for _, reason in kept)))
            return again
