"""Reply path (issue #7): replies at steady rates from the simulator's phones to the incident board.

Target here (2 cores): reply p99 under 250 ms at 500 replies/s.

Runs on the default stack with its services running (``muster stack up --services``); everything
crosses real HTTP, the real broker and the real databases:

    phone ─POST /sim/phones/{mobile}/reply─▶ simulator ─SmsUp push─▶ notify callback ─outbox─▶ Kafka
    (notify.reply.v1) ─▶ dispatch.replies consumer ─▶ dispatch's ``replies`` table (what the board shows)

Per rate, in three steps:

1. Set-up (not timed). Incidents are opened in drill mode through the operator API at city level
   with an over-call factor of 1 and requirements of up to 2,000 per skill (a wave calls exactly
   what is needed, so the bench's accepts never fill a requirement and no stand-down burst lands
   in the timed window), and a wave deadline of one hour (no second wave). More incidents are
   opened until enough call-outs reached a phone by SMS for ``rate × seconds`` replies (WeChat
   call-outs are left unanswered: a WeChat reply is a tap on notify's reply page, not a phone
   uplink). ``accept_share`` of the call-outs are answered as a volunteer who goes does: "1A7"
   (accept), later "A7 20分钟到" (ETA), later "A7到了" (arrived), three replies that each change the
   call-out; the others get one decline "2A7" (seeded draw). A volunteer called by several
   incidents has several open call-outs, so every reply carries the call-out's reply code. Then
   the bench waits until the set-up's traffic has gone through (the same quiet as in step 3: its
   delivery receipts included), so the timed window measures the replies and what they cause.
2. Timed. Phones reply on an open-loop schedule: reply *i* is sent at ``t0 + i / rate`` whether or
   not the system keeps up (aiohttp, up to 512 connections; the generator's own lateness is
   reported). First every call-out's first reply, then the accepted ones' ETAs in the same order,
   then their arrivals, so a call-out's replies are ``accept_share × call-outs / rate`` seconds apart
   or more (17 s in a 60 s window), as a person's are.
3. Tear-down (not timed). The incidents are closed and the bench waits until the stand-downs went
   out (notify's call-out consumer and dispatch's reply and delivery consumers at lag 0, nothing
   pending in notify's or dispatch's outbox or notify's send queue, no callback pending in the
   simulator) before the next rate.

The end point of one reply's latency: polling the HTTP board (``GET /incidents/{id}/callouts``,
thousands of call-outs per incident) 100 times a second would be heavier than the path it
measures, so the bench reads what that endpoint reads: every ``poll_interval`` seconds (10 ms) one
indexed query on dispatch's ``replies`` table (``count(*) … WHERE callout_id = ANY(<call-outs with a
reply sent and not yet seen>) GROUP BY callout_id``): a call-out's *k*-th reply is *seen* at the start
of the first query whose snapshot holds *k* committed replies for it, so a latency is an upper bound,
late by at most one poll interval plus the query's own time.
Latency = seen − the moment just before the phone's POST (monotonic clock, milliseconds).

Lag, sampled every ``sample_seconds`` (1 s) during the timed window: the consumer lag of
``dispatch.replies`` on ``notify.reply.v1`` (:func:`shared.lag.consumer_lag`), and notify's inbound
path, which is HTTP, not a consumer group: uplinks queued in the simulator's pusher
(``/sim/stats`` ``callbacks_pending``) and notify's unpublished outbox rows. ``in_flight`` = sent −
seen. A rate is *held* when every reply reached the board within ``drain_seconds`` after the last
send and the backlog did not grow: the median ``in_flight`` over the last third of the window is
at most twice that of the first third plus 0.1 s worth of replies (``rate / 10``); the same test
is reported for the ``dispatch.replies`` lag alone.

CPU: ``cpu_seconds`` is what each process of the stack spent during the timed window (:mod:`bench.cpu`;
the load generator and the poller are this process, not counted), and ``cpu_ms_per_reply`` their total
over the replies sent: at ``rate`` replies a second the path needs ``rate × cpu_ms_per_reply / 1000`` of
the machine's cores.

Reads only: the bench reads dispatch's ``callouts`` and ``replies`` and notify's ``outbox`` and
``messages`` counts (it writes nothing to them); it writes through the operator API only. One run
at a time per stack: a run holds a session advisory lock in dispatch's database (``RUN_LOCK``) and a
second run waits for it.

Run: ``uv run --frozen python -m bench.reply_path [--rates 100,500,1000] [--seconds 60]``; prints a
table and writes ``bench/results/reply_path-<ts>.json`` (:func:`bench.machine.save`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import statistics
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import aiohttp
import asyncpg
import httpx

from bench import cpu
from deploy.stack import StackSettings
from shared.topics import CALLOUT, DELIVERY, REPLY

__all__ = ["run"]

DISPATCH = StackSettings().url("dispatch")
SIMULATOR = StackSettings().url("simulator")
#: 鉴水社区 (柯岩街道, 柯桥区) and a point in it (the dispatch README's example).
UNIT_CODE, LAT, LON = "330603002020", 30.0495, 120.4860
SKILLS = ("first_aid", "cpr_aed", "logistics", "driver", "search_rescue", "medical", "water_rescue",
          "psych_support", "rope_rescue")
MAX_COUNT = 2000  # per requirement (services/dispatch/domain/validation.py)
MAX_REQUIREMENTS = 20
#: Session advisory lock (in dispatch's database) held by a run: two runs on one stack would measure each other.
RUN_LOCK = 0x7270_6174  # "rpat"


def _log(msg: str) -> None:
    print(f"[reply_path {time.strftime('%H:%M:%S')}] {msg}", flush=True)


@dataclass(frozen=True)
class Target:
    """One call-out a phone will answer: the call-out, the phone (E.164) and the texts it sends, in order."""

    callout_id: UUID
    mobile: str
    texts: tuple[str, ...]


@dataclass(frozen=True)
class Reply:
    """One reply of the schedule: the ``nth`` (1-based) reply to ``callout_id``."""

    callout_id: UUID
    nth: int
    mobile: str
    text: str


def schedule(targets: list[Target]) -> list[Reply]:
    """Every target's first reply, then every second reply in the same order, then every third."""
    out: list[Reply] = []
    for i in range(max((len(t.texts) for t in targets), default=0)):
        out += [Reply(t.callout_id, i + 1, t.mobile, t.texts[i]) for t in targets if len(t.texts) > i]
    return out


