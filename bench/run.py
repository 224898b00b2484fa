"""One command for issue #7: every benchmark figure beside its floor, in one run on the real stack.

``uv run --frozen python -m bench.run [--quick] [--skip fanout,reply,selection]`` (``make bench``)
measures, in this order and in one process:

1. **The floor** (:mod:`bench.floor`): raw aiokafka produce → consume of N = 100, 1,000, 10,000
   messages through the same broker (one ``send`` each and hand-filled batches; the faster counts),
   raw asyncpg writes of N call-out rows (COPY and executemany; the faster counts), and
   single-message produce → consume latency at each reply rate.
   Each floor is run three times (once with ``--quick``) and the run with the median wall time kept.
2. **Candidate selection** (:func:`bench.dispatch_select.run`): selection alone and the whole first
   wave (writes included) of 1,000 from 100,000 volunteers, beside a raw fetch of the same rows.
3. **Fan-out** (``bench.fanout.run(sizes=...)``, when that module exists): N call-outs from the
   operator's request to every message accepted by the provider simulator.
4. **Reply path** (``bench.reply_path.run(rates=..., seconds=...)``, when that module exists).

A benchmark module that is missing or raises gives a "not run: <reason>" row; the run goes on.

What each figure is set against (the "floor is" column of the table):

* fan-out wall time N ↔ ``pg_floor(N).wall + kafka_floor(N).wall`` (the rows must commit before
  they are published, then every message goes through the broker);
* fan-out per-message p50/p99 ↔ ``pg_floor(N).wall + kafka_floor(N).p50/p99``;
* reply p50/p99 at rate R ↔ ``roundtrip_floor(rate=R).p50/p99``;
* selection alone ↔ the raw fetch of the same candidate rows by primary key; the first wave with
  writes ↔ that fetch plus ``pg_floor(1,000)`` (call-out rows only; its 1,001 outbox rows are not in the floor).

The ratio ("× floor") is muster's figure divided by the floor's: 1.0 would be the raw clients' speed.

Output: the table (Markdown) on stdout, and in ``bench/results/``: ``run-<UTC stamp>.json`` and
``run-latest.json`` (``{"benchmark", "machine", "figures"}``, machine facts and commit from
:mod:`bench.machine`) and ``run-latest.md`` (the table, for the README). ``--quick`` (the smoke
run) uses small sizes and writes ``run-quick-*`` instead, so it never replaces the latest full run.
While it runs, ``run-partial.json`` holds the figures measured so far (removed when the run ends well).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import json
import os
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bench.floor import kafka_floor, pg_floor, roundtrip_floor
from bench.machine import RESULTS, save

__all__ = ["Plan", "Row", "main", "render", "run"]


@dataclass(frozen=True)
class Plan:
    """Sizes of one run. ``Plan()`` is the full run of issue #7; :meth:`quick` the smoke run."""

    sizes: tuple[int, ...] = (100, 1_000, 10_000)
    rates: tuple[float, ...] = (100, 500, 1_000)
    reply_seconds: float = 60.0
    selection_runs: int = 10
    floor_repeats: int = 3
    roundtrip_seconds: float = 5.0  # per rate, at most 3,000 messages
    skip: frozenset[str] = field(default_factory=frozenset)
    name: str = "run"

    @classmethod
    def quick(cls, skip: frozenset[str] = frozenset()) -> Plan:
        """Small sizes for the smoke run (about half a minute without fan-out and reply path)."""
        return cls(sizes=(100,), rates=(100,), reply_seconds=10.0, selection_runs=3, floor_repeats=1,
                   roundtrip_seconds=2.0, skip=skip, name="run-quick")


@dataclass
class Row:
    """One line of the table: muster's figure, the floor's, and what the floor is."""

    figure: str
    value: float | None
    unit: str
    floor: float | None = None
    floor_is: str = ""
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """``value / floor``, or None when either is missing or the floor is 0."""
        if self.value is None or not self.floor:
            return None
        return self.value / self.floor


def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "—"
    if unit == "s":
        return f"{v:.3f} s" if v < 10 else f"{v:.1f} s"
    if unit == "ms":
        return f"{v:.1f} ms" if v < 1000 else f"{v:,.0f} ms"
    return f"{v:g} {unit}".strip()


