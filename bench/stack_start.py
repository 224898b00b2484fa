"""The local stack's cold start (first time, Maven downloads and initdb included) and warm start.

Runs a second, throw-away stack beside the main one (own state, cache and Maven repository
directories; ports 19092/19093 for Kafka and 55433 for PostgreSQL), so the main stack is not
touched. Prints seconds and writes bench/results/stack_start-*.json.

Run: ``uv run python -m bench.stack_start``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.machine import save


def _muster(env: dict[str, str], *args: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "muster", *args], env=env, check=True, capture_output=True)
    return round(time.perf_counter() - t0, 2)


def main() -> dict[str, float]:
    base = Path(tempfile.mkdtemp(prefix="muster-cold-", dir="/tmp"))
    base.chmod(0o755)
    env = {
        **os.environ,
        "MUSTER_STATE_DIR": str(base / "state"),
        "MUSTER_CACHE_DIR": str(base / "cache"),
        "MUSTER_MAVEN_REPO": str(base / "m2"),
        "MUSTER_KAFKA_PORT": "19092",
        "MUSTER_KAFKA_CONTROLLER_PORT": "19093",
        "MUSTER_PG_PORT": "55433",
    }
    try:
        cold = _muster(env, "stack", "up")
        _muster(env, "stack", "down")
        warm = _muster(env, "stack", "up")
        reuse = _muster(env, "stack", "up")
        _muster(env, "stack", "down")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return {"cold_start_s": cold, "warm_start_s": warm, "already_running_s": reuse}


if __name__ == "__main__":
    figures = main()
    print("muster stack up: cold (downloads + initdb + format), warm (after a clean stop), reuse (running)")
    for k, v in figures.items():
        print(f"  {k:>18}: {v}")
    print(f"saved {save('stack_start', figures)}")
