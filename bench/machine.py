"""Machine facts recorded with every benchmark result: cores, memory, Python, Kafka, PostgreSQL, commit."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def _run(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def postgres_version(dsn: str | None = None) -> str:
    """The server's ``SHOW server_version``, e.g. ``15.18 (Debian 15.18-0+deb12u1)``.

    Asks in its own thread and event loop, so it works from plain code and from inside a running loop.
    Never raises: "" when there is no DSN (no stack env file), ``unknown (<error class>)`` when the server
    cannot be reached within 15 seconds.

    Args:
        dsn: a PostgreSQL URL; default the stack's ``MUSTER_TEST_DATABASE_URL`` (``deploy.stack.stack_env``).

    """
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    import asyncpg

    if dsn is None:
        try:
            from deploy.stack import stack_env

            dsn = stack_env()["MUSTER_TEST_DATABASE_URL"]
        except (OSError, KeyError):
            return ""

    async def ask() -> str:
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            return str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        try:
            return pool.submit(asyncio.run, ask()).result(timeout=15)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            return f"unknown ({type(exc).__name__})"


def machine(*, dsn: str | None = None) -> dict[str, Any]:
    """Cores, memory (GiB), CPU model, OS, Python, Kafka and PostgreSQL versions, git commit.

    ``postgresql`` is the running server's version (:func:`postgres_version` on ``dsn``, default the stack's
    test database), ``kafka`` the version the stack runs (``deploy.stack.KAFKA_VERSION``).
    """
    from deploy.stack import KAFKA_VERSION

    mem_kib = 0
    cpu = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    pg = postgres_version(dsn)
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "cpu": cpu,
        "os": platform.platform(),
        "python": platform.python_version(),
        "kafka": KAFKA_VERSION,
        "postgresql": pg,
        "commit": _run(["git", "-C", str(RESULTS.parent.parent), "rev-parse", "--short", "HEAD"]),
        "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "at": datetime.now(UTC).isoformat(),
    }


def save(name: str, figures: dict[str, Any]) -> Path:
    """Write ``{"benchmark", "machine", "figures"}`` to bench/results/<name>-<timestamp>.json and latest."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    body = {"benchmark": name, "machine": machine(), "figures": figures}
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{name}-{stamp}.json"
    text = json.dumps(body, indent=2, ensure_ascii=False)
    path.write_text(text)
    (RESULTS / f"{name}-latest.json").write_text(text)
    return path
