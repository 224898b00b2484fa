"""Where a fan-out's time goes: stage timestamps of one benchmark incident, from both databases and the simulator log.

For the incident whose title is ``TAG`` (``bench.fanout`` titles them ``基准<N>-<hex>``), prints for each stage
the seconds after the incident was opened (dispatch ``incidents.opened_at``) at which the first, the median,
the 99th percentile and the last call-out passed it:

===================  ===================================================================================
stage                source
===================  ===================================================================================
dispatch written     dispatch ``callouts.requested_at`` (the wave's transaction time)
outbox created       dispatch ``outbox.created_at`` of the ``CallOutRequested`` events (same transaction)
outbox published     dispatch ``outbox.published_at`` of those events (stamped after Kafka acknowledged)
message created      notify ``messages.created_at`` (kind ``callout``)
notify consumed      notify ``processed_events.processed_at`` (consumer ``notify.callouts``; same transaction)
sent recorded        notify ``messages.sent_at`` (the provider's answer recorded)
received (channel)   the simulator's JSONL log ``received_at`` of the call-out messages, per channel
===================  ===================================================================================

All clocks are this machine's (UTC); PostgreSQL's ``now()`` is the start of each transaction, so a stage
stamped by a long transaction looks earlier than its commit.

Run: ``uv run --frozen python -m bench.fanout_stages TAG`` on the stack that ran the benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
from datetime import datetime
from pathlib import Path

import asyncpg
import orjson


def _summary(values: list[float]) -> str:
    if not values:
        return "—"
    values = sorted(values)
    p = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else [values[0]] * 99
    return (f"n={len(values):>6}  first {values[0]:7.2f}  p50 {p[49]:7.2f}  p99 {p[98]:7.2f}  "
            f"last {values[-1]:7.2f}")


async def stages(tag: str) -> dict[str, list[float]]:
    """Seconds after ``opened_at`` per stage (see the module docstring); raises LookupError for an unknown tag."""
    from deploy.stack import stack_env

    env = stack_env()
    d = await asyncpg.connect(env["DISPATCH_DATABASE_URL"])
    n = await asyncpg.connect(env["NOTIFY_DATABASE_URL"])
    try:
        inc = await d.fetchrow("SELECT incident_id, opened_at FROM incidents WHERE title = $1", tag)
        if inc is None:
            raise LookupError(tag)
        iid, t0 = inc["incident_id"], inc["opened_at"]

        def rel(rows: list[asyncpg.Record]) -> list[float]:
            return [(r[0] - t0).total_seconds() for r in rows if r[0] is not None]

        out = {
            "dispatch written": rel(await d.fetch("SELECT requested_at FROM callouts WHERE incident_id = $1", iid)),
            "outbox published": rel(await d.fetch(
                "SELECT published_at FROM outbox WHERE headers->>'correlation_id' = $1 "
                "AND headers->>'event_type' = 'CallOutRequested'", str(iid))),
            "outbox created": rel(await d.fetch(
                "SELECT created_at FROM outbox WHERE headers->>'correlation_id' = $1 "
                "AND headers->>'event_type' = 'CallOutRequested'", str(iid))),
            "message created": rel(await n.fetch(
                "SELECT created_at FROM messages WHERE incident_id = $1 AND kind = 'callout'", iid)),
            "notify consumed": rel(await n.fetch(
                "SELECT p.processed_at FROM processed_events p JOIN messages m ON m.causation_id = p.event_id "
                "WHERE m.incident_id = $1 AND m.kind = 'callout' AND p.consumer = 'notify.callouts'", iid)),
            "sent recorded": rel(await n.fetch(
                "SELECT sent_at FROM messages WHERE incident_id = $1 AND kind = 'callout'", iid)),
        }
    finally:
        await d.close()
        await n.close()
    log = Path(os.environ.get("MUSTER_STATE_DIR", "/var/lib/muster")) / "simulator-messages.jsonl"
    by_channel: dict[str, list[float]] = {}
    for line in log.read_bytes().splitlines():
        if tag.encode() not in line:
            continue
        m = orjson.loads(line)
        if "无需前往" in m["text"]:  # the stand-down when the benchmark closes the incident
            continue
        at = (datetime.fromisoformat(m["received_at"]) - t0).total_seconds()
        by_channel.setdefault(f"received ({m['channel']})", []).append(at)
    out.update(by_channel)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tag", help="The incident title, e.g. 基准1000-3f2a.")
    args = parser.parse_args()
    for name, values in asyncio.run(stages(args.tag)).items():
        print(f"{name:<20} {_summary(values)}")
