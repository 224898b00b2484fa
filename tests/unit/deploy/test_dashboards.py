"""The Grafana dashboards (deploy/grafana/dashboards) and alert rules ask only for series the code exposes.

Every PromQL expression's metric names must be among the families registered by shared/metrics.py (in
their exposed form: ``_total`` for counters, ``_bucket``/``_sum``/``_count`` for histograms), or ``up``.
With promtool at hand every expression is also parsed (as a recording rule) by Prometheus itself.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

import shared.metrics  # noqa: F401 - registers the families
from deploy.tools import find_tool

ROOT = Path(__file__).resolve().parents[3]
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}


def exposed() -> set[str]:
    names = {"up"}
    for family in REGISTRY.collect():
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names |= {family.name + s for s in ("_bucket", "_sum", "_count")}
        else:
            names.add(family.name)
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (not functions, keywords, label names or label values)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    s = re.sub(r"\{[^}]*\}", "", s)
    s = re.sub(r"\[[^\]]*\]", "", s)
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    return {m.group(1) for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)\b(?!\s*\()", s)} - _KEYWORDS


def dashboard_exprs() -> list[tuple[str, str]]:
    out = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            out += [(f"{path.name}: {panel['title']}", t["expr"]) for t in panel["targets"]]
    return out


def rule_exprs() -> list[tuple[str, str]]:
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    return [(r["alert"], r["expr"]) for g in rules["groups"] for r in g["rules"]]


def test_the_name_extraction_sees_what_it_must() -> None:
    assert metric_names('histogram_quantile(0.95, sum by (le, route) (rate(a_bucket{x="b c"}[5m]))) / b') == {"a_bucket", "b"}
    assert metric_names("time() - max(t_seconds) > 60 and on() (sum(up{job=\"n\"}) or vector(0)) == 0") == {"t_seconds", "up"}


def test_both_views_are_provisioned() -> None:
    titles = {json.loads(p.read_text())["title"] for p in DASHBOARDS}
    assert titles == {"muster — mobilisation", "muster — plumbing"}
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/muster.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    uids = {json.loads(p.read_text())["panels"][0]["datasource"]["uid"] for p in DASHBOARDS}
    source = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert uids == {source["datasources"][0]["uid"]}


@pytest.mark.parametrize(("where", "expr"), dashboard_exprs() + rule_exprs())
def test_expressions_use_exposed_series_only(where: str, expr: str) -> None:
    names = metric_names(expr)
    assert names, f"{where}: no metric in {expr!r}"
    assert names <= exposed(), f"{where}: {names - exposed()} not exposed by shared/metrics.py"


def test_dashboard_expressions_parse(tmp_path: Path) -> None:
    promtool = find_tool("promtool", apt_package="prometheus",
                         go_module="github.com/prometheus/prometheus/cmd/promtool@v0.307.3")
    if promtool is None:
        pytest.skip("promtool cannot be installed here: .ci/run installs Debian's prometheus")
    rules = [{"record": f"dashboard:expr_{i}", "expr": e} for i, (_, e) in enumerate(dashboard_exprs())]
    (tmp_path / "r.yml").write_text(yaml.safe_dump({"groups": [{"name": "d", "rules": rules}]}))
    r = subprocess.run([promtool, "check", "rules", "r.yml"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