def texts_for(code: str, accept: bool) -> tuple[str, ...]:
    """What a volunteer sends for the call-out with reply ``code``: accept, ETA, arrived; or one decline."""
    return (f"1{code}", f"{code} 20分钟到", f"{code}到了") if accept else (f"2{code}",)


@dataclass
class Window:
    """What one timed window recorded (monotonic seconds), per (call-out, nth reply)."""

    sent_at: dict[tuple[UUID, int], float] = field(default_factory=dict)
    seen_at: dict[tuple[UUID, int], float] = field(default_factory=dict)
    unseen: set[UUID] = field(default_factory=set)  # call-outs with a reply sent and not yet seen
    late: list[float] = field(default_factory=list)  # generator lateness per send, seconds
    errors: list[str] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)


# ------------------------------------------------------------------------------------------- set-up


def _requirements(calls: int) -> list[dict[str, Any]]:
    """Requirements asking for ``calls`` people in all (≤ 2,000 each, ≤ 20), the commonest skills first."""
    out: list[dict[str, Any]] = []
    left = calls
    while left > 0 and len(out) < MAX_REQUIREMENTS:
        for skill in SKILLS:
            if left <= 0 or len(out) >= MAX_REQUIREMENTS:
                break
            n = min(MAX_COUNT, left)
            out.append({"skill": skill, "count": n})
            left -= n
    return out


async def _open_incident(http: httpx.AsyncClient, headers: dict[str, str], title: str, calls: int) -> UUID:
    body = {
        "kind": "benchmark", "title": title, "lat": LAT, "lon": LON, "unit_code": UNIT_CODE, "mode": "drill",
        "start_level": "city", "requirements": _requirements(calls),
        "policy": {"over_call_factor": 1.0, "wave_deadline_seconds": 3600, "max_level": "city"},
    }
    r = await http.post(f"{DISPATCH}/incidents", json=body, headers=headers, timeout=300.0)
    if r.status_code >= 400:
        raise RuntimeError(f"opening {title} failed: {r.status_code} {r.text[:300]}")
    return UUID(str(r.json()["incident"]["incident_id"]))


