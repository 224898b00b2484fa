"""Fault injection and recovery measurement for the fault drill (tests/faults).

Every address comes from :class:`deploy.stack.StackSettings` and :func:`deploy.stack.stack_env`, so the
drill runs on whichever stack the environment names (CI's default one, or a second one beside it).

Faults (each recorded with its offset in the drill, seconds, and its recovery time, seconds):

- ``kill -9 <service>``: SIGKILL (:func:`deploy.stack.service_stop` with ``sig=SIGKILL``), then
  :func:`deploy.stack.service_start`; ``down_s`` = kill until its ``/health/ready`` answers 200.
- ``kafka stop 20 s``: :func:`deploy.stack.kafka_stop`, 20 s, :func:`deploy.stack.kafka_start`.
- ``postgres restart``: :func:`deploy.stack.postgres_restart` (``pg_ctl restart -m fast``).
- ``poison``: for each consumed topic, a record that is not JSON and a JSON record of the wrong shape,
  plus one valid ``MessageDelivered`` whose ``provider`` holds a NUL character, which PostgreSQL refuses
  to store, so dispatch's real delivery handler raises for that one event.

Recovery (``recovery_s``): from the end of the fault (restart issued, broker started, poison sent) until
the three services answer ``/health/ready`` with 200 and every consumer group of :data:`GROUPS` is at
lag 0 (:func:`shared.lag.consumer_lag`).
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from deploy import stack as local_stack
from deploy.stack import StackSettings
from shared.events import MessageDelivered, MessageKind
from shared.lag import consumer_lags, consumer_offsets
from shared.topics import (
    CALLOUT,
    DELIVERY,
    INCIDENT,
    REPLY,
    ROSTER_AED,
    ROSTER_CONTACT,
    ROSTER_PROFILE,
    ROSTER_TEAM,
    dead_letter,
)
from shared.vocabulary import Channel

SERVICES = ("roster", "dispatch", "notify")
RECOVERY_TIMEOUT = 300.0
"""Seconds a fault's recovery may take (a broker restart, a killed service) on a loaded 2-core machine."""

#: Every consumer group of the three services and the topic it reads (services/*/app.py, consumers).
GROUPS: tuple[tuple[str, str], ...] = (
    ("roster.replies", REPLY.name),
    ("dispatch.roster-profiles", ROSTER_PROFILE.name),
    ("dispatch.roster-teams", ROSTER_TEAM.name),
    ("dispatch.roster-aeds", ROSTER_AED.name),
    ("dispatch.replies", REPLY.name),
    ("dispatch.deliveries", DELIVERY.name),
    ("notify.contacts", ROSTER_CONTACT.name),
    ("notify.callouts", CALLOUT.name),
    ("notify.incidents", INCIDENT.name),
)

#: Consumed topics, each with the groups that read it.
CONSUMED: dict[str, list[str]] = {}
for _group, _topic in GROUPS:
    CONSUMED.setdefault(_topic, []).append(_group)


def log(msg: str) -> None:
    print(f"[faults {time.strftime('%H:%M:%S')}] {msg}", flush=True)


@dataclass
class FaultRecord:
    """One fault injected: what, when (seconds after the drill started), outage and recovery (seconds)."""

    fault: str
    at_s: float
    down_s: float | None = None
    recovery_s: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class FaultLog:
    started: float = field(default_factory=time.monotonic)
    records: list[FaultRecord] = field(default_factory=list)

    def offset(self) -> float:
        return round(time.monotonic() - self.started, 2)

    def as_json(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self.records]


# ------------------------------------------------------------------------------------------- recovery


async def services_ready(http: httpx.AsyncClient | None = None) -> bool:
    """True when roster, dispatch and notify all answer ``/health/ready`` with 200 (own client: never starved)."""
    settings = StackSettings()
    async with httpx.AsyncClient(timeout=5.0) as own:
        for name in SERVICES:
            try:
                r = await own.get(f"{settings.url(name)}/health/ready")
            except httpx.HTTPError:
                return False
            if r.status_code != 200:
                return False
    return True


