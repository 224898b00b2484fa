"""shared.limits.BodyLimit: bodies over their route's limit are 413, declared or streamed, before the handler parses."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI, Request

from shared.limits import BodyLimit


def _app() -> FastAPI:
    app = FastAPI()

    @app.post("/small")
    async def small(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    @app.post("/big/upload")
    async def big(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    app.add_middleware(BodyLimit, default=1000, limits={"/big": 10_000})
    return app


async def _chunks(n: int, size: int = 500) -> AsyncIterator[bytes]:
    for _ in range(n):
        yield b"x" * size


async def test_declared_and_streamed_bodies_over_the_limit_are_413() -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app()), base_url="http://t") as c:
        assert (await c.post("/small", content=b"x" * 1000)).json() == {"bytes": 1000}
        r = await c.post("/small", content=b"x" * 1001)
        assert r.status_code == 413 and "1000 bytes" in r.json()["detail"]
        r = await c.post("/small", content=_chunks(3))  # no Content-Length: counted as it arrives
        assert r.status_code == 413, r.text
        assert (await c.post("/big/upload", content=_chunks(20))).json() == {"bytes": 10_000}
        assert (await c.post("/big/upload", content=_chunks(21))).status_code == 413
