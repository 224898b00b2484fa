"""Harness: notify on the real Kafka and PostgreSQL with the provider simulator, all in the current event loop.

Used by the integration tests (``tests/integration/notify``) and the benchmark (``bench/notify_fanout.py``)::

    async with running_notify(bootstrap, notify_dsn) as ns:
        await ns.publish(ns.contact_topic, key, VolunteerContactUpdated(...))
        await ns.publish(ns.callout_topic, key, CallOutRequested(...))
        await ns.wait_phone("+8613900000000", 1)

* a fresh schema in notify's database (``notify_it_<id>``), migrated with notify's own migrations
  (``search_path`` in the DSN), dropped at the end: the service's own data is not touched;
* the provider simulator (:func:`simulator.testing.running_simulator`) on a free port, pushing its
  callbacks to this notify;
* notify (:func:`services.notify.app.create_app`) served by uvicorn on a free port, consuming its own
  topics (unique names) with unique consumer groups; its outbox goes to the real topics.
"""


from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer

from services.notify.app import create_app
from services.notify.channels.base import (
    ChannelProvider,
    DeliveryReceipt,
    OutboundMessage,
    SendResult,
    Uplink,
)
from shared.events import Event
from shared.outbox import RELAY_LOCK_KEY
from shared.service import Runtime
from shared.topics import TopicSpec, ensure_topics
from simulator.server import serve_in_background
from simulator.testing import SimHarness, running_simulator


