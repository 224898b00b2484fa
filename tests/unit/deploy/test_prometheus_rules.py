"""The alert rules (deploy/prometheus/alerts.yml) pass ``promtool check rules`` and their unit tests.

promtool comes from Debian's ``prometheus`` package (or ``go install``); see :mod:`deploy.tools`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from deploy.tools import find_tool

HERE = Path(__file__).resolve().parents[3] / "deploy" / "prometheus"


@pytest.fixture(scope="module")
def promtool() -> str:
    found = find_tool("promtool", apt_package="prometheus",
                      go_module="github.com/prometheus/prometheus/cmd/promtool@v0.307.3")
    if found is None:
        pytest.skip("promtool cannot be installed here (no apt as root, no Go): .ci/run installs prometheus")
    return found


def test_rules_are_valid(promtool: str) -> None:
    r = subprocess.run([promtool, "check", "rules", "alerts.yml"], cwd=HERE, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_rule_unit_tests_pass(promtool: str) -> None:
    r = subprocess.run([promtool, "test", "rules", "alerts_test.yml"], cwd=HERE, capture_output=True, text=True)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


def test_every_alert_has_a_firing_test_case() -> None:
    rules = yaml.safe_load((HERE / "alerts.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    cases = yaml.safe_load((HERE / "alerts_test.yml").read_text())["tests"]
    fired = {t["alertname"] for c in cases for t in c.get("alert_rule_test", []) if t.get("exp_alerts")}
    assert alerts == fired, f"alerts without a test in which they fire: {alerts - fired}"
