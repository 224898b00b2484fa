"""Run an ASGI app (the simulator, or a test's callback receiver) with uvicorn inside the current event loop.

``async with serve_in_background(app) as base_url:`` binds 127.0.0.1 on a free port (port 0), starts the app's
lifespan, and stops it cleanly on exit. Used by the tests and the benchmark; ``muster simulator serve`` runs
the simulator in the foreground instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

__all__ = ["serve_in_background"]


@contextlib.asynccontextmanager
async def serve_in_background(app: Any, *, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve ``app`` on ``host:port`` (0 = a free port) until the block exits; yields ``http://host:port``.

    Raises:
        RuntimeError: the server did not start within 10 seconds.

    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    actual_port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(1000):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        if not server.started:
            raise RuntimeError("server did not start")
        yield f"http://{host}:{actual_port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        sock.close()