async def _in_thread(coro_fn: Any, *args: Any, timeout: float = 30.0) -> Any:
    """Run ``coro_fn(*args)`` on its own event loop in a thread, waiting at most ``timeout`` seconds.

    aiokafka clients can hang while closing after the broker restarted; in a thread, such a hang is left
    behind instead of blocking the drill.
    """
    return await asyncio.wait_for(asyncio.to_thread(lambda: asyncio.run(coro_fn(*args))), timeout)


async def lags(bootstrap: str) -> dict[str, int | None]:
    """Lag of every group of :data:`GROUPS` (messages; None = never committed, or the broker did not answer)."""
    try:
        values = await _in_thread(consumer_lags, bootstrap, GROUPS)
    except Exception:  # noqa: BLE001 - broker away or restarting: not caught up yet
        return {f"{g}@{t}": None for g, t in GROUPS}
    return {f"{g}@{t}": v for (g, t), v in values.items()}


async def wait_recovered(http: httpx.AsyncClient, bootstrap: str, *, since: float, timeout: float = RECOVERY_TIMEOUT,
                         idle: bool = False) -> float:
    """Wait until every service is ready and every group has caught up; return seconds since ``since`` (monotonic).

    Caught up: while call-outs flow, each group has committed, on every partition, at least the end
    offset that partition had when the services were first all ready again (the backlog of the fault
    is consumed); with ``idle`` (no traffic any more), every group is at lag 0.

    Raises:
        TimeoutError: not recovered within ``timeout`` seconds (the message gives what is behind).

    """
    deadline = time.monotonic() + timeout
    target: dict[tuple[str, str], dict[int, int]] | None = None
    behind: dict[str, Any] = {}
    while time.monotonic() < deadline:
        if await services_ready(http):
            try:
                offsets = await _in_thread(consumer_offsets, bootstrap, GROUPS)
            except Exception:  # noqa: BLE001 - broker away or restarting: not caught up yet
                await asyncio.sleep(0.5)
                continue
            if target is None or idle:
                target = {pair: {p: end for p, (_, end) in parts.items()} for pair, parts in offsets.items()}
            behind = {
                f"{g}@{t}": lag for (g, t), parts in offsets.items()
                if (lag := sum(max(0, target[(g, t)][p] - (c if c is not None else -1)) for p, (c, _) in parts.items()
                               if target[(g, t)][p] > 0))
            }
            if not behind:
                return round(time.monotonic() - since, 2)
        await asyncio.sleep(0.5)
    log(f"not recovered after {timeout}s; behind: {behind}")
    raise TimeoutError(f"not recovered after {timeout}s; behind: {behind}")


async def wait_quiet(http: httpx.AsyncClient, bootstrap: str, notify_dsn: str, *,
                     timeout: float = RECOVERY_TIMEOUT) -> float:
    """Wait until nothing from an earlier run is still on its way to a phone; return the seconds waited.

    Quiet: every group at lag 0 and notify has no message pending or being sent that is due within 30 s.
    Before this, stand-downs of an earlier drill closed when it failed reached phones during the next
    drill's window and were counted as its duplicates (run 8: 79).

    Raises:
        TimeoutError: not quiet within ``timeout`` seconds.

    """
    import asyncpg

    started = time.monotonic()
    await wait_recovered(http, bootstrap, since=started, timeout=timeout, idle=True)
    conn = await asyncpg.connect(notify_dsn)
    try:
        while True:
            busy = await conn.fetchval(
                "SELECT count(*) FROM messages WHERE status IN ('pending', 'sending') "
                "AND next_attempt_at < now() + interval '30 seconds'")
            if busy == 0:
                return round(time.monotonic() - started, 2)
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"{busy} messages of earlier runs still on their way after {timeout}s")
            await asyncio.sleep(1.0)
    finally:
        await conn.close()


async def wait_service_ready(http: httpx.AsyncClient, name: str, *, timeout: float = 120.0) -> None:
    url = f"{StackSettings().url(name)}/health/ready"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if (await http.get(url, timeout=3.0)).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{name} not ready after {timeout}s")


