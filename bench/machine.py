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


def machine() -> dict[str, Any]:
    """Cores, memory (GiB), CPU model, OS, Python, Kafka and PostgreSQL versions, git commit."""
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
    pg = _run(["bash", "-c", "ls /usr/lib/postgresql/*/bin/postgres | tail -1 | xargs -I{} {} --version"])
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "cpu": cpu,
        "os": platform.platform(),
        "python": platform.python_version(),
        "kafka": KAFKA_VERSION,
        "postgresql": pg,
        "commit": _run(["git", "rev-parse", "--short", "HEAD"]),
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
