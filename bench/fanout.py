"""Call-out fan-out: from the operator's request to every message accepted by the provider simulator.

Runs on the real stack with the real services (``muster stack up --services``): dispatch, notify, the
roster's projections and the provider simulator, each its own process, as ``make drill`` runs them.

For each size N (default 100, 1,000 and 10,000):

1. Untimed: the roster is seeded if empty (the drill's 20,000 volunteers) and the projections have caught up.
2. Timed from ``t0``, the moment before ``POST /incidents`` leaves: a drill-mode incident at city level
   (``start_level`` and ``max_level`` ``city``, over-call factor 10, deadline 1,800 s so no escalation or
   deadline interferes) whose requirements add up to N/10 people, so the first wave calls N volunteers.
   Dispatch selects and writes N call-outs and their events (outbox); the relay publishes them; notify
   renders and sends; the simulator accepts each message (Aliyun ``SendBatchSms``, WeChat template sends)
   and stamps ``received_at``.
3. Figures: ``api_seconds`` (the operator's POST answered), ``wall_seconds`` (``t0`` → the last of the N
   messages accepted), and p50/p99 of each message's latency (``received_at`` − ``t0``, milliseconds).
   Messages are matched to the incident by its unique title in the text; ``duplicates`` counts a second
   call-out message to the same phone (must be 0) and ``missing`` call-outs on the board with no message.
   ``cpu_seconds``: CPU seconds each process of the stack spent from ``t0`` until the last message was
   seen (:mod:`bench.cpu`; the benchmark's own polling of the simulator is in ``simulator``).
   ``row_writes``: rows the three databases inserted, updated and deleted over the same window (+1.5 s
   for PostgreSQL's statistics to arrive; :mod:`bench.row_writes`), and ``row_writes_per_callout``.
4. Untimed: the incident is closed (notify then stands the N volunteers down) and the stack is left to go
   quiet (consumer lag 0, no new simulator messages for 2 s) before the next size.

Clocks: ``t0`` and ``received_at`` are both this machine's wall clock (UTC). A size is reported as not
reached (``wall_seconds`` ``None``) when its messages do not all arrive within ``timeout`` seconds.

Run: ``uv run --frozen python -m bench.fanout [--sizes 100,1000,10000]``; prints a table and writes
``bench/results/fanout-<UTC time>.json`` with the machine's facts; ``bench.run`` calls :func:`run`.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import time
import uuid
from collections import Counter
from datetime import datetime
from typing import Any

import httpx

from bench import cpu, row_writes
from bench.machine import save
from muster.drill.runner import classify

# The marathon finish area in 越城区 (scenario b): a city-level wave reaches the whole city from here.
POINT = {"lat": 30.0080, "lon": 120.5580, "unit_code": "330602004017"}
# Skills requested, in order, for as many people as the roster has free (first-aid alone is ~7,600 of 20,000).
SKILLS = ("first_aid", "cpr_aed", "logistics", "driver", "search_rescue", "medical", "water_rescue",
          "psych_support", "rope_rescue")
FACTOR = 10


def _pct(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def _free_by_skill(dispatch_dsn: str) -> dict[str, int]:
    """Volunteers per skill in dispatch's projection that are available and not on an open call-out."""
    import asyncpg

    conn = await asyncpg.connect(dispatch_dsn)
    try:
        rows = await conn.fetch(
            """
            SELECT s, count(*) FROM volunteers v, unnest(v.skills) s
            WHERE v.active AND v.availability = 'available'
              AND NOT EXISTS (SELECT 1 FROM callouts c WHERE c.volunteer_id = v.volunteer_id
                              AND c.state IN ('requested', 'timed_out', 'assigned'))
            GROUP BY s
            """
        )
    finally:
        await conn.close()
    return {r[0]: r[1] for r in rows}