# ------------------------------------------------------------------------------------------- faults


async def kill_and_restart(name: str, faults: FaultLog) -> FaultRecord:
    """SIGKILL one service and start it again; ``down_s`` = kill until ready."""
    record = FaultRecord(f"kill -9 {name}", faults.offset())
    faults.records.append(record)
    t0 = time.monotonic()
    await asyncio.to_thread(local_stack.service_stop, name, sig=signal.SIGKILL)
    await asyncio.to_thread(local_stack.service_start, name, timeout=120.0)
    record.down_s = round(time.monotonic() - t0, 2)
    record.detail["t0"] = t0
    log(f"kill -9 {name}: back after {record.down_s}s")
    return record


async def kill_round(rng: Any, faults: FaultLog, http: httpx.AsyncClient, bootstrap: str) -> None:
    """Kill the three services in a random order at random moments (0.5–4 s apart), each restarted at once."""
    order = list(SERVICES)
    rng.shuffle(order)
    gaps = [rng.uniform(0.5, 4.0) for _ in order]
    tasks = []
    for name, gap in zip(order, gaps, strict=True):
        tasks.append(asyncio.create_task(kill_and_restart(name, faults)))
        await asyncio.sleep(gap)
    records = await asyncio.gather(*tasks)
    end = time.monotonic()
    await wait_recovered(http, bootstrap, since=end)
    for r in records:
        r.recovery_s = round(time.monotonic() - r.detail.pop("t0"), 2)


async def kafka_outage(faults: FaultLog, http: httpx.AsyncClient, bootstrap: str, *, seconds: float = 20.0) -> None:
    """Stop the broker for ``seconds`` and start it again."""
    record = FaultRecord(f"kafka stop {seconds:.0f} s", faults.offset())
    faults.records.append(record)
    t0 = time.monotonic()
    try:
        await asyncio.to_thread(local_stack.kafka_stop)
        record.detail["stop_s"] = round(time.monotonic() - t0, 2)
        await asyncio.sleep(seconds)
    finally:
        t1 = time.monotonic()
        await asyncio.to_thread(local_stack.kafka_start, StackSettings(), ready_timeout=RECOVERY_TIMEOUT)
    record.down_s = round(time.monotonic() - t0, 2)
    record.detail["start_s"] = round(time.monotonic() - t1, 2)
    record.recovery_s = await wait_recovered(http, bootstrap, since=t1)
    log(f"kafka: down {record.down_s}s, recovered {record.recovery_s}s after start")


async def postgres_outage(faults: FaultLog, http: httpx.AsyncClient, bootstrap: str) -> None:
    """Restart PostgreSQL (fast shutdown: open sessions are cut)."""
    record = FaultRecord("postgres restart", faults.offset())
    faults.records.append(record)
    t0 = time.monotonic()
    await asyncio.to_thread(local_stack.postgres_restart)
    record.down_s = round(time.monotonic() - t0, 2)
    record.recovery_s = await wait_recovered(http, bootstrap, since=t0)
    log(f"postgres restart: {record.down_s}s, recovered {record.recovery_s}s")


@dataclass(frozen=True)
class Poison:
    """A record sent to a consumed topic to be dead-lettered; ``marker`` finds it in the dead-letter topic."""

    topic: str
    marker: str
    kind: str  # not_json | wrong_schema | handler_raises
    value: bytes


def poison_records(run_id: str, callout_id: uuid.UUID | None) -> list[Poison]:
    """Two poison records per consumed topic, and one valid event that makes a real handler raise."""
    out: list[Poison] = []
    for topic in CONSUMED:
        m1, m2 = f"poison-{run_id}-{topic}-not-json", f"poison-{run_id}-{topic}-wrong-schema"
        out.append(Poison(topic, m1, "not_json", f"{{not json: {m1}".encode()))
        wrong = {"event_type": "CallOutRequested", "event_id": str(uuid.uuid4()), "volunteer": m2}
        out.append(Poison(topic, m2, "wrong_schema", json.dumps(wrong).encode()))
    # Valid against the contract; dispatch's record_delivery cannot store the NUL in PostgreSQL text.
    m3 = f"poison-{run_id}-nul-provider"
    event = MessageDelivered(
        producer="test", message_id=uuid.uuid4(), callout_id=callout_id or uuid.uuid4(), volunteer_id=uuid.uuid4(),
        kind=MessageKind.CALLOUT, channel=Channel.SMS, provider=f"aliyun\x00{m3}",
    )
    out.append(Poison(DELIVERY.name, m3, "handler_raises", event.to_bytes()))
    return out


