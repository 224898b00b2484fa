"""CPU seconds spent by each process of the stack between two moments: where a benchmark's machine time goes.

:func:`snapshot` reads, through psutil, the user + system CPU seconds of Kafka's broker, PostgreSQL (the
postmaster, its live backends and the children that have exited), the provider simulator and the three
services, from the pid files ``muster stack up --services`` keeps in the state directory
(``<state>/kafka/broker.pid``, ``<state>/postgres/data/postmaster.pid``, ``<state>/services/<name>.pid``).
:func:`spent` subtracts two snapshots. A process that is not running is left out; one that restarted in
between gives a negative figure, which is reported as ``None``.

On a machine of ``c`` cores, ``sum(spent) / c`` seconds is the least wall time the same work could take if
nothing waited: the CPU budget a wall-time target has to fit into.
"""

from __future__ import annotations

from pathlib import Path

import psutil


def _pids() -> dict[str, int]:
    from deploy.stack import state_dir

    state = state_dir()
    files = {
        "kafka": state / "kafka" / "broker.pid",
        "postgres": state / "postgres" / "data" / "postmaster.pid",
        **{name: state / "services" / f"{name}.pid" for name in ("simulator", "roster", "dispatch", "notify")},
    }
    out: dict[str, int] = {}
    for name, path in files.items():
        try:
            out[name] = int(Path(path).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return out


def _seconds(proc: psutil.Process, *, with_children: bool) -> float:
    t = proc.cpu_times()
    total: float = t.user + t.system
    if with_children:
        # exited children (PostgreSQL's short-lived backends) are in children_*; live ones are summed here
        total += t.children_user + t.children_system
        for child in proc.children(recursive=True):
            try:
                c = child.cpu_times()
                total += c.user + c.system
            except psutil.Error:
                continue
    return total


def snapshot() -> dict[str, float]:
    """CPU seconds (user + system) used so far, per process name: ``{"kafka": 812.4, "notify": 95.1, ...}``."""
    out: dict[str, float] = {}
    for name, pid in _pids().items():
        try:
            out[name] = _seconds(psutil.Process(pid), with_children=name == "postgres")
        except psutil.Error:
            continue
    return out


def spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float | None]:
    """CPU seconds per process between two snapshots, rounded to 0.1 s, plus ``"total"``; see the module docstring.

    ``"total"`` is always a number (the sum of the processes' figures that are not None).
    """
    out: dict[str, float | None] = {}
    for name in sorted(before.keys() & after.keys()):
        d = after[name] - before[name]
        out[name] = round(d, 1) if d >= 0 else None
    out["total"] = round(sum(v for v in out.values() if v is not None), 1)
    return out
