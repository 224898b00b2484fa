"""Request body limits, enforced before a handler reads the body (ASGI middleware).

Each service gives a default limit and limits per path prefix (:attr:`shared.service.ServiceSpec.body_limits`;
the longest matching prefix wins). A request whose ``Content-Length`` is over its limit is answered 413 at once,
without reading the body; a body sent without a length (chunked) is counted as it arrives and refused with
413 as soon as it passes the limit. Limits are bytes. The 413 body is ``{"detail": "..."}`` (RFC 9110 §15.5.14).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["DEFAULT_BODY_LIMIT", "BodyLimit", "BodyTooLarge"]

#: Bytes a request body may have where no route says otherwise (JSON bodies of the operator and admin APIs).
DEFAULT_BODY_LIMIT = 1024 * 1024


class BodyTooLarge(HTTPException):
    """A streamed body passed its limit (raised from ``receive`` inside the app; FastAPI answers it 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")


class BodyLimit:
    """ASGI middleware refusing request bodies over their path's limit with 413."""

    def __init__(self, app: ASGIApp, *, default: int = DEFAULT_BODY_LIMIT, limits: Mapping[str, int] | None = None
                 ) -> None:
        self.app = app
        self.default = default
        self.limits = sorted((limits or {}).items(), key=lambda kv: -len(kv[0]))

    def limit_for(self, path: str) -> int:
        """The limit, bytes, for a request to ``path``."""
        return next((n for prefix, n in self.limits if path.startswith(prefix)), self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        length = next((v for k, v in scope.get("headers", []) if k == b"content-length"), None)
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared > limit:
                await _refuse(send, limit)
                return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracking)
        except BodyTooLarge:
            if not started:
                await _refuse(send, limit)


async def _refuse(send: Send, limit: int) -> None:
    import orjson

    body: Any = orjson.dumps({"detail": f"request body larger than {limit} bytes"})
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
