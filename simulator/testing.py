"""Test harness: the simulator plus a recording callback receiver, both on free ports in the current loop.

Used by the integration tests and the benchmark::

    async with running_simulator() as sim:
        settings = sim.notify_settings()        # NotifySettings pointing the adapters at the simulator
        ...
        await sim.http.get(f"{sim.url}/sim/phones/+8613800000001/messages")
        sim.received                            # callbacks the receiver got, in order
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI, Request, Response

from simulator.app import create_app
from simulator.server import serve_in_background
from simulator.settings import SimulatorSettings

__all__ = ["CallbackReceiver", "RecordedCallback", "SimHarness", "running_simulator"]


@dataclass(frozen=True)
class RecordedCallback:
    path: str
    query: dict[str, str]
    content_type: str
    body: bytes


@dataclass
class CallbackReceiver:
    """A stand-in for notify's callback endpoints: records every push; answers 500 for the first ``fail`` ones."""

    received: list[RecordedCallback] = field(default_factory=list)
    fail: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> FastAPI:
        api = FastAPI()

        @api.api_route("/callbacks/{rest:path}", methods=["GET", "POST"])
        async def callback(rest: str, request: Request) -> Response:
            if self.fail > 0:
                self.fail -= 1
                return Response(status_code=500)
            self.received.append(RecordedCallback(request.url.path, dict(request.query_params),
                                                  request.headers.get("content-type", ""), await request.body()))
            self.arrived.set()
            if rest.startswith("wechat"):
                return Response("success")
            if rest.startswith("tencent"):
                return Response('{"result":0,"errmsg":"OK"}', media_type="application/json")
            return Response('{"code":0,"msg":"接收成功"}', media_type="application/json")

        return api

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> list[RecordedCallback]:
        """Wait until ``predicate(received)`` is true; returns the records."""
        async def _wait() -> None:
            while not predicate(self.received):
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(_wait(), timeout)
        return self.received


@dataclass
class SimHarness:
    url: str
    settings: SimulatorSettings
    receiver: CallbackReceiver
    http: httpx.AsyncClient
    app: FastAPI

    @property
    def received(self) -> list[RecordedCallback]:
        return self.receiver.received

    def notify_settings(self, **overrides: Any) -> Any:
        """NotifySettings with the provider fields pointing at this simulator and its keys."""
        from shared.settings import NotifySettings

        s = self.settings
        values: dict[str, Any] = {
            "aliyun_base_url": self.url, "aliyun_access_key_id": s.aliyun_access_key_id,
            "aliyun_access_key_secret": s.aliyun_access_key_secret,
            "tencent_base_url": self.url, "tencent_secret_id": s.tencent_secret_id,
            "tencent_secret_key": s.tencent_secret_key, "tencent_sdk_app_id": s.tencent_sdk_app_id,
            "wechat_base_url": self.url, "wechat_app_id": s.wechat_app_id, "wechat_app_secret": s.wechat_app_secret,
            **overrides,
        }
        return NotifySettings(**values)

    async def reset(self) -> None:
        await self.http.post(f"{self.url}/sim/reset")
        await self.http.delete(f"{self.url}/sim/faults")
        self.receiver.received.clear()
        self.receiver.fail = 0


@asynccontextmanager
async def running_simulator(**overrides: Any) -> AsyncIterator[SimHarness]:
    """Start a callback receiver and a simulator pushing to it, with fresh random keys."""
    receiver = CallbackReceiver()
    async with serve_in_background(receiver.app()) as receiver_url:
        values: dict[str, Any] = {
            "notify_url": receiver_url, "callback_token": secrets.token_urlsafe(16),
            "aliyun_access_key_id": "LTAI-test", "aliyun_access_key_secret": secrets.token_urlsafe(24),
            "tencent_secret_id": "AKID-test", "tencent_secret_key": secrets.token_urlsafe(24),
            "wechat_app_id": "wx-test", "wechat_app_secret": secrets.token_urlsafe(24),
            # Re-pushes after 0.5, 2.5 and 5 s (Aliyun's 1, 5, 10 minutes scaled): room for a busy notify.
            "receipt_delay_seconds": 0.05, "callback_minute_seconds": 0.5,
            **overrides,
        }
        settings = SimulatorSettings(**values)
        app = create_app(settings)
        async with serve_in_background(app) as url, httpx.AsyncClient(timeout=10) as http:
            yield SimHarness(url, settings, receiver, http, app)
