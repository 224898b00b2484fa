"""Live boards for the console: ONE PostgreSQL listener per dispatch process, fanned out to every viewer.

The use cases NOTIFY :data:`~services.dispatch.adapters.board_feed.CHANNEL` with the incident id in the
transaction that changes a board (:func:`~services.dispatch.adapters.board_feed.board_changed`). The
:class:`BoardHub` LISTENs on one dedicated connection; for an incident somebody watches it reads the
snapshot (board + responders) once and hands the same encoded frame to every viewer's queue, so ten
desks and a wall board cost one read per change, not eleven. Changes arriving while a read runs, or
within the board's read interval of the last read (:data:`MIN_INTERVAL_S`, or :data:`READ_SHARE` times
the last read's duration for a big board), are coalesced into one more read. A frame carries the
board and only the responder rows changed since the previous frame (see :class:`Frame`); each has a
sequence number (``id:`` of the SSE frame). A new viewer, and one that reconnects (``Last-Event-ID``),
gets the whole board first, which is everything it missed. When the listener's connection drops, it reconnects and
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
#: Least seconds between two reads of one board: changes in between make one read (a reply burst on a
#: 1,700-responder board would otherwise read and send 1.5 MB to every viewer after each batch).
MIN_INTERVAL_S = 0.2
#: ... and at least this many times the last read's duration, at most MAX_INTERVAL_S: a big board under a
#: burst (1,667 responders: 0.16 s to read and encode) takes at most about a third of the event loop that
#: also applies the replies (at a fixed 0.2 s it took most of it and replies queued behind the reads).
READ_SHARE = 3.0
MAX_INTERVAL_S = 2.0


@dataclass(frozen=True)
class Frame:
    """One SSE event: the sequence number and its data as JSON text.

    The data is ``{"full": true, "board", "responders"}`` (the whole snapshot: a viewer's first frame,
    or after it fell behind) or ``{"full": false, "board", "responders": [changed rows only]}`` (the
    responders whose row changed since the previous frame of this board; a 1,700-responder board is
    1.5 MB whole, a reply changes one row). ``wire`` is the SSE frame's bytes, encoded once for all.
    """

    seq: int
    data: str
    wire: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "wire", f"id: {self.seq}\nevent: board\ndata: {self.data}\n\n".encode())


@dataclass
class _Watch:
    viewers: set[asyncio.Queue[Frame]] = field(default_factory=set)  # have every frame since their full one
    joining: list[asyncio.Queue[Frame]] = field(default_factory=list)  # wait for their first (full) frame
    dirty: bool = False
    reading: asyncio.Task[None] | None = None
    last_read: float = float("-inf")  # loop time of the last read
    interval: float = MIN_INTERVAL_S  # seconds between reads, from the last read's duration
    rows: dict[str, dict[str, Any]] | None = None  # responders by call-out id, as the viewers have them


def _set_event(event: asyncio.Event, _conn: Any) -> None:
    event.set()


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, default=str)


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

    def subscribe(self, incident_id: UUID) -> asyncio.Queue[Frame]:
        """A queue that gets the board's full snapshot first, then a frame after each committed change."""
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen(), name="dispatch-console-listener")
        q: asyncio.Queue[Frame] = asyncio.Queue(maxsize=QUEUE_LIMIT)
        w = self._watches.setdefault(incident_id, _Watch())
        w.joining.append(q)
        self._read_soon(incident_id, w)
        return q

    def unsubscribe(self, incident_id: UUID, q: asyncio.Queue[Frame]) -> None:
        w = self._watches.get(incident_id)
        if w is None:
            return
        w.viewers.discard(q)
        if q in w.joining:
            w.joining.remove(q)
        if not w.viewers and not w.joining and (w.reading is None or w.reading.done()):
            del self._watches[incident_id]

    def viewers(self, incident_id: UUID) -> int:
        w = self._watches.get(incident_id)
        return len(w.viewers) + len(w.joining) if w else 0

    def changed(self, incident_id: UUID) -> None:
        """A board changed: read it once (now, or once more after the read under way) and fan it out."""
        w = self._watches.get(incident_id)
        if w is not None and (w.viewers or w.joining):
            self._read_soon(incident_id, w)

    def _read_soon(self, incident_id: UUID, w: _Watch) -> None:
        if w.reading is not None and not w.reading.done():
            w.dirty = True
            return
        w.reading = asyncio.create_task(self._fan_out(incident_id, w))

    async def _fan_out(self, incident_id: UUID, w: _Watch) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not w.joining:  # a newcomer is served at once; changes wait out the interval
                await asyncio.sleep(max(0.0, w.last_read + w.interval - loop.time()))
            w.last_read = loop.time()
            w.dirty = False
            try:
                async with self._pool.acquire() as conn:
                    snap = await repository.snapshot(conn, incident_id)
            except Exception as exc:  # noqa: BLE001 - the database restarts: the next change reads again
                log.warning("console.snapshot_failed", incident_id=str(incident_id), error=type(exc).__name__)
                return
            self.reads += 1
            self._seq += 1
            seq = self._seq
            rows = {r["callout_id"]: r for r in snap["responders"]}
            behind = {q for q in w.viewers if q.full()}  # too slow: they get the whole board instead
            whole = Frame(seq, _json({"full": True, **snap})) if w.joining or behind or w.rows is None else None
            if w.viewers and w.rows is not None:
                before = w.rows
                delta = Frame(seq, _json({"full": False, "board": snap["board"],
                                          "responders": [r for k, r in rows.items() if before.get(k) != r]}))
                for q in list(w.viewers):
                    if q in behind:
                        while not q.empty():  # drop what it has not read
                            q.get_nowait()
                        assert whole is not None
                        q.put_nowait(whole)
                    else:
                        q.put_nowait(delta)
            w.rows = rows
            for q in w.joining:
                assert whole is not None
                q.put_nowait(whole)
                w.viewers.add(q)
            w.joining.clear()
            w.interval = min(MAX_INTERVAL_S, max(MIN_INTERVAL_S, READ_SHARE * (loop.time() - w.last_read)))
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
