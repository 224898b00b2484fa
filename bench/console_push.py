"""Console push (issue #15): a reply sent by a simulator phone → visible on the open console page in the browser.

    phone ─POST /sim/phones/{mobile}/reply─▶ simulator ─▶ notify ─Kafka─▶ dispatch (reply batch commits,
    pg_notify) ─LISTEN─▶ BoardHub ─SSE─▶ 20 viewers: one headless Chromium page on the board + 19 SSE clients

For each rate a drill incident is opened whose call-outs reached phones by SMS (bench.reply_path's set-up);
then every call-out gets one reply (60 % accept, the rest decline) at a steady rate for ``seconds``. The
page records (MutationObserver on the responders table) when each call-out's row first shows its new state,
in the browser's wall clock; the sender records when it posted the reply, in the same machine's clock. The
latency is the difference. The 19 other viewers are real SSE clients (they cost dispatch what a page does:
the same frames), not browsers: 20 Chromium pages would measure the 2-core machine's browser, not dispatch.
Run: ``uv run python -m bench.console_push [--rates 10,100] [--seconds 10]``; results in bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.machine import save
from bench.reply_path import DISPATCH, SIMULATOR, Directory, Reply, _close, _targets

VIEWERS = 20

_OBSERVER = """() => {
  window.__seen = {};
  const tbody = document.querySelector('#responders tbody');
  const look = () => { const now = Date.now();
    for (const tr of tbody.children) { const k = tr.dataset.callout + ':' + tr.dataset.state;
      if (!(k in window.__seen)) window.__seen[k] = now; } };
  look(); new MutationObserver(look).observe(tbody, { childList: true });
}"""


def _log(msg: str) -> None:
    print(f"[console_push {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, math.ceil(q * len(s)) - 1)], 1)


async def _sse_viewer(http: httpx.AsyncClient, url: str, headers: dict[str, str], stop: asyncio.Event,
                      counts: list[int]) -> None:
    async with http.stream("GET", url, headers=headers, timeout=None) as resp:
        async for chunk in resp.aiter_bytes():
            counts[0] += chunk.count(b"event: board")
            if stop.is_set():
                return


async def _one_rate(rate: float, seconds: float, *, http: httpx.AsyncClient, headers: dict[str, str],
                    db: asyncpg.Pool, browser: Any, token: str, rng: random.Random) -> dict[str, Any]:
    need = math.ceil(rate * seconds)
    tag = f"console-{int(rate)}-{uuid.uuid4().hex[:4]}"
    incidents, declines = await _targets(http, headers, db, Directory(), need, tag, 0.0, rng)  # texts "2<code>"
    replies = [Reply(t.callout_id, 1, t.mobile, ("1" if rng.random() < 0.6 else "2") + t.text[1:])
               for t in declines]
    want = {str(r.callout_id): ("assigned" if r.text.startswith("1") else "declined") for r in replies}
    incident_id = str(incidents[-1])
    by_incident = await db.fetch("SELECT callout_id::text, incident_id::text FROM callouts WHERE callout_id = ANY($1)",
                                 [r.callout_id for r in replies])
    on_page = {row["callout_id"] for row in by_incident if row["incident_id"] == incident_id}
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
    await page.add_init_script(f"sessionStorage.setItem('muster.operator.token', {json.dumps(token)})")
    await page.goto(f"{DISPATCH}/console/incidents/{incident_id}")
    await page.wait_for_selector("#conn.on", timeout=60_000)
    await page.wait_for_selector("#responders tbody tr", timeout=60_000)
    await page.evaluate(_OBSERVER)
    stop, counts = asyncio.Event(), [0]
    viewers = [asyncio.create_task(_sse_viewer(http, f"{DISPATCH}/incidents/{incident_id}/stream", headers, stop,
                                               counts)) for _ in range(VIEWERS - 1)]
    sent_at: dict[str, float] = {}
    t0 = time.monotonic()
    errors = 0
    async with httpx.AsyncClient(timeout=30) as sim:
        for i, r in enumerate(replies):
            await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))
            sent_at[str(r.callout_id)] = time.time() * 1000
            resp = await sim.post(f"{SIMULATOR}/sim/phones/{r.mobile}/reply", json={"text": r.text})
            errors += resp.status_code >= 300
    deadline = time.monotonic() + 60
    seen: dict[str, float] = {}
    while time.monotonic() < deadline:
        marks = await page.evaluate("window.__seen")
        seen = {cid: marks[f"{cid}:{want[cid]}"] for cid in on_page if cid in sent_at and f"{cid}:{want[cid]}" in marks}
        if len(seen) >= len([c for c in on_page if c in sent_at]):
            break
        await asyncio.sleep(0.5)
    stop.set()
    for v in viewers:
        v.cancel()
    await asyncio.gather(*viewers, return_exceptions=True)
    await page.screenshot(path=str(Path("reports/screenshots") / f"bench-console-{int(rate)}.png"))
    await page.close()
    await _close(http, headers, incidents)
    lat = [seen[c] - sent_at[c] for c in seen]
    expected = len([c for c in on_page if c in sent_at])
    return {"rate_per_s": rate, "sent": len(sent_at), "send_errors": errors, "watched": expected, "seen": len(seen),
            "p50_ms": _pct(lat, 0.5), "p90_ms": _pct(lat, 0.9), "p99_ms": _pct(lat, 0.99),
            "max_ms": round(max(lat), 1) if lat else None, "viewers": VIEWERS,
            "frames_per_sse_viewer": round(counts[0] / max(1, VIEWERS - 1), 1)}


async def run(rates: tuple[float, ...], seconds: float) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    from deploy.stack import stack_env
    from muster.drill.runner import _operator_token, _wait_projections
    from shared.logging import configure_logging

    configure_logging(level="WARNING")
    env = stack_env()
    await _wait_projections(env["KAFKA_BOOTSTRAP_SERVERS"])
    token = await _operator_token()
    headers = {"Authorization": f"Bearer {token}"}
    db = await asyncpg.create_pool(env["DISPATCH_DATABASE_URL"], min_size=1, max_size=3)
    Path("reports/screenshots").mkdir(parents=True, exist_ok=True)
    out = []
    try:
        async with httpx.AsyncClient(timeout=60) as http, async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                               args=["--no-sandbox"])
            for rate in rates:
                figures = await _one_rate(rate, seconds, http=http, headers=headers, db=db, browser=browser,
                                          token=token, rng=random.Random(7))
                _log(json.dumps(figures))
                out.append(figures)
            await browser.close()
    finally:
        await db.close()
    return {"seconds": seconds, "rates": out, "viewers": VIEWERS,
            "end_point": "row state visible on the console page (browser clock) minus reply sent (same machine)"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rates", default="10,100")
    p.add_argument("--seconds", type=float, default=10.0)
    a = p.parse_args()
    result = asyncio.run(run(tuple(float(x) for x in a.rates.split(",")), a.seconds))
    path = save("console_push", result)  # with the machine: cores, CPU, load average, commit
    print(f"{'rate/s':>7} {'sent':>6} {'seen':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for r in result["rates"]:
        print(f"{r['rate_per_s']:>7g} {r['sent']:>6} {r['seen']:>6} {r['p50_ms']!s:>8} {r['p99_ms']!s:>8} "
              f"{r['max_ms']!s:>8}")
    print(f"results: {path}")


if __name__ == "__main__":
    main()