async def _feed_seq(http: httpx.AsyncClient) -> int:
    """The simulator's last message sequence number (sequence numbers have no gaps: the count)."""
    s = await http.get(f"{SIMULATOR}/sim/stats")
    s.raise_for_status()
    return int(s.json().get("messages", 0))


async def _wait_delivered(http: httpx.AsyncClient, after: int, titles: dict[str, UUID], expected: int,
                          *, timeout: float = 600.0) -> list[dict[str, Any]]:
    """Follow the simulator's feed after ``after`` until ``expected`` call-out messages for ``titles`` arrived.

    Stops early when nothing new arrived for 20 s. Returns the call-out messages (with ``incident_id``).
    """
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    last_new = time.monotonic()
    while time.monotonic() < deadline and len(got) < expected:
        r = await http.get(f"{SIMULATOR}/sim/messages", params={"after": after, "limit": 5000, "wait": 1})
        r.raise_for_status()
        items = r.json()["messages"]
        for m in items:
            after = max(after, int(m["seq"]))
            text = m.get("text", "")
            if "回复1" not in text:
                continue
            for title, incident_id in titles.items():
                if title in text:
                    got.append({**m, "incident_id": incident_id})
                    break
        if items:
            last_new = time.monotonic()
        elif time.monotonic() - last_new > 20:
            break
    return got


async def _targets(http: httpx.AsyncClient, headers: dict[str, str], db: asyncpg.Pool,
                   directory: Directory, need: int, tag: str, accept_share: float,
                   rng: random.Random) -> tuple[list[UUID], list[Reply]]:
    """Open incidents until call-outs that reached a phone by SMS take ``need`` replies; the schedule."""
    incidents: list[UUID] = []
    targets: list[Target] = []
    replies = 0
    per_callout = 1 + 2 * accept_share
    while replies < need:
        title = f"回复基准{tag}-{len(incidents) + 1}"
        after = await _feed_seq(http)
        calls = min(MAX_COUNT * MAX_REQUIREMENTS, math.ceil((need - replies) / per_callout / 0.6))
        t0 = time.monotonic()
        incident_id = await _open_incident(http, headers, title, calls)
        incidents.append(incident_id)
        rows = await db.fetch(
            "SELECT callout_id, volunteer_id, reply_code FROM callouts WHERE incident_id = $1 AND state = 'requested'",
            incident_id,
        )
        _log(f"opened {title}: {len(rows)} call-outs in {time.monotonic() - t0:.1f} s; waiting for the phones")
        if not rows:
            raise RuntimeError(f"{title} called no one: is the roster seeded?")
        by_volunteer = {str(r["volunteer_id"]): r for r in rows}
        msgs = await _wait_delivered(http, after, {title: incident_id}, len(rows))
        phones = await directory.phones(http, list(by_volunteer))
        sms = 0
        for m in msgs:
            vid = phones.get(m["recipient"])
            if m.get("channel") != "sms" or vid is None or vid not in by_volunteer:
                continue
            row = by_volunteer.pop(vid)  # one reply per call-out, even if a message came twice
            t = Target(row["callout_id"], m["recipient"], texts_for(row["reply_code"], rng.random() < accept_share))
            targets.append(t)
            replies += len(t.texts)
            sms += 1
        _log(f"{title}: {len(msgs)} call-out messages on the phones in {time.monotonic() - t0:.1f} s, {sms} by SMS")
        if sms == 0:
            raise RuntimeError(f"{title}: no call-out reached a phone by SMS")
    rng.shuffle(targets)
    return incidents, schedule(targets)[:need]