async def dlq_end_offsets(bootstrap: str) -> dict[str, int]:
    """End offset of each dead-letter topic (one partition each), to read only what this drill adds."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(dead_letter(t), 0) for t in CONSUMED]
        ends = await consumer.end_offsets(tps)
        return {tp.topic: off for tp, off in ends.items()}
    finally:
        await consumer.stop()


async def send_poison(bootstrap: str, records: list[Poison]) -> None:
    """Produce the poison records (keyed: compacted topics refuse records without a key)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for p in records:
            await producer.send_and_wait(p.topic, p.value, key=p.marker.encode(),
                                         headers=[("event_type", b"poison")])
    finally:
        await producer.stop()


async def read_dlq(bootstrap: str, starts: dict[str, int]) -> list[dict[str, Any]]:
    """Every record added to the dead-letter topics since ``starts``: ``{topic, value, headers}``."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    out: list[dict[str, Any]] = []
    try:
        tps = [TopicPartition(t, 0) for t in starts]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, starts[tp.topic])
        remaining = {tp for tp in tps if ends[tp] > starts[tp.topic]}
        deadline = time.monotonic() + 30
        while remaining and time.monotonic() < deadline:
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, recs in batch.items():
                for rec in recs:
                    out.append({"topic": tp.topic, "value": rec.value or b"",
                                "headers": {k: v.decode(errors="replace") for k, v in rec.headers}})
                    if rec.offset + 1 >= ends[tp]:
                        remaining.discard(tp)
    finally:
        await consumer.stop()
    return out


def missing_dead_letters(poison: list[Poison], dlq: list[dict[str, Any]]) -> list[str]:
    """Which (poison, consumer group) pairs have no dead letter carrying an error; empty when all are there."""
    missing: list[str] = []
    for p in poison:
        groups = ["dispatch.deliveries"] if p.kind == "handler_raises" else CONSUMED[p.topic]
        for group in groups:
            hits = [d for d in dlq if d["topic"] == dead_letter(p.topic) and p.marker.encode() in d["value"]
                    and d["headers"].get("dlq_consumer") == group and d["headers"].get("dlq_error")]
            if not hits:
                missing.append(f"{p.kind}:{p.topic}:{group}")
    return missing


async def poison_fault(faults: FaultLog, http: httpx.AsyncClient, bootstrap: str,
                       callout_id: Callable[[], Awaitable[uuid.UUID | None]]) -> list[Poison]:
    """Send the poison records; recovered when all are dead-lettered and every group is at lag 0."""
    run_id = uuid.uuid4().hex[:8]
    records = poison_records(run_id, await callout_id())
    record = FaultRecord("poison messages", faults.offset(), detail={"records": len(records), "run_id": run_id})
    faults.records.append(record)
    await send_poison(bootstrap, records)
    t0 = time.monotonic()
    record.recovery_s = await wait_recovered(http, bootstrap, since=t0)
    log(f"poison: {len(records)} records, lag 0 after {record.recovery_s}s")
    return records


# ------------------------------------------------------------------------------------------- the phones' log


def sim_log_path() -> Path:
    """The simulator's JSONL log of delivered messages (``simulator serve`` default: the state dir)."""
    return local_stack.state_dir() / "simulator-messages.jsonl"


def read_sim_log(path: Path, offset: int) -> list[dict[str, Any]]:
    """Messages appended to the simulator's JSONL log after byte ``offset``."""
    with path.open("rb") as f:
        f.seek(offset)
        data = f.read()
    return [json.loads(line) for line in data.decode().splitlines() if line.strip()]
