"""10,000 call-out requests until all are accepted by the provider simulator (issue #5: target < 5 s here).

Runs notify in this process on the real Kafka and PostgreSQL (a fresh schema in notify's database,
dropped afterwards, and its own topics: the demo data is not touched), with the provider simulator
as its own process on a free port (:func:`services.notify.testing.running_notify`).

1. N volunteers' contacts are published and projected (not timed).
2. Timed: N ``CallOutRequested`` events are produced to the call-out topic (12 partitions, keyed by
   volunteer) by a separate producer process, as dispatch would; the clock starts at its first send and stops when the simulator has accepted N messages (``/sim/stats``), and again
   when notify has recorded all N as sent. Figures: seconds, messages per second, and the time until
   all delivery receipts came back.

Run: ``uv run python -m bench.notify_fanout [N] [--wechat-share 0.3]``; prints the figures and writes
``bench/results/notify_fanout-*.json`` with the machine's facts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.machine import save
from services.notify.testing import running_notify
from shared.events import CallOutRequested, VolunteerContactUpdated, utcnow
from shared.vocabulary import Channel, Level


def _accepted(stats: dict[str, Any]) -> int:
    return int(sum(v for k, v in stats.get("accepted", {}).items())) if isinstance(stats.get("accepted"), dict) \
        else int(stats.get("accepted", 0))


async def main(n: int, wechat_share: float) -> dict[str, Any]:
    from deploy.stack import stack_env
    from shared.logging import configure_logging

    configure_logging(level="WARNING")
    env = stack_env()
    async with running_notify(
        env["KAFKA_BOOTSTRAP_SERVERS"], env["NOTIFY_DATABASE_URL"], partitions=12, separate_simulator=True,
        aliyun_rate_per_second=500.0, wechat_rate_per_second=2000.0, send_claim_size=2000, send_concurrency=16,
        log_level="WARNING",
    ) as ns:
        rng = random.Random(7)
        volunteers = []
        for i in range(n):
            vid = uuid.uuid4()
            mobile = f"+86137{i:08d}"
            wechat = rng.random() < wechat_share
            openid = ("o" + uuid.uuid4().hex[:27]) if wechat else None
            volunteers.append(vid)
            await ns.producer.send(
                ns.contact_topic.name,
                VolunteerContactUpdated(volunteer_id=vid, revision=1, mobile=mobile, wechat_openid=openid,
                                        wechat_subscribed=wechat,
                                        preferred_channel=Channel.WECHAT if wechat else Channel.SMS).to_bytes(),
                key=str(vid).encode(),
            )
        await ns.producer.flush()
        while True:
            async with ns.pool.acquire() as conn:
                projected = await conn.fetchval("SELECT count(*) FROM contacts")
            if projected >= n:
                break
            await asyncio.sleep(0.2)
        before = _accepted((await ns.http.get(f"{ns.sim.url}/sim/stats")).json())
        incident = uuid.uuid4()
        requirement = uuid.uuid4()
        respond_by = utcnow() + timedelta(minutes=10)
        events = [
            CallOutRequested(
                callout_id=uuid.uuid4(), incident_id=incident, requirement_id=requirement, volunteer_id=vid,
                wave=1, level=Level.CITY, incident_kind="flood", incident_title="越城区内涝转移",
                place="越城区府山街道集合点", role="志愿者", reply_code=f"{i % 100:02d}", respond_by=respond_by,
                correlation_id=incident,
            )
            for i, vid in enumerate(volunteers)
        ]
        # The events are produced by another process, as dispatch would; t0 is its first send.
        with tempfile.NamedTemporaryFile("wb", suffix=".jsonl", delete=False) as f:
            for e in events:
                f.write(e.to_bytes() + b"\n")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.notify_fanout", "--produce", f.name, ns.callout_topic.name,
            env["KAFKA_BOOTSTRAP_SERVERS"], stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        line = (await proc.stdout.readline()).decode().split()
        t0 = time.perf_counter() - (time.time() - float(line[1]))  # the producer's first send, on our clock
        await proc.wait()
        Path(f.name).unlink()
        t_produced = time.perf_counter() - t0
        t_accepted = t_sent = t_delivered = t_written = None
        deadline = t0 + 180
        while time.perf_counter() < deadline:
            if t_written is None:
                async with ns.pool.acquire() as conn:
                    if await conn.fetchval("SELECT count(*) FROM messages") >= n:
                        t_written = time.perf_counter() - t0
            if t_accepted is None:
                accepted = _accepted((await ns.http.get(f"{ns.sim.url}/sim/stats")).json()) - before
                if accepted >= n:
                    t_accepted = time.perf_counter() - t0
                else:
                    await asyncio.sleep(0.1)
                    continue
            async with ns.pool.acquire() as conn:
                counts = dict(await conn.fetch("SELECT status, count(*) FROM messages GROUP BY status"))
            done = counts.get("sent", 0) + counts.get("delivered", 0)
            if t_sent is None and done >= n:
                t_sent = time.perf_counter() - t0
            if t_delivered is None and counts.get("delivered", 0) >= n:
                t_delivered = time.perf_counter() - t0
            if t_accepted is not None and t_sent is not None and t_delivered is not None:
                break
            await asyncio.sleep(0.2)
        async with ns.pool.acquire() as conn:
            duplicates = await conn.fetchval(
                "SELECT count(*) - count(DISTINCT (callout_id, kind)) FROM messages")
            failed = await conn.fetchval("SELECT count(*) FROM messages WHERE status = 'failed'")
        stats = (await ns.http.get(f"{ns.sim.url}/sim/stats")).json()
    figures = {
        "callouts": n,
        "wechat_share": wechat_share,
        "produce_seconds": round(t_produced, 3),
        "all_messages_written_seconds": None if t_written is None else round(t_written, 3),
        "all_accepted_by_simulator_seconds": None if t_accepted is None else round(t_accepted, 3),
        "all_recorded_sent_seconds": None if t_sent is None else round(t_sent, 3),
        "all_delivery_receipts_seconds": None if t_delivered is None else round(t_delivered, 3),
        "messages_per_second": None if t_accepted is None else round(n / t_accepted),
        "target_seconds": 5.0,
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "duplicates": duplicates,
        "failed": failed,
        "simulator_stats": stats,
    }
    return figures


async def produce(path: str, topic: str, bootstrap: str) -> None:
    """Produce the events in ``path`` (JSON lines) to ``topic`` keyed by volunteer; print ``start <epoch>`` first."""
    import orjson
    from aiokafka import AIOKafkaProducer

    lines = Path(path).read_bytes().splitlines()
    keys = [str(orjson.loads(line)["volunteer_id"]).encode() for line in lines]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    print("start", time.time(), flush=True)
    for value, key in zip(lines, keys, strict=True):
        await producer.send(topic, value, key=key)
    await producer.flush()
    await producer.stop()


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--produce":
        asyncio.run(produce(*sys.argv[2:5]))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=10_000)
    parser.add_argument("--wechat-share", type=float, default=0.0)
    args = parser.parse_args()
    result = asyncio.run(main(args.n, args.wechat_share))
    for k, v in result.items():
        if k != "simulator_stats":
            print(f"{k:36s} {v}")
    print("written to", save("notify_fanout", result))