def requirements_for(n: int, free: dict[str, int]) -> list[dict[str, Any]]:
    """Requirements adding up to ``ceil(n / FACTOR)`` people, each skill asked for at most a fifth of its free.

    A volunteer is called once per incident, and people hold several skills, so a skill is asked for
    no more than 1/(FACTOR·2) of those free with it; the wave then finds N distinct people.

    Raises:
        RuntimeError: the roster is too small for N.

    """
    need = math.ceil(n / FACTOR)
    out: list[dict[str, Any]] = []
    for skill in SKILLS:
        take = min(need, free.get(skill, 0) // (FACTOR * 2), 2000)
        if take > 0:
            out.append({"skill": skill, "count": take})
            need -= take
        if need == 0:
            return out
    raise RuntimeError(f"the roster has too few free volunteers for a wave of {n} (free by skill: {free})")


async def _last_seq(http: httpx.AsyncClient, sim: str) -> int:
    return int((await http.get(f"{sim}/sim/messages", params={"after": 0, "limit": 1, "wait": 0})).json()["last_seq"])


async def _settle(http: httpx.AsyncClient, sim: str, bootstrap: str, quiet_seconds: float = 2.0,
                  timeout: float = 300.0) -> None:
    """Wait until notify's and dispatch's consumer groups are at lag 0 and the simulator took nothing new."""
    from shared.lag import consumer_lags
    from shared.topics import CALLOUT, DELIVERY, REPLY

    groups = (("notify.callouts", CALLOUT.name), ("dispatch.deliveries", DELIVERY.name),
              ("dispatch.replies", REPLY.name))
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        seq = await _last_seq(http, sim)
        if seq != last:
            last, since = seq, time.monotonic()
        lags = list((await consumer_lags(bootstrap, groups)).values())
        if all(x in (0, None) for x in lags) and time.monotonic() - since >= quiet_seconds:
            return
        await asyncio.sleep(0.5)


async def fan_out_once(n: int, *, http: httpx.AsyncClient, headers: dict[str, str], dispatch: str, sim: str,
                       dispatch_dsn: str, timeout: float = 180.0) -> dict[str, Any]:
    """One incident whose first wave calls ``n`` volunteers; returns the figures of the module docstring."""
    requirements = requirements_for(n, await _free_by_skill(dispatch_dsn))
    tag = f"基准{n}-{uuid.uuid4().hex[:4]}"
    body = {"kind": "benchmark", "title": tag, **POINT, "mode": "drill", "start_level": "city",
            "requirements": requirements,
            "policy": {"over_call_factor": FACTOR, "wave_deadline_seconds": 1800, "max_level": "city"}}
    after = await _last_seq(http, sim)
    rows_before = await row_writes.snapshot()
    cpu_before = cpu.snapshot()
    t0 = time.time()
    r = await http.post(f"{dispatch}/incidents", json=body, headers=headers)
    api_seconds = time.time() - t0
    r.raise_for_status()
    board = r.json()
    incident_id = board["incident"]["incident_id"]
    # the board the POST answers counts the call-outs by state; listing all N of them here (GET …/callouts)
    # cost dispatch ~0.4 s of CPU inside the timed window at N = 10,000
    called = sum(board["callouts_by_state"].values())
    received: list[tuple[str, float]] = []
    channels: Counter[str] = Counter()
    deadline = time.monotonic() + timeout
    while len(received) < called and time.monotonic() < deadline:
        page = (await http.get(f"{sim}/sim/messages", params={"after": after, "limit": 5000, "wait": 1})).json()
        for m in page["messages"]:
            if tag in m["text"] and classify(m["text"]) == "callout":
                received.append((m["recipient"], datetime.fromisoformat(m["received_at"]).timestamp()))
                channels[m["channel"]] += 1
        after = page["last_seq"] if page["messages"] else after
    cpu_spent = cpu.spent(cpu_before, cpu.snapshot())
    await asyncio.sleep(row_writes.FLUSH_SECONDS)  # untimed: the backends report their last second's counters
    rows = row_writes.spent(rows_before, await row_writes.snapshot())
    latencies = sorted((at - t0) * 1000 for _, at in received)
    per_phone = Counter(phone for phone, _ in received)
    complete = len(per_phone) >= called
    await http.post(f"{dispatch}/incidents/{incident_id}/close", json={"outcome": "benchmark done"}, headers=headers)
    return {
        "n": n,
        "called": called,
        "requirements": requirements,
        "api_seconds": round(api_seconds, 3),
        "wall_seconds": round(latencies[-1] / 1000, 3) if complete and latencies else None,
        "p50_ms": round(_pct(latencies, 50), 1) if latencies else None,
        "p99_ms": round(_pct(latencies, 99), 1) if latencies else None,
        "messages": len(received),
        "by_channel": dict(channels),
        "duplicates": sum(c - 1 for c in per_phone.values()),
        "missing": max(0, called - len(per_phone)),
        "cpu_seconds": cpu_spent,
        # what the databases wrote from the POST until every message was accepted (+ FLUSH_SECONDS): call-outs,
        # messages, outbox rows and their stamps, processed events, receipts that came in; not the stand-down
        "row_writes": rows,
        "row_writes_per_callout": round(rows["total"] / called, 1) if called else None,
    }


async def run(sizes: tuple[int, ...] = (100, 1000, 10000), *, timeout: float = 180.0) -> dict[str, Any]:
    """Fan-out figures per size: ``{"sizes": [{"n", "called", "api_seconds", "wall_seconds", "p50_ms", ...}]}``.

    Starts what is not running (stack and services), seeds the roster when empty.

    Raises:
        RuntimeError: the roster is too small for a size, or the services do not come up.

    """
    from deploy.stack import StackSettings, stack_env
    from muster.drill import runner

    env = await asyncio.to_thread(runner._ensure_stack)
    urls = StackSettings()
    async with httpx.AsyncClient(timeout=60) as http:
        if await runner._roster_size(http) < 20_000:
            proc = await asyncio.create_subprocess_exec(
                *runner._muster(), "roster", "seed", "--volunteers", "20000", "--teams", "150", "--seed", "1")
            if await proc.wait() != 0:
                raise RuntimeError("muster roster seed failed")
        await runner._wait_projections(env["KAFKA_BOOTSTRAP_SERVERS"])
        headers = {"Authorization": f"Bearer {await runner._operator_token()}"}
        sim, dispatch = urls.url("simulator"), urls.url("dispatch")
        out = []
        for n in sizes:
            await _settle(http, sim, env["KAFKA_BOOTSTRAP_SERVERS"])
            fig = await fan_out_once(n, http=http, headers=headers, dispatch=dispatch, sim=sim,
                                     dispatch_dsn=stack_env()["DISPATCH_DATABASE_URL"], timeout=timeout)
            fig["load_average_1min"] = round(os.getloadavg()[0], 2)
            out.append(fig)
            print(f"fan-out {n:>6}: called {fig['called']}, wall {fig['wall_seconds']} s, p50 {fig['p50_ms']} ms, "
                  f"p99 {fig['p99_ms']} ms, duplicates {fig['duplicates']}, missing {fig['missing']}", flush=True)
            print(f"  cpu seconds: {fig['cpu_seconds']}", flush=True)
            print(f"  row writes: {fig['row_writes']['by_database']} ({fig['row_writes_per_callout']} a call-out)",
                  flush=True)
        await _settle(http, sim, env["KAFKA_BOOTSTRAP_SERVERS"])
    return {"sizes": out}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000", help="Comma-separated call-out counts.")
    parser.add_argument("--timeout", type=float, default=180.0, help="Seconds to wait for one size's messages.")
    args = parser.parse_args()
    from shared.logging import configure_logging

    configure_logging(level="WARNING")
    result = asyncio.run(run(tuple(int(s) for s in args.sizes.split(",")), timeout=args.timeout))
    print(f"{'N':>7} {'called':>7} {'api s':>7} {'wall s':>8} {'p50 ms':>8} {'p99 ms':>8} {'dup':>4} {'miss':>5}")
    for f in result["sizes"]:
        print(f"{f['n']:>7} {f['called']:>7} {f['api_seconds']:>7} {f['wall_seconds']!s:>8} {f['p50_ms']!s:>8} "
              f"{f['p99_ms']!s:>8} {f['duplicates']:>4} {f['missing']:>5}")
    print("written to", save("fanout", result))