def render(rows: list[Row], facts: dict[str, Any]) -> str:
    """The Markdown table of ``rows`` under one line of machine facts (cores, memory, versions, load, commit)."""
    load = facts.get("loadavg_1_5_15") or []
    head = (f"Measured {facts.get('at', '')[:16].replace('T', ' ')} UTC at commit {facts.get('commit', '?')}: "
            f"{facts.get('cores')} cores, {facts.get('memory_gib')} GiB, Python {facts.get('python')}, "
            f"Kafka {facts.get('kafka')}, PostgreSQL {facts.get('postgresql') or '?'}; "
            f"load average {' / '.join(f'{x:.1f}' for x in load) or '?'} (1/5/15 min, at the end).")
    lines = [head, "", "| figure | muster | floor | × floor | floor is |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        value = r.note if r.value is None and r.note else _fmt(r.value, r.unit)
        if r.value is not None and r.note:
            value = f"{value} ({r.note})"
        ratio = f"{r.ratio:.1f}×" if r.ratio is not None else "—"
        lines.append(f"| {r.figure} | {value} | {_fmt(r.floor, r.unit)} | {ratio} | {r.floor_is} |")
    return "\n".join(lines) + "\n"


def _log(msg: str) -> None:
    print(f"[bench.run] {msg}", file=sys.stderr, flush=True)


async def _call(fn: Callable[..., Any], **kwargs: Any) -> Any:
    out = fn(**kwargs)
    return await out if inspect.isawaitable(out) else out


async def _guarded(label: str, make: Callable[[], Awaitable[Any]]) -> tuple[Any, str | None]:
    """Run one benchmark; on any failure return ``(None, "not run: <reason>")`` and go on with the others."""
    t = time.perf_counter()
    _log(f"{label} …")
    try:
        result = await make()
    except Exception as exc:  # noqa: BLE001 - one failing benchmark must not stop the others; reason is reported
        traceback.print_exc(file=sys.stderr)
        return None, f"not run: {type(exc).__name__}: {str(exc)[:120]}"
    _log(f"{label} done in {time.perf_counter() - t:.1f} s")
    return result, None


def _module_run(name: str) -> Callable[..., Any] | str:
    """``bench.<name>.run``, or the reason it cannot be had."""
    try:
        module = importlib.import_module(f"bench.{name}")
    except ImportError as exc:
        return f"not run: bench.{name} not available ({exc})"
    fn: object = getattr(module, "run", None)
    if not callable(fn):
        return f"not run: bench.{name} has no run()"
    return fn


def _by_key(result: Any, keys: tuple[str, ...]) -> dict[float, dict[str, Any]]:
    """The per-size (or per-rate) dicts found in ``result``, keyed by their size (rate).

    Accepts a list of dicts, a dict holding such a list (e.g. ``{"rates": [...]}``), or a dict keyed by size;
    a dict counts when it has one of ``keys`` (e.g. ``"n"``, ``"rate"``, ``"rate_per_s"``).
    """
    found: dict[float, dict[str, Any]] = {}

    def visit(obj: Any, depth: int) -> None:
        if isinstance(obj, dict):
            for k in keys:
                if isinstance(obj.get(k), int | float) and not isinstance(obj.get(k), bool):
                    found[float(obj[k])] = obj
                    return
            if depth < 2:
                for k, v in obj.items():
                    if isinstance(v, dict) and str(k).replace(".", "", 1).isdigit() and not any(x in v for x in keys):
                        found[float(k)] = v
                    else:
                        visit(v, depth + 1)
        elif isinstance(obj, list | tuple) and depth < 2:
            for v in obj:
                visit(v, depth + 1)

    visit(result, 0)
    return found


def _num(d: dict[str, Any], *names: str) -> float | None:
    for n in names:
        v = d.get(n)
        if isinstance(v, int | float) and not isinstance(v, bool):
            return float(v)
    return None


def _median_run(results: list[dict[str, Any]], key: str = "wall_seconds") -> dict[str, Any]:
    ordered = sorted(results, key=lambda r: r[key])
    chosen = dict(ordered[len(ordered) // 2])
    chosen["repeats"] = len(results)
    chosen[f"{key}_all"] = [r[key] for r in results]
    return chosen


async def run(plan: Plan | None = None, *, bootstrap: str | None = None, dsn: str | None = None,
              checkpoint: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run every benchmark of ``plan`` and return ``{"plan", "floor", "selection", "fanout", "reply_path", "rows"}``.

    Args:
        plan: sizes; default the full run (:class:`Plan`).
        bootstrap: Kafka ``host:port``; default the stack's (``deploy.stack.stack_env``).
        dsn: PostgreSQL URL for the floor and selection (a scratch database); default the stack's
            ``MUSTER_TEST_DATABASE_URL``.
        checkpoint: called with the figures measured so far after each part (floor, selection, fan-out),
            so an interrupted run keeps what it had.

    Returns:
        The figures: ``floor`` (``kafka``/``pg`` per N, ``roundtrip`` per rate), the others' raw results (or
        ``{"not_run": reason}``), and ``rows``: the table as a list of ``{"figure", "value", "unit", "floor",
        "ratio", "floor_is", "note"}``. Seconds and milliseconds as the units say.

    Raises:
        bench.floor.FloorIncomplete: a floor lost messages (then no figure would mean anything).

    """
    plan = plan or Plan()
    if bootstrap is None or dsn is None:
        from deploy.stack import stack_env

        env = stack_env()
        bootstrap = bootstrap or env["KAFKA_BOOTSTRAP_SERVERS"]
        dsn = dsn or env["MUSTER_TEST_DATABASE_URL"]
    started = datetime.now(UTC).isoformat()
    load_before = [round(x, 2) for x in os.getloadavg()]

    # 1. the floor
    kafka: dict[int, dict[str, Any]] = {}
    pg: dict[int, dict[str, Any]] = {}
    floor_sizes = sorted(set(plan.sizes) | ({1_000} if "selection" not in plan.skip else set()))
    for n in floor_sizes:
        _log(f"floor N={n} …")
        kafka[n] = _median_run([await kafka_floor(n, bootstrap=bootstrap) for _ in range(plan.floor_repeats)])
        pg[n] = _median_run([await pg_floor(n, dsn=dsn) for _ in range(plan.floor_repeats)])
    roundtrip: dict[float, dict[str, Any]] = {}
    for rate in plan.rates:
        count = max(50, min(3_000, int(rate * plan.roundtrip_seconds)))
        _log(f"roundtrip floor {rate:g}/s × {count} …")
        roundtrip[rate] = await roundtrip_floor(count, bootstrap=bootstrap, rate=rate)

    partial: dict[str, Any] = {"floor": {"kafka": {str(k): v for k, v in kafka.items()},
                                         "pg": {str(k): v for k, v in pg.items()},
                                         "roundtrip": {f"{k:g}": v for k, v in roundtrip.items()}}}
    if checkpoint:
        checkpoint(partial)

    # 2. selection
    selection: Any = None
    selection_note: str | None = "not run: skipped"
    if "selection" not in plan.skip:
        from bench import dispatch_select

        selection, selection_note = await _guarded(
            "selection", lambda: dispatch_select.run(plan.selection_runs, dsn=dsn))

    if checkpoint:
        checkpoint(partial | {"selection": selection or {"not_run": selection_note}})

    # 3. fan-out, 4. reply path (others' modules, by interface only)
    fanout: Any = None
    fanout_note: str | None = "not run: skipped"
    if "fanout" not in plan.skip:
        fn = _module_run("fanout")
        fanout, fanout_note = (None, fn) if isinstance(fn, str) else await _guarded(
            "fan-out", lambda: _call(fn, sizes=plan.sizes))
    if checkpoint:
        checkpoint(partial | {"selection": selection or {"not_run": selection_note},
                              "fanout": fanout or {"not_run": fanout_note}})
    reply: Any = None
    reply_note: str | None = "not run: skipped"
    if "reply" not in plan.skip:
        fn_r = _module_run("reply_path")
        reply, reply_note = (None, fn_r) if isinstance(fn_r, str) else await _guarded(
            "reply path", lambda: _call(fn_r, rates=plan.rates, seconds=plan.reply_seconds))

    rows = _rows(plan, kafka, pg, roundtrip, selection, selection_note, fanout, fanout_note, reply, reply_note)
    return {
        "plan": {"sizes": list(plan.sizes), "rates": list(plan.rates), "reply_seconds": plan.reply_seconds,
                 "selection_runs": plan.selection_runs, "floor_repeats": plan.floor_repeats,
                 "skip": sorted(plan.skip)},
        "started_at": started, "loadavg_1_5_15_before": load_before,
        "loadavg_1_5_15_after": [round(x, 2) for x in os.getloadavg()],
        "floor": partial["floor"],
        "selection": selection if selection is not None else {"not_run": selection_note},
        "fanout": fanout if fanout is not None else {"not_run": fanout_note},
        "reply_path": reply if reply is not None else {"not_run": reply_note},
        "rows": [{"figure": r.figure, "value": r.value, "unit": r.unit, "floor": r.floor,
                  "ratio": None if r.ratio is None else round(r.ratio, 2), "floor_is": r.floor_is, "note": r.note}
                 for r in rows],
    }


def _rows(plan: Plan, kafka: dict[int, dict[str, Any]], pg: dict[int, dict[str, Any]],
          roundtrip: dict[float, dict[str, Any]], selection: Any, selection_note: str | None,
          fanout: Any, fanout_note: str | None, reply: Any, reply_note: str | None) -> list[Row]:
    rows: list[Row] = []
    # fan-out ↔ pg_floor(N) + kafka_floor(N)
    per_size = _by_key(fanout, ("n", "size", "callouts")) if fanout is not None else {}
    for n in plan.sizes:
        f = per_size.get(float(n))
        note = fanout_note or ("" if f is not None else f"not run: no figures for N={n} in bench.fanout's result")
        if f is not None:
            note = ", ".join(f"{k} {f[k]}" for k in ("duplicates", "missing") if k in f)
            if isinstance(f.get("cpu_seconds"), dict):
                note += f", CPU of the stack {f['cpu_seconds']['total']} s"
            if f.get("row_writes_per_callout") is not None:
                note += f", {f['row_writes_per_callout']} row writes a call-out"
        k, p = kafka[n], pg[n]
        base = p["wall_seconds"]
        rows.append(Row(f"fan-out N={n:,}: wall time", None if f is None else _num(f, "wall_seconds", "wall_s"), "s",
                        base + k["wall_seconds"], f"pg write {n:,} rows + kafka {n:,} msgs", note))
        for q in ("p50", "p99"):
            rows.append(Row(f"fan-out N={n:,}: {q} per message", None if f is None else _num(f, f"{q}_ms"), "ms",
                            base * 1000 + k[f"{q}_ms"], f"pg write {n:,} rows + kafka {q} per msg", note))
    # reply path ↔ roundtrip floor at the same rate
    per_rate = _by_key(reply, ("rate", "rate_per_s")) if reply is not None else {}
    for rate in plan.rates:
        r = per_rate.get(float(rate))
        note = reply_note or ("" if r is not None else f"not run: no figures for {rate:g}/s in bench.reply_path")
        if r is not None:
            grew = r.get("lag_grew", r.get("dispatch_replies_lag_grew"))
            held = r.get("held")
            bits = [f"lag grew: {'yes' if grew else 'no' if grew is False else '?'}"]
            if isinstance(r.get("sent"), int) and isinstance(r.get("seen"), int) and r["sent"] != r["seen"]:
                bits.append(f"{r['seen']} of {r['sent']} seen")
            if held is not None:
                bits.append(f"held: {'yes' if held else 'no'}")
            if r.get("cpu_ms_per_reply") is not None:
                bits.append(f"CPU {r['cpu_ms_per_reply']} ms a reply")
            note = ", ".join(bits)
        for q in ("p50", "p99"):
            rows.append(Row(f"reply at {rate:g}/s: {q}", None if r is None else _num(r, f"{q}_ms"), "ms",
                            roundtrip[rate][f"{q}_ms"], f"one kafka produce→consume at {rate:g}/s, {q}", note))
    if reply is not None and isinstance(reply, dict) and "highest_rate_held" in reply:
        held = reply["highest_rate_held"]
        rows.append(Row("reply path: highest rate held", None if held is None else float(held), "/s",
                        note="" if held is not None else "none of the rates held"))
    # selection ↔ raw fetch of the same rows
    if isinstance(selection, dict) and "selection_alone" in selection:
        sel, fetch, wave = selection["selection_alone"], selection["fetch_floor"], selection["first_wave"]
        runs = selection.get("runs")
        for q in ("p50", "p99"):
            rows.append(Row(f"selection alone, 1,000 of 100,000: {q}", sel[f"{q}_ms"], "ms", fetch[f"{q}_ms"],
                            f"fetch the same {fetch['rows']:,} rows by id, {q}", f"{runs} runs"))
        p1000 = pg[1_000]["wall_seconds"] * 1000
        for q in ("p50", "p99"):
            rows.append(Row(f"first wave of 1,000 incl. writes: {q}", wave[f"{q}_ms"], "ms", fetch[f"{q}_ms"] + p1000,
                            f"that fetch + pg write 1,000 rows ({q})", f"{runs} runs"))
    else:
        for label in ("selection alone, 1,000 of 100,000: p50", "first wave of 1,000 incl. writes: p50"):
            rows.append(Row(label, None, "ms", note=selection_note or "not run"))
    # the floor itself, for the record
    for n in sorted(kafka):
        k, p = kafka[n], pg[n]
        rows.append(Row(f"floor: kafka {n:,} msgs produce→consume", None, "s", k["wall_seconds"],
                        f"raw aiokafka, {k['method']} (send {k['send']['wall_seconds']:.3f} s, batch "
                        f"{k['batch']['wall_seconds']:.3f} s); p50 {k['p50_ms']:.1f} ms, p99 {k['p99_ms']:.1f} ms per msg"))
        rows.append(Row(f"floor: pg write {n:,} call-out rows", None, "s", p["wall_seconds"],
                        f"raw asyncpg; COPY {p['copy_seconds']:.3f} s, executemany {p['executemany_seconds']:.3f} s"))
    for rate, rt in roundtrip.items():
        rows.append(Row(f"floor: kafka roundtrip at {rate:g}/s, p50", None, "ms", rt["p50_ms"],
                        f"raw aiokafka; p99 {rt['p99_ms']:.1f} ms over {rt['count']:,} msgs"))
    return rows


def main(argv: list[str] | None = None) -> int:
    """The command line: run, print the table, write the results; exit 0 (a "not run" row is not a failure)."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (the smoke run); writes run-quick-*")
    parser.add_argument("--skip", default="", help="comma-separated: fanout, reply, selection")
    args = parser.parse_args(argv)
    skip = frozenset(s.strip() for s in args.skip.split(",") if s.strip())
    unknown = skip - {"fanout", "reply", "selection"}
    if unknown:
        parser.error(f"unknown --skip {', '.join(sorted(unknown))}")
    from shared.logging import configure_logging

    configure_logging(level="WARNING")
    plan = Plan.quick(skip) if args.quick else Plan(skip=skip)
    partial_path = RESULTS / f"{plan.name}-partial.json"

    def checkpoint(so_far: dict[str, Any]) -> None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        partial_path.write_text(json.dumps({"benchmark": plan.name, "partial": True, "figures": so_far},
                                           indent=2, ensure_ascii=False, default=str))

    figures = asyncio.run(run(plan, checkpoint=checkpoint))
    path = save(plan.name, figures)
    partial_path.unlink(missing_ok=True)
    facts = json.loads(path.read_text())["machine"]
    table = render([Row(**{k: v for k, v in r.items() if k != "ratio"}) for r in figures["rows"]], facts)
    (RESULTS / f"{plan.name}-latest.md").write_text(table)
    print(table)
    print(f"written {path.relative_to(RESULTS.parent.parent)}, {plan.name}-latest.json and {plan.name}-latest.md "
          f"in {RESULTS.relative_to(RESULTS.parent.parent)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
