"""structlog configured once: JSON lines when not on a terminal, personal data masked.

Every log record passes :func:`mask_personal_data`, which masks mobile numbers, WeChat openids and
credentials carried in URLs (``access_token=``, callback path tokens) in every string value (see
:mod:`shared.privacy`), so a handler that logs a raw callback body or a request URL still writes no
phone number and no token.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog

from shared.privacy import mask_value

__all__ = ["configure_logging", "get_logger", "mask_personal_data"]


def mask_personal_data(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Structlog processor: mask mobiles and openids in every value, the event name included."""
    for key, value in list(event_dict.items()):
        event_dict[key] = mask_value(value)
    return event_dict


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the moment of writing.

    structlog and logging otherwise keep the stream they were given at configuration; if that stream
    is later closed (a test's capture, a daemonised process), logging raises and takes the caller
    (a consumer, a handler) down with it. Logging must never break the work it describes.
    """

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


_STDERR = _CurrentStderr()


def _dumps(obj: Any, **kw: Any) -> str:
    """One JSON line with orjson (UTF-8, not ASCII-escaped): a sixth of ``json.dumps``'s time.

    A JSON log line per reply was the largest single cost on notify's event loop under the reply
    path's load (``bench/reply_path.py``). ``default`` is structlog's fallback (``repr``) for types
    orjson does not know; UUIDs and datetimes are written as strings (RFC 3339).
    """
    return orjson.dumps(obj, default=kw.get("default"), option=orjson.OPT_NON_STR_KEYS).decode()


def configure_logging(*, level: str = "INFO", service: str | None = None, json: bool | None = None) -> None:
    """Configure structlog and the standard library's logging (idempotent).

    Args:
        level: minimum level name, e.g. ``INFO``.
        service: bound to every record as ``service``.
        json: force JSON (True) or console (False) output; default JSON unless stderr is a terminal.

    """
    use_json = (not sys.stderr.isatty()) if json is None else json
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        mask_personal_data,
    ]
    renderer: Any = structlog.processors.JSONRenderer(serializer=_dumps) if use_json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        # structlog types ``file`` as TextIO, but PrintLogger only calls its write and flush
        logger_factory=structlog.PrintLoggerFactory(file=_STDERR),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    if service:
        structlog.contextvars.bind_contextvars(service=service)
    # Route the standard library's records (uvicorn, aiokafka, faststream) through the same masking.
    handler = logging.StreamHandler(_STDERR)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
                                            foreign_pre_chain=shared)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.getLevelName(level.upper()) if level.upper() != "DEBUG" else logging.DEBUG)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    # httpx logs every request line at INFO, query string included (WeChat's access_token travels there).
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(name: str | None = None) -> Any:
    """A structlog logger (lazy; safe to create at import)."""
    return structlog.get_logger(name)