class ProviderWrapper(ChannelProvider):
    """A real provider with a test's behaviour around ``send`` (override it); everything else is the inner one's.

    Args:
        inner: the provider wrapped (its name, channel, batch size and rate are this one's).

    """

    def __init__(self, inner: ChannelProvider) -> None:
        self.inner = inner
        self.name, self.channel = inner.name, inner.channel
        self.max_batch, self.rate_per_second = inner.max_batch, inner.rate_per_second

    async def send(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        return await self.inner.send(messages)

    async def query(self, message: OutboundMessage, sent_at: datetime) -> SendResult | None:
        return await self.inner.query(message, sent_at)

    def parse_receipts(self, body: bytes, content_type: str) -> list[DeliveryReceipt]:
        return self.inner.parse_receipts(body, content_type)

    def parse_uplinks(self, body: bytes, content_type: str) -> list[Uplink]:
        return self.inner.parse_uplinks(body, content_type)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def schema_dsn(dsn: str, schema: str) -> str:
    sep = "&" if "?" in dsn else "?"
    return f"{dsn}{sep}options=-csearch_path%3D{schema}"


def migrate_schema(dsn: str) -> None:
    """Run notify's migrations on the DSN's schema (``%`` escaped for Alembic's ini-style config)."""
    from alembic import command

    from shared.db import _alembic_config

    command.upgrade(_alembic_config("notify", dsn.replace("%", "%%")), "head")


@dataclass
class NotifyStack:
    url: str
    sim: SimHarness | ExternalSimulator
    runtime: Runtime
    pool: asyncpg.Pool
    producer: AIOKafkaProducer
    callout_topic: TopicSpec
    contact_topic: TopicSpec
    settings: Any
    http: httpx.AsyncClient
    bootstrap: str
    incident_topic: TopicSpec | None = None

    async def publish(self, topic: TopicSpec, key: str, event: Event) -> None:
        await self.producer.send_and_wait(
            topic.name, event.to_bytes(), key=key.encode(),
            headers=[("event_id", str(event.event_id).encode()), ("event_type", event.event_type.encode())],
        )

    async def phone(self, recipient: str) -> list[dict[str, Any]]:
        r = await self.http.get(f"{self.sim.url}/sim/phones/{recipient}/messages")
        r.raise_for_status()
        return list(r.json())

    async def wait_phone(self, recipient: str, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            got = await self.phone(recipient)
            if len(got) >= count or asyncio.get_running_loop().time() > deadline:
                return got
            await asyncio.sleep(0.1)

    async def hold_sender(self) -> None:
        """Stop the service's sender task (no sends, no receipt time-out sweep) until :meth:`resume_sender`."""
        task = next(t for t in self.runtime.tasks if t.get_name().endswith("sender"))
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self.runtime.tasks.remove(task)

    def resume_sender(self) -> None:
        """Run ``runtime.extras["sender"]`` again (put a new Sender there first to play a restarted process)."""
        self.runtime.tasks.append(asyncio.create_task(self.runtime.extras["sender"].run(), name="notify-sender"))

    async def wait_row(self, sql: str, *args: Any, timeout: float = 15.0) -> Any:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            async with self.pool.acquire() as conn:
                row = await conn.fetchrow(sql, *args)
            if row is not None or asyncio.get_running_loop().time() > deadline:
                return row
            await asyncio.sleep(0.1)


@dataclass
class ExternalSimulator:
    """The simulator run as its own process (``muster simulator serve``), keys from the stack's env file."""

    url: str
    process: asyncio.subprocess.Process

    def notify_settings(self, **overrides: Any) -> Any:
        from shared.settings import NotifySettings

        values = {"aliyun_base_url": self.url, "tencent_base_url": self.url, "wechat_base_url": self.url, **overrides}
        return NotifySettings(**values)


@contextlib.asynccontextmanager
async def simulator_process(notify_url: str) -> AsyncIterator[ExternalSimulator]:
    """Start ``muster simulator serve`` on a free port, pushing callbacks to ``notify_url``; stop it on exit."""
    import os
    import sys
    import tempfile
    from pathlib import Path

    port = _free_port()
    muster = str(Path(sys.executable).parent / "muster")
    log = Path(tempfile.gettempdir()) / f"muster-sim-{port}.jsonl"
    proc = await asyncio.create_subprocess_exec(
        muster, "simulator", "serve", "--port", str(port), "--notify-url", notify_url, "--log-path", str(log),
        env={**os.environ, "SIMULATOR_CALLBACK_MINUTE_SECONDS": "0.05"},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            for _ in range(300):
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{url}/sim/stats")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("the simulator process did not start")
        yield ExternalSimulator(url, proc)
    finally:
        proc.terminate()
        with contextlib.suppress(ProcessLookupError, TimeoutError):
            await asyncio.wait_for(proc.wait(), 10)
        log.unlink(missing_ok=True)


@contextlib.asynccontextmanager
async def running_notify(bootstrap: str, notify_dsn: str, *, partitions: int = 3, separate_simulator: bool = False,
                         **overrides: Any) -> AsyncIterator[NotifyStack]:
    """Start the simulator and notify (see the module docstring); ``overrides`` go to ``NotifySettings``.

    With ``separate_simulator`` the simulator runs as its own process (the benchmark: the providers are not
    notify's CPU), with the keys of the stack's env file; otherwise in this loop with fresh random keys.
    """
    uid = uuid.uuid4().hex[:8]
    schema = f"notify_it_{uid}"
    admin = await asyncpg.connect(notify_dsn)
    await admin.execute(f"CREATE SCHEMA {schema}")
    # The outbox relay takes a database-wide advisory lock; if a running notify holds it, publish ourselves.
    lock_held_elsewhere = bool(await admin.fetchval(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND granted",
        RELAY_LOCK_KEY & 0xFFFFFFFF,
    ))
    await admin.close()
    dsn = schema_dsn(notify_dsn, schema)
    await asyncio.to_thread(migrate_schema, dsn)
    callout_topic = TopicSpec(f"test.notify.{uid}.callout", partitions, False, "volunteer_id")
    contact_topic = TopicSpec(f"test.notify.{uid}.contact", 3, True, "volunteer_id")
    incident_topic = TopicSpec(f"test.notify.{uid}.incident", 1, False, "incident_id")
    await ensure_topics(bootstrap, (callout_topic, contact_topic, incident_topic))
    port = _free_port()
    notify_url = f"http://127.0.0.1:{port}"
    sim_context = simulator_process(notify_url) if separate_simulator else running_simulator(notify_url=notify_url)
    async with sim_context as sim:
        token = {} if separate_simulator else {"callback_token": sim.settings.callback_token}  # type: ignore[union-attr]
        settings = sim.notify_settings(
            database_url=dsn, kafka_bootstrap_servers=bootstrap, http_port=port, **token,
            reply_link_secret="it-" + uid,
            public_base_url=notify_url, retry_base_seconds=0.2, retry_max_seconds=1.0, send_poll_seconds=0.2,
            wechat_receipt_timeout_seconds=3.0, sms_provider="aliyun", **overrides,
        )
        app = create_app(settings, callout_topic=callout_topic, contact_topic=contact_topic,
                         incident_topic=incident_topic, consumer_prefix=f"test-notify-{uid}", migrate=False)
        runtime: Runtime = app.state.runtime
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2)
        await producer.start()
        backup_relay: asyncio.Task[None] | None = None
        try:
            async with serve_in_background(app, port=port) as url, httpx.AsyncClient(timeout=10) as http:
                pool = runtime.require_pool()
                if lock_held_elsewhere:
                    async def publish_loop() -> None:
                        assert runtime.relay is not None
                        while True:
                            with contextlib.suppress(Exception):
                                await runtime.relay.publish_pending()
                            await asyncio.sleep(0.2)

                    backup_relay = asyncio.create_task(publish_loop())
                yield NotifyStack(url, sim, runtime, pool, producer, callout_topic, contact_topic, settings, http,
                                  bootstrap, incident_topic)
        finally:
            if backup_relay is not None:
                backup_relay.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await backup_relay
            await producer.stop()
            admin = await asyncpg.connect(notify_dsn)
            await admin.execute(f"DROP SCHEMA {schema} CASCADE")
            await admin.close()
