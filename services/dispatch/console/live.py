"""Live boards for the console: ONE PostgreSQL listener per dispatch process, fanned out to every viewer.

The use cases NOTIFY :data:`~services.dispatch.adapters.board_feed.CHANNEL` with the incident id in the
transaction that changes a board (:func:`~services.dispatch.adapters.board_feed.board_changed`). The
:class:`BoardHub` LISTENs on one dedicated connection; for an incident somebody watches it reads the
snapshot (board + responders) once and hands the same encoded event to every viewer's queue, so ten
desks and a wall board cost one read per change, not eleven. Changes arriving while a read runs are
coalesced into one more read. Each event carries a sequence number (``id:`` of the SSE frame); a viewer
that reconnects (``Last-Event-ID``) gets the current snapshot first, which is everything it missed,
because every event is a whole snapshot. When the listener's connection drops, it reconnects and
re-reads every watched incident (a NOTIFY sent while it was away is lost, the re-read is not).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg

from shared.logging import get_logger

from ..adapters.board_feed import CHANNEL
from . import repository

__all__ = ["BoardHub", "Frame"]

log = get_logger(__name__)

#: A viewer whose queue holds this many unsent frames is too slow; it gets only the newest.
QUEUE_LIMIT = 8


@dataclass(frozen=True)
class Frame:
    """One SSE event: the sequence number and the encoded snapshot (``{"board", "responders"}``)."""

    seq: int
    data: str

    def encode(self) -> bytes:
        return f"id: {self.seq}\nevent: board\ndata: {self.data}\n\n".encode()


@dataclass
class _Watch:
    viewers: set[asyncio.Queue[Frame]] = field(default_factory=set)
    dirty: bool = False
    reading: asyncio.Task[None] | None = None


def _set_event(event: asyncio.Event, _conn: Any) -> None:
    event.set()


class BoardHub:
    """Per-process fan-out of board snapshots (see the module docstring)."""

    def __init__(self, pool: asyncpg.Pool, dsn: str) -> None:
        self._pool = pool
        self._dsn = dsn
        self._watches: dict[UUID, _Watch] = {}
        self._seq = 0
        self._listener: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()  # set while the LISTEN connection is up
        self.reads = 0  # snapshot reads done (a test counts them)

    async def snapshot_frame(self, incident_id: UUID) -> Frame:
        """The current snapshot of ``incident_id`` as a frame with the next sequence number."""
        async with self._pool.acquire() as conn:
            snap = await repository.snapshot(conn, incident_id)
        self.reads += 1
        self._seq += 1
        return Frame(self._seq, json.dumps(snap, ensure_ascii=False, default=str))

    def subscribe(self, incident_id: UUID) -> asyncio.Queue[Frame]:
        """A queue that receives a frame after each committed change of ``incident_id``'s board."""
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen(), name="dispatch-console-listener")
        q: asyncio.Queue[Frame] = asyncio.Queue(maxsize=QUEUE_LIMIT)
        self._watches.setdefault(incident_id, _Watch()).viewers.add(q)
        return q

    def unsubscribe(self, incident_id: UUID, q: asyncio.Queue[Frame]) -> None:
        w = self._watches.get(incident_id)
        if w is not None:
            w.viewers.discard(q)
            if not w.viewers and (w.reading is None or w.reading.done()):
                del self._watches[incident_id]

    def viewers(self, incident_id: UUID) -> int:
        w = self._watches.get(incident_id)
        return len(w.viewers) if w else 0

    def changed(self, incident_id: UUID) -> None:
        """A board changed: read it once (now, or once more after the read under way) and fan it out."""
        w = self._watches.get(incident_id)
        if w is None or not w.viewers:
            return
        if w.reading is not None and not w.reading.done():
            w.dirty = True
            return
        w.reading = asyncio.create_task(self._fan_out(incident_id, w))

    async def _fan_out(self, incident_id: UUID, w: _Watch) -> None:
        while True:
            w.dirty = False
            try:
                frame = await self.snapshot_frame(incident_id)
            except Exception as exc:  # noqa: BLE001 - the database restarts: the viewers fall back to polling
                log.warning("console.snapshot_failed", incident_id=str(incident_id), error=type(exc).__name__)
                return
            for q in list(w.viewers):
                if q.full():
                    with contextlib.suppress(asyncio.QueueEmpty):
                        q.get_nowait()  # a slow viewer skips to the newest snapshot
                q.put_nowait(frame)
            if not w.dirty:
                return

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            self.changed(UUID(payload))
        except ValueError:
            log.warning("console.bad_notify", payload=payload[:40])

    async def _listen(self) -> None:
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn)
                await conn.add_listener(CHANNEL, self._on_notify)
                self.listening.set()
                for incident_id in list(self._watches):
                    self.changed(incident_id)  # catch up on what changed while not listening
                lost = asyncio.Event()
                conn.add_termination_listener(functools.partial(_set_event, lost))
                await lost.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - retried: the database may be restarting
                log.warning("console.listener_lost", error=type(exc).__name__)
            finally:
                self.listening.clear()
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close()
            await asyncio.sleep(1.0)

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