class Directory:
    """Phones (E.164) / openids → volunteer ids, from the roster API.

    Up to ``few`` volunteers are looked up one by one (``GET /volunteers/{id}``); more load the whole
    roster once (the drill runner's paged directory), kept for the rest of the run.
    """

    def __init__(self, few: int = 200) -> None:
        self._few = few
        self._by_volunteer: dict[str, list[str]] = {}
        self._whole = False

    async def phones(self, http: httpx.AsyncClient, volunteer_ids: list[str]) -> dict[str, str]:
        """Phone / openid → volunteer id for ``volunteer_ids`` (those the roster knows)."""
        from muster.drill.runner import ROSTER, DrillState, _load_directory, _roster_headers

        missing = [v for v in volunteer_ids if v not in self._by_volunteer]
        if missing and not self._whole and len(missing) > self._few:
            state = DrillState()
            await _load_directory(state, http)
            for phone, vid in state.phone_to_volunteer.items():
                self._by_volunteer.setdefault(vid, []).append(phone)
            self._whole = True
        elif missing and not self._whole:
            headers = _roster_headers()
            for vid in missing:
                r = await http.get(f"{ROSTER}/volunteers/{vid}", headers=headers)
                if r.status_code == 200:
                    body = r.json()
                    self._by_volunteer[vid] = [x for x in (body.get("mobile"), body.get("wechat_openid")) if x]
        return {phone: vid for vid in volunteer_ids for phone in self._by_volunteer.get(vid, [])}


# ------------------------------------------------------------------------------------------- timed


async def _send(session: aiohttp.ClientSession, t: Reply, w: Window) -> None:
    w.sent_at[(t.callout_id, t.nth)] = time.monotonic()
    w.unseen.add(t.callout_id)
    try:
        async with session.post(f"{SIMULATOR}/sim/phones/{t.mobile}/reply", json={"text": t.text}) as r:
            await r.read()
            if r.status != 200:
                w.errors.append(f"reply {r.status}")
    except (aiohttp.ClientError, TimeoutError) as exc:
        w.errors.append(f"reply failed: {exc!r}")


async def _schedule(targets: list[Reply], rate: float, w: Window) -> None:
    """Open loop: reply i starts at t0 + i / rate, however the system keeps up."""
    tasks: set[asyncio.Task[None]] = set()
    # idle connections are dropped before uvicorn's 5 s keep-alive ends (else a reused one may be closed under it)
    connector = aiohttp.TCPConnector(limit=512, keepalive_timeout=2.0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        t0 = time.monotonic()
        for i, t in enumerate(targets):
            due = t0 + i / rate
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(due - now)
            w.late.append(max(0.0, time.monotonic() - due))
            task = asyncio.create_task(_send(session, t, w))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)


async def _poll(db: asyncpg.Pool, w: Window, stop: asyncio.Event, interval: float) -> None:
    """Mark replies seen on dispatch's board (its ``replies`` table) every ``interval`` seconds.

    The *k*-th reply sent to a call-out is seen once the call-out has *k* replies recorded.
    """
    async with db.acquire() as conn:
        stmt = await conn.prepare("SELECT callout_id, count(*) AS n FROM replies WHERE callout_id = ANY($1::uuid[]) "
                                  "GROUP BY callout_id")
        while True:
            if stop.is_set() and not w.unseen:
                return
            t = time.monotonic()
            if w.unseen:
                for r in await stmt.fetch(list(w.unseen)):
                    c = r["callout_id"]
                    for k in range(1, r["n"] + 1):
                        if (c, k) in w.sent_at:
                            w.seen_at.setdefault((c, k), t)
                    if (c, r["n"] + 1) not in w.sent_at:
                        w.unseen.discard(c)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - t)))


async def _sim_stats(http: httpx.AsyncClient) -> dict[str, Any]:
    """The simulator's ``/sim/stats`` (``callbacks_pending``, ``callbacks_pending_by_stream``, counters)."""
    r = await http.get(f"{SIMULATOR}/sim/stats")
    r.raise_for_status()
    return dict(r.json())


