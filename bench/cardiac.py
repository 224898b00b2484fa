"""Cardiac arrest: the operator's open → the first alert accepted by the provider simulator, quiet and under load.

Runs on the real stack with the real services (``muster stack up --services``), as :mod:`bench.fanout`.

1. Untimed: the roster is seeded if empty (the drill's 20,000 volunteers) and the projections have caught up.
2. ``quiet``: ``samples`` cardiac-arrest incidents opened one after another at 鲁迅故里 (a few metres apart,
   each closed once its first alert is seen). A sample is timed from ``t0``, the moment before
   ``POST /incidents`` leaves, to the simulator's ``received_at`` of the first call-out message of that
   incident (matched by its unique 6-character title): dispatch selects the circle's first ring and writes
   its call-outs (outbox), the relay publishes, notify claims (cardiac messages first), renders and sends.
3. ``loaded``: a drill incident whose first wave calls ``fanout`` volunteers city-wide (:mod:`bench.fanout`'s
   requirements) is opened, and while its messages are going out cardiac incidents are opened every
   ``interval`` seconds, as in 2. Each sample records how many of the fan-out's messages the simulator had
   accepted at its ``t0`` (``fanout_done``): a sample with ``fanout_done < called`` ran while the fan-out was in
   flight. The first samples overlap the fan-out's own opening transaction.
4. Figures: per phase ``p50_ms``, ``p99_ms``, ``max_ms`` over the samples (milliseconds), the samples
   themselves, and the fan-out's wall time.

One poller reads the simulator's message feed for all samples (its cost is the benchmark's, in the
simulator process). Clocks: ``t0`` and ``received_at`` are this machine's wall clock (UTC).

Run: ``uv run --frozen python -m bench.cardiac [--samples 20] [--fanout 10000]``; writes
``bench/results/cardiac-<UTC time>.json`` with the machine's facts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import statistics
import time
import uuid
from datetime import datetime
from typing import Any

import httpx

from bench.fanout import FACTOR, POINT, _free_by_skill, _last_seq, _settle, requirements_for
from bench.machine import save
from muster.drill.runner import classify

LUXUN: dict[str, Any] = {"lat": 29.99680, "lon": 120.58200, "unit_code": "330602001015"}  # 鲁迅故里, WGS84


class Feed:
    """Reads the simulator's feed; remembers the first call-out ``received_at`` per tag and counts a tag's call-outs."""

    def __init__(self, http: httpx.AsyncClient, sim: str, after: int) -> None:
        self.http, self.sim, self.after = http, sim, after
        self.first: dict[str, float] = {}
        self.tags: set[str] = set()
        self.counts: dict[str, int] = {}
        self.seen = asyncio.Event()

    async def run(self) -> None:
        while True:
            page = (await self.http.get(f"{self.sim}/sim/messages",
                                        params={"after": self.after, "limit": 5000, "wait": 1})).json()
            for m in page["messages"]:
                if classify(m["text"]) != "callout":
                    continue
                for tag in self.tags:
                    if tag in m["text"]:
                        self.counts[tag] = self.counts.get(tag, 0) + 1
                        self.first.setdefault(tag, datetime.fromisoformat(m["received_at"]).timestamp())
                        self.seen.set()
            self.after = page["last_seq"] if page["messages"] else self.after

    async def wait_first(self, tag: str, timeout: float = 60.0) -> float | None:
        deadline = time.monotonic() + timeout
        while tag not in self.first and time.monotonic() < deadline:
            self.seen.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.seen.wait(), timeout=1.0)
        return self.first.get(tag)


def _pct(values: list[float], q: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 1)
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 1)


async def cardiac_once(i: int, *, http: httpx.AsyncClient, headers: dict[str, str], dispatch: str, feed: Feed,
                       fanout_tag: str | None = None) -> dict[str, Any]:
    """Open one cardiac arrest (a few metres from 鲁迅故里), time its first alert, close it."""
    tag = f"心停{i % 100:02d}{uuid.uuid4().hex[:2].upper()}"
    feed.tags.add(tag)
    east = (i % 7 - 3) * 15.0  # metres, so consecutive samples do not sit on one point
    lat0, lon0 = 29.99680, 120.58200
    lon = lon0 + east / (111_195.0 * math.cos(math.radians(lat0)))
    body = {"kind": "cardiac_arrest", "title": tag, **LUXUN, "lon": lon, "mode": "drill",
            "policy": {"wave_deadline_seconds": 120}}
    done = feed.counts.get(fanout_tag, 0) if fanout_tag else None
    t0 = time.time()
    r = await http.post(f"{dispatch}/incidents", json=body, headers=headers)
    api = time.time() - t0
    r.raise_for_status()
    incident_id = r.json()["incident"]["incident_id"]
    first = await feed.wait_first(tag)
    await http.post(f"{dispatch}/incidents/{incident_id}/close", json={"outcome": "benchmark"}, headers=headers)
    return {"api_ms": round(api * 1000, 1), "first_alert_ms": round((first - t0) * 1000, 1) if first else None,
            "fanout_done": done, "incident_id": incident_id, "t0": t0}


async def stages(samples: list[dict[str, Any]], dispatch_dsn: str, notify_dsn: str) -> None:
    """Untimed, afterwards: where each sample's first alert spent its time (ms after ``t0``).

    ``published_ms``: dispatch's relay published the first ``CallOutRequested``; ``queued_ms``: notify's consumer
    wrote its message (transaction start); ``sent_ms``: the provider call for it was recorded.
    """
    import asyncpg

    d, n = await asyncpg.connect(dispatch_dsn), await asyncpg.connect(notify_dsn)
    try:
        for s in samples:
            pub = await d.fetchval(
                "SELECT extract(epoch FROM min(published_at)) FROM outbox WHERE headers->>'event_type' = "
                "'CallOutRequested' AND convert_from(payload, 'UTF8')::jsonb->>'incident_id' = $1", s["incident_id"])
            row = await n.fetchrow(
                "SELECT extract(epoch FROM min(created_at)) AS queued, extract(epoch FROM min(sent_at)) AS sent "
                "FROM messages WHERE incident_id = $1::uuid AND kind = 'callout'", s["incident_id"])
            for name, at in (("published_ms", pub), ("queued_ms", row["queued"]), ("sent_ms", row["sent"])):
                s[name] = round((float(at) - s["t0"]) * 1000, 1) if at is not None else None
    finally:
        await d.close()
        await n.close()


def _phase(samples: list[dict[str, Any]]) -> dict[str, Any]:
    ms = [s["first_alert_ms"] for s in samples if s["first_alert_ms"] is not None]
    return {"samples": len(samples), "missing": len(samples) - len(ms), "p50_ms": _pct(ms, 50),
            "p99_ms": _pct(ms, 99), "max_ms": round(max(ms), 1) if ms else None}


async def run(samples: int = 20, fanout: int = 10_000, interval: float = 0.5) -> dict[str, Any]:
    """The figures of the module docstring: ``{"quiet": {...}, "loaded": {...}, "fanout": {...}}``."""
    from deploy.stack import StackSettings, stack_env
    from muster.drill import runner

    env = await asyncio.to_thread(runner._ensure_stack)
    urls = StackSettings()
    sim, dispatch = urls.url("simulator"), urls.url("dispatch")
    async with httpx.AsyncClient(timeout=120) as http:
        if await runner._roster_size(http) < 20_000:
            proc = await asyncio.create_subprocess_exec(
                *runner._muster(), "roster", "seed", "--volunteers", "20000", "--teams", "150", "--seed", "1")
            if await proc.wait() != 0:
                raise RuntimeError("muster roster seed failed")
        await runner._wait_projections(env["KAFKA_BOOTSTRAP_SERVERS"])
        headers = {"Authorization": f"Bearer {await runner._operator_token('bench-cardiac')}"}
        await _settle(http, sim, env["KAFKA_BOOTSTRAP_SERVERS"])
        feed = Feed(http, sim, await _last_seq(http, sim))
        poller = asyncio.create_task(feed.run())
        try:
            quiet = [await cardiac_once(i, http=http, headers=headers, dispatch=dispatch, feed=feed)
                     for i in range(samples)]
            await _settle(http, sim, env["KAFKA_BOOTSTRAP_SERVERS"])
            requirements = requirements_for(fanout, await _free_by_skill(stack_env()["DISPATCH_DATABASE_URL"]))
            fan_tag = f"基准{fanout}-{uuid.uuid4().hex[:4]}"
            feed.tags.add(fan_tag)
            body = {"kind": "benchmark", "title": fan_tag, **POINT, "mode": "drill", "start_level": "city",
                    "requirements": requirements,
                    "policy": {"over_call_factor": FACTOR, "wave_deadline_seconds": 1800, "max_level": "city"}}
            t_fan = time.time()
            fan_post = asyncio.create_task(http.post(f"{dispatch}/incidents", json=body, headers=headers))
            loaded: list[dict[str, Any]] = []
            i = samples
            while len(loaded) < samples:
                await asyncio.sleep(interval)
                loaded.append(await cardiac_once(i, http=http, headers=headers, dispatch=dispatch, feed=feed,
                                                 fanout_tag=fan_tag))
                i += 1
            r = await fan_post
            r.raise_for_status()
            called = sum(r.json()["callouts_by_state"].values())
            fan_api = r.elapsed.total_seconds()
            deadline = time.monotonic() + 180
            while feed.counts.get(fan_tag, 0) < called and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
            fan_wall = (time.time() - t_fan) if feed.counts.get(fan_tag, 0) >= called else None
            for s in loaded:
                s["fanout_in_flight"] = s["fanout_done"] is not None and s["fanout_done"] < called
            await http.post(f"{dispatch}/incidents/{r.json()['incident']['incident_id']}/close",
                            json={"outcome": "benchmark done"}, headers=headers)
            await _settle(http, sim, env["KAFKA_BOOTSTRAP_SERVERS"])
            await stages(quiet + loaded, stack_env()["DISPATCH_DATABASE_URL"], stack_env()["NOTIFY_DATABASE_URL"])
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
    in_flight = [s for s in loaded if s["fanout_in_flight"]]
    return {
        "quiet": {**_phase(quiet), "all": quiet},
        "loaded": {**_phase(loaded), "in_flight": _phase(in_flight), "all": loaded},
        "fanout": {"called": called, "api_seconds": round(fan_api, 3),
                   "wall_seconds": round(fan_wall, 3) if fan_wall else None},
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--fanout", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=0.5, help="Seconds between cardiac opens under load.")
    args = parser.parse_args()
    from shared.logging import configure_logging

    configure_logging(level="WARNING")
    result = asyncio.run(run(args.samples, args.fanout, args.interval))
    for phase in ("quiet", "loaded"):
        f = result[phase]
        print(f"{phase:>7}: {f['samples']} samples, p50 {f['p50_ms']} ms, p99 {f['p99_ms']} ms, max {f['max_ms']} ms, "
              f"missing {f['missing']}")
    print(f"in flight: {result['loaded']['in_flight']}")
    print(f"fan-out: {result['fanout']}")
    print("written to", save("cardiac", result))
