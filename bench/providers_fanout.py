"""N messages through each provider adapter into the simulator, over real HTTP (no Kafka, no database).

Measures the provider edge alone (the whole pipeline is :mod:`bench.notify_fanout`): for each of Aliyun
(SendBatchSms, 100 per request), Tencent (SendSms; equal template values, 200 per request) and WeChat (one
template message per request, 32 in flight), the seconds until the simulator accepted all N, and until all
N delivery receipts reached a callback receiver. Client-side rate limits are raised for the run.

Run: ``uv run python -m bench.providers_fanout [N]``; prints the figures and writes
``bench/results/providers_fanout-*.json``.
"""

from __future__ import annotations

import argparse
import time
import uuid
from typing import Any

import orjson
import uvloop

from bench.machine import save
from services.notify.channels import OutboundMessage, provider_by_name, provider_http_client
from shared.events import MessageKind
from simulator.testing import running_simulator


async def _one(name: str, n: int) -> dict[str, Any]:
    async with running_simulator(receipt_delay_seconds=0.05) as sim:
        settings = sim.notify_settings(aliyun_rate_per_second=5000.0, tencent_rate_per_second=3000.0,
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

        await sim.receiver.wait_for(lambda rec: receipts(rec) >= n, timeout=120)
        receipts_s = time.perf_counter() - start
        stats = (await sim.http.get(f"{sim.url}/sim/stats")).json()
        await provider.aclose()
        await http.aclose()
        return {"messages": n, "accepted_seconds": round(accepted_s, 3),
                "messages_per_second": round(n / accepted_s), "all_receipts_seconds": round(receipts_s, 3),
                "requests": stats.get(f"requests.{name}", 0), "callback_pushes": stats.get("callback_pushes", 0)}


async def main(n: int) -> dict[str, Any]:
    from shared.logging import configure_logging

    configure_logging(level="WARNING")
    return {name: await _one(name, n) for name in ("aliyun", "tencent", "wechat")}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("n", nargs="?", type=int, default=10_000)
    figures = uvloop.run(main(parser.parse_args().n))  # the loop uvicorn uses when it runs the simulator
    for provider, f in figures.items():
        print(f"{provider:8s} {f['messages']} messages accepted in {f['accepted_seconds']:.2f} s "
              f"({f['messages_per_second']}/s, {f['requests']} requests); all receipts back after "
              f"{f['all_receipts_seconds']:.2f} s ({f['callback_pushes']} pushes)")
    print(f"saved {save('providers_fanout', figures)}")
