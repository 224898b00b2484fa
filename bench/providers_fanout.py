"""N messages through each provider adapter into the simulator, over real HTTP (no Kafka, no database).

Measures the provider edge alone (the whole pipeline is :mod:`bench.notify_fanout`): for each of Aliyun
(SendBatchSms, 100 per request), Tencent (SendSms; equal template values, 200 per request) and WeChat (one
template message per request, 32 in flight), the seconds until the simulator accepted all N, and until all
N delivery receipts reached a callback receiver. Client-side rate limits are raised for the run.

Two placements of the simulator:

* ``inprocess`` (default): simulator, receiver and adapters share one event loop (uvloop), as in the tests;
* ``--process``: the simulator runs as ``muster simulator serve`` in its own process, as on the stack.

Run: ``uv run python -m bench.providers_fanout [N] [--process]``; prints the figures and writes
``bench/results/providers_fanout-*.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import uvloop

from bench.machine import save
from services.notify.channels import OutboundMessage, provider_by_name, provider_http_client
from shared.events import MessageKind
from simulator.server import serve_in_background
from simulator.settings import SimulatorSettings
from simulator.testing import CallbackReceiver, running_simulator


@contextlib.asynccontextmanager
async def _simulator(process: bool) -> AsyncIterator[tuple[str, SimulatorSettings, CallbackReceiver]]:
    if not process:
        async with running_simulator(receipt_delay_seconds=0.05) as sim:
            yield sim.url, sim.settings, sim.receiver
        return
    receiver = CallbackReceiver()
    async with serve_in_background(receiver.app()) as receiver_url:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        keys = {"ALIYUN_ACCESS_KEY_ID": "LTAI-bench", "ALIYUN_ACCESS_KEY_SECRET": secrets.token_urlsafe(24),
                "TENCENT_SECRET_ID": "AKID-bench", "TENCENT_SECRET_KEY": secrets.token_urlsafe(24),
                "WECHAT_APP_ID": "wx-bench", "WECHAT_APP_SECRET": secrets.token_urlsafe(24),
                "CALLBACK_TOKEN": secrets.token_urlsafe(16)}
        env = {**os.environ, **{f"SIMULATOR_{k}": v for k, v in keys.items()},
               "SIMULATOR_LOG_PATH": os.path.join(tempfile.mkdtemp(), "sim.jsonl"), "SIMULATOR_LOG_LEVEL": "WARNING"}
        proc = subprocess.Popen(
            [sys.executable, "-c", "from muster.cli import app; app()", "simulator", "serve", "--port", str(port),
             "--notify-url", receiver_url, "--receipt-delay", "0.05"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            async with httpx.AsyncClient() as http:
                for _ in range(300):
                    with contextlib.suppress(httpx.HTTPError):
                        if (await http.get(f"{url}/health/live")).status_code == 200:
                            break
                    await asyncio.sleep(0.1)
            settings = SimulatorSettings(
                aliyun_access_key_id=keys["ALIYUN_ACCESS_KEY_ID"], aliyun_access_key_secret=keys["ALIYUN_ACCESS_KEY_SECRET"],
                tencent_secret_id=keys["TENCENT_SECRET_ID"], tencent_secret_key=keys["TENCENT_SECRET_KEY"],
                wechat_app_id=keys["WECHAT_APP_ID"], wechat_app_secret=keys["WECHAT_APP_SECRET"],
                callback_token=keys["CALLBACK_TOKEN"],
            )
            yield url, settings, receiver
        finally:
            proc.terminate()
            proc.wait(10)


async def _one(name: str, n: int, process: bool) -> dict[str, Any]:
    async with _simulator(process) as (url, sim_settings, receiver), httpx.AsyncClient(timeout=30) as admin:
        from simulator.testing import SimHarness

        harness = SimHarness(url, sim_settings, receiver, admin, None)  # type: ignore[arg-type]
        settings = harness.notify_settings(aliyun_rate_per_second=5000.0, tencent_rate_per_second=3000.0,
                                           wechat_rate_per_second=20000.0)
        http = provider_http_client(settings)
        provider = provider_by_name(settings, http, name)
        if name == "wechat":
            recipients = ["o" + uuid.uuid4().hex[:27] for _ in range(n)]
        else:
            recipients = [f"+86137{i:08d}" for i in range(n)]
        same = name == "tencent"  # Tencent batches only equal template values
        messages = [OutboundMessage(uuid.uuid4(), r, MessageKind.CALLOUT, "演练 回复1接受 2拒绝",
                                    {"code": "1" if same else str(i % 90 + 10)}) for i, r in enumerate(recipients)]
        start = time.perf_counter()
        results = await provider.send(messages)
        accepted_s = time.perf_counter() - start
        assert all(r.accepted for r in results), {r.error_code for r in results if not r.accepted}

        def receipts(recorded: list[Any]) -> int:
            if name == "wechat":
                return len(recorded)
            return sum(len(orjson.loads(c.body)) for c in recorded)

        await receiver.wait_for(lambda rec: receipts(rec) >= n, timeout=300)
        receipts_s = time.perf_counter() - start
        stats = (await admin.get(f"{url}/sim/stats")).json()
        await provider.aclose()
        await http.aclose()
        return {"messages": n, "accepted_seconds": round(accepted_s, 3),
                "messages_per_second": round(n / accepted_s), "all_receipts_seconds": round(receipts_s, 3),
                "requests": stats.get(f"requests.{name}", 0), "callback_pushes": stats.get("callback_pushes", 0)}


async def main(n: int, process: bool) -> dict[str, Any]:
    from shared.logging import configure_logging

    configure_logging(level="WARNING")
    figures: dict[str, Any] = {"simulator": "process" if process else "inprocess"}
    for name in ("aliyun", "tencent", "wechat"):
        figures[name] = await _one(name, n, process)
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("n", nargs="?", type=int, default=10_000)
    parser.add_argument("--process", action="store_true", help="run the simulator in its own process")
    args = parser.parse_args()
    figures = uvloop.run(main(args.n, args.process))  # the loop uvicorn uses when it runs the simulator
    print(f"simulator {figures['simulator']}")
    for provider in ("aliyun", "tencent", "wechat"):
        f = figures[provider]
        print(f"{provider:8s} {f['messages']} messages accepted in {f['accepted_seconds']:.2f} s "
              f"({f['messages_per_second']}/s, {f['requests']} requests); all receipts back after "
              f"{f['all_receipts_seconds']:.2f} s ({f['callback_pushes']} pushes)")
    print(f"saved {save('providers_fanout-' + figures['simulator'], figures)}")