async def _sample(bootstrap: str, group: str, http: httpx.AsyncClient, notify_db: asyncpg.Pool,
                  w: Window, stop: asyncio.Event, every: float, t0: float, verbose: bool = False) -> None:
    from shared.lag import consumer_lag

    while not stop.is_set():
        t = time.monotonic()
        lag, pending, outbox = None, None, None
        with contextlib.suppress(Exception):
            lag = await consumer_lag(bootstrap, group, REPLY.name)
        by_stream: dict[str, int] | None = None
        with contextlib.suppress(Exception):
            stats = await _sim_stats(http)
            pending, by_stream = int(stats.get("callbacks_pending", 0)), stats.get("callbacks_pending_by_stream")
        with contextlib.suppress(Exception):
            outbox = int(await notify_db.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"))
        w.samples.append({"t": round(t - t0, 2), "dispatch_replies_lag": lag, "sim_callbacks_pending": pending,
                          "sim_callbacks_pending_by_stream": by_stream, "notify_outbox_backlog": outbox,
                          "in_flight": len(w.sent_at) - len(w.seen_at)})
        if verbose:
            _log(f"sample {w.samples[-1]}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, every - (time.monotonic() - t)))


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def grew(series: list[float], rate: float) -> bool | None:
    """Whether a backlog grew: median of the last third > 2 × median of the first third + ``rate / 10``.

    ``rate / 10`` is 0.1 s worth of replies, so a steady backlog of a few dozen never counts as growth.
    None with fewer than 6 samples.
    """
    if len(series) < 6:
        return None
    third = len(series) // 3
    first, last = statistics.median(series[:third]), statistics.median(series[-third:])
    return last > 2 * first + rate / 10


async def _drive(targets: list[Reply], rate: float, *, db: asyncpg.Pool, notify_db: asyncpg.Pool,
                 http: httpx.AsyncClient, bootstrap: str, group: str, poll_interval: float,
                 sample_seconds: float, drain_seconds: float) -> dict[str, Any]:
    w = Window()
    stop_poll, stop_sample = asyncio.Event(), asyncio.Event()
    cpu_before = cpu.snapshot()
    t0 = time.monotonic()
    poller = asyncio.create_task(_poll(db, w, stop_poll, poll_interval))
    sampler = asyncio.create_task(_sample(bootstrap, group, http, notify_db, w, stop_sample, sample_seconds, t0,
                                          verbose=True))
    await _schedule(targets, rate, w)
    window = time.monotonic() - t0
    cpu_spent = cpu.spent(cpu_before, cpu.snapshot())
    cpu_total = cpu_spent["total"]
    stop_sample.set()
    await sampler
    stop_poll.set()
    try:
        await asyncio.wait_for(asyncio.shield(poller), drain_seconds)
    except TimeoutError:
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller
    lat = [(w.seen_at[k] - s) * 1000 for k, s in w.sent_at.items() if k in w.seen_at]
    in_flight = [float(s["in_flight"]) for s in w.samples]
    lags = [float(s["dispatch_replies_lag"]) for s in w.samples if s["dispatch_replies_lag"] is not None]
    sent, seen = len(w.sent_at), len(w.seen_at)
    growing = grew(in_flight, rate)
    return {
        "rate_per_s": rate, "window_s": round(window, 2), "sent": sent, "seen": seen, "send_errors": len(w.errors),
        "first_errors": w.errors[:5],
        "p50_ms": _round(_pct(lat, 0.50)), "p90_ms": _round(_pct(lat, 0.90)), "p99_ms": _round(_pct(lat, 0.99)),
        "max_ms": _round(max(lat) if lat else None),
        "generator_late_p99_ms": _round((_pct(w.late, 0.99) or 0) * 1000),
        "dispatch_replies_lag_max": max(lags) if lags else None,
        "dispatch_replies_lag_grew": grew(lags, rate),
        "sim_callbacks_pending_max": max((s["sim_callbacks_pending"] or 0) for s in w.samples) if w.samples else None,
        "notify_outbox_backlog_max": max((s["notify_outbox_backlog"] or 0) for s in w.samples) if w.samples else None,
        "in_flight_max": max(in_flight) if in_flight else None,
        "backlog_grew": growing,
        "held": bool(seen == sent and not w.errors and growing is False),
        "cpu_seconds": cpu_spent,
        "cpu_ms_per_reply": round(cpu_total * 1000 / sent, 2) if sent and cpu_total is not None else None,
        "samples": w.samples,
    }


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


# ------------------------------------------------------------------------------------------- tear-down


async def _quiet(bootstrap: str, db: asyncpg.Pool, notify_db: asyncpg.Pool, http: httpx.AsyncClient, *,
                 timeout: float = 300.0) -> bool:
    """Wait until the call-outs, confirmations and stand-downs went out: every queue on the way empty twice.

    Queues: notify's call-out consumer and dispatch's reply and delivery consumers (lag), both
    outboxes, notify's send queue (``messages`` pending and not yet tried; a few retried on a
    backoff, e.g. a volunteer with no contact, never leave it), and the simulator's callbacks
    (``/sim/stats`` ``callbacks_pending``: the set-up's delivery receipts, thousands of them, still
    queued or waiting for a re-push). A timed window that started with those still flowing into
    notify measured the set-up's receipts as much as the replies (2,400 pending at t = 0 in the
    11:30 run); a provider's re-push schedule is scaled to seconds on the simulator
    (``SIMULATOR_CALLBACK_MINUTE_SECONDS``), so they drain.

    Returns:
        True when quiet; False after ``timeout`` seconds (the last checks are logged).

    """
    from shared.lag import consumer_lag

    deadline = time.monotonic() + timeout
    quiet = 0
    checks: dict[str, Any] = {}
    while time.monotonic() < deadline:
        checks = {
            "notify.callouts lag": await consumer_lag(bootstrap, "notify.callouts", CALLOUT.name),
            "dispatch.replies lag": await consumer_lag(bootstrap, "dispatch.replies", REPLY.name),
            "dispatch.deliveries lag": await consumer_lag(bootstrap, "dispatch.deliveries", DELIVERY.name),
            "dispatch outbox": await db.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"),
            "notify outbox": await notify_db.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"),
            "notify messages to send": await notify_db.fetchval(  # not those retried on a backoff (no contact…)
                "SELECT count(*) FROM messages WHERE status = 'pending' AND attempts = 0"),
            "simulator callbacks pending": (await _sim_stats(http)).get("callbacks_pending_by_stream"),
        }
        quiet = quiet + 1 if not any(checks.values()) else 0
        if quiet >= 2:
            return True
        await asyncio.sleep(1.0)
    _log(f"the stack did not quieten in {timeout:g} s: {checks}")
    return False


async def _close(http: httpx.AsyncClient, headers: dict[str, str], incidents: list[UUID]) -> None:
    for incident_id in incidents:
        r = await http.post(f"{DISPATCH}/incidents/{incident_id}/close", json={"outcome": "benchmark complete"},
                            headers=headers, timeout=300.0)
        if r.status_code >= 400:
            _log(f"closing {incident_id} failed: {r.status_code} {r.text[:200]}")


# ------------------------------------------------------------------------------------------- run


async def run(rates: tuple[float, ...] = (100, 500, 1000), seconds: float = 60.0, *, accept_share: float = 0.6,
              poll_interval: float = 0.01, sample_seconds: float = 1.0, drain_seconds: float = 60.0,
              start: bool = True, seed: int = 7) -> dict[str, Any]:
    """Run the reply-path benchmark at each rate for ``seconds`` seconds (see the module docstring).

    Args:
        rates: replies per second, one timed window each, in this order.
        seconds: length of each timed window, seconds.
        accept_share: share of call-outs accepted (then an ETA and an arrival follow); the rest decline. 0..1.
        poll_interval: seconds between two looks at dispatch's ``replies`` table.
        sample_seconds: seconds between two lag samples.
        drain_seconds: how long after the last send a reply may take to reach the board before it counts
            as not seen.
        start: start the stack and the services when they are not running.
        seed: seeds the accept/decline draw and the reply order.

    Returns:
        ``{"rates": [per-rate figures: rate_per_s, sent, seen, p50_ms, p90_ms, p99_ms, max_ms, lags…, held,
        samples]}, "highest_rate_held": float | None, "seconds": float, "accept_share": float,
        "load_average": [1, 5, 15 min] at the end}``.

    Raises:
        RuntimeError: an incident could not be opened or called no one by SMS.

    """
    from deploy.stack import stack_env
    from muster.drill.runner import _ensure_stack, _operator_token, _wait_projections
    from shared.logging import configure_logging

    configure_logging(level="WARNING")
    if start:
        await asyncio.to_thread(_ensure_stack)
    env = stack_env()
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    group = "dispatch.replies"
    rng = random.Random(seed)
    results: list[dict[str, Any]] = []
    db = await asyncpg.create_pool(env["DISPATCH_DATABASE_URL"], min_size=1, max_size=3)
    notify_db = await asyncpg.create_pool(env["NOTIFY_DATABASE_URL"], min_size=1, max_size=2)
    guard = await asyncpg.connect(env["DISPATCH_DATABASE_URL"])
    try:
        if not await guard.fetchval("SELECT pg_try_advisory_lock($1)", RUN_LOCK):
            _log("another reply-path run holds the stack: waiting for it")
            await guard.execute("SELECT pg_advisory_lock($1)", RUN_LOCK)
        async with httpx.AsyncClient(timeout=30.0) as http:
            await _wait_projections(bootstrap)
            headers = {"Authorization": f"Bearer {await _operator_token()}"}
            directory = Directory()
            for rate in rates:
                need = math.ceil(rate * seconds)
                tag = f"{int(rate)}-{uuid.uuid4().hex[:4]}"
                _log(f"rate {rate:g}/s for {seconds:g} s: setting up {need} call-outs")
                incidents, targets = await _targets(http, headers, db, directory, need, tag, accept_share, rng)
                if not await _quiet(bootstrap, db, notify_db, http):
                    _log("starting anyway")
                _log(f"rate {rate:g}/s: timed window starts ({len(targets)} replies)")
                figures = await _drive(targets, rate, db=db, notify_db=notify_db, http=http, bootstrap=bootstrap,
                                       group=group, poll_interval=poll_interval, sample_seconds=sample_seconds,
                                       drain_seconds=drain_seconds)
                figures["incidents"] = len(incidents)
                figures["load_average"] = list(os.getloadavg())
                results.append(figures)
                _log(f"rate {rate:g}/s: sent {figures['sent']}, seen {figures['seen']}, p50 {figures['p50_ms']} ms, "
                     f"p99 {figures['p99_ms']} ms, held {figures['held']}, cpu {figures['cpu_ms_per_reply']} ms a reply "
                     f"{figures['cpu_seconds']}; closing {len(incidents)} incidents")
                await _close(http, headers, incidents)
                await _quiet(bootstrap, db, notify_db, http)
    finally:
        await guard.close()  # releases the run lock
        await db.close()
        await notify_db.close()
    held = [r["rate_per_s"] for r in results if r["held"]]
    return {
        "seconds": seconds, "accept_share": accept_share, "poll_interval_s": poll_interval,
        "end_point": "dispatch replies row committed (what GET /incidents/{id}/callouts shows), polled",
        "rates": results, "highest_rate_held": max(held) if held else None,
        "load_average": list(os.getloadavg()),
    }


def _table(result: dict[str, Any]) -> str:
    head = (f"{'rate/s':>7} {'sent':>7} {'seen':>7} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} "
            f"{'lag max':>8} {'inflight':>8} {'grew':>5} {'held':>5} {'load1':>6}")
    lines = [head]
    for r in result["rates"]:
        lines.append(
            f"{r['rate_per_s']:>7g} {r['sent']:>7} {r['seen']:>7} {_f(r['p50_ms'])} {_f(r['p90_ms'])} "
            f"{_f(r['p99_ms'])} {_f(r['max_ms'])} {_f(r['dispatch_replies_lag_max'])} {_f(r['in_flight_max'])} "
            f"{r['backlog_grew']!s:>5} {r['held']!s:>5} {r['load_average'][0]:>6.2f}"
        )
    lines.append(f"highest rate held for {result['seconds']:g} s without growing lag: "
                 f"{result['highest_rate_held']}/s")
    return "\n".join(lines)


def _f(v: float | None) -> str:
    return f"{'-':>8}" if v is None else f"{v:>8.0f}"


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.reply_path [--rates 100,500,1000] [--seconds 60] [--accept-share 0.5] [--note TEXT]``."""
    from bench.machine import save

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--rates", default="100,500,1000", help="replies per second, comma-separated")
    p.add_argument("--seconds", type=float, default=60.0, help="length of each timed window, seconds")
    p.add_argument("--accept-share", type=float, default=0.6)
    p.add_argument("--note", default="", help="recorded with the result (e.g. 'before the pusher fix')")
    args = p.parse_args(argv)
    rates = tuple(float(x) for x in args.rates.split(","))
    result = asyncio.run(run(rates, args.seconds, accept_share=args.accept_share))
    result["note"] = args.note
    print(_table(result))
    print(f"written {save('reply_path', result)}")


if __name__ == "__main__":
    main()
