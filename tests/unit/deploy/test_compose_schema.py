"""docker-compose.yml is a valid Compose file, whole: schema, env file, mounted files, Prometheus config.

No Docker engine here: the file is validated against the Compose Specification's JSON schema (vendored in
deploy/compose/, see its README), and what it refers to is checked to exist.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from deploy.tools import find_tool
from simulator.settings import SimulatorSettings

ROOT = Path(__file__).resolve().parents[3]


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_file_matches_the_compose_spec_schema() -> None:
    schema = json.loads((ROOT / "deploy" / "compose" / "compose-spec.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose()), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_the_schema_check_refuses_a_broken_file() -> None:
    """The validator is not vacuous: a misspelt key and a wrong type are refused."""
    schema = json.loads((ROOT / "deploy" / "compose" / "compose-spec.json").read_text())
    broken = compose()
    broken["services"]["dispatch"]["helthcheck"] = broken["services"]["dispatch"].pop("healthcheck")
    broken["services"]["notify"]["ports"] = "8103:8103"
    messages = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(broken)]
    assert any("helthcheck" in m for m in messages) and len(messages) >= 2


def test_every_part_runs_with_a_health_check() -> None:
    services = compose()["services"]
    assert {"kafka", "postgres", "simulator", "roster", "dispatch", "notify", "prometheus", "grafana"} <= set(services)
    assert all("healthcheck" in s for s in services.values())
    assert services["simulator"]["command"] == ["simulator", "serve"]


def test_every_required_variable_is_in_the_env_file_example() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    required = set(re.findall(r"\$\{(\w+):\?", text))
    example = {line.split("=", 1)[0] for line in (ROOT / "deploy" / "compose.env.example").read_text().splitlines()
               if line and not line.startswith("#")}
    assert required and required <= example, required - example


def test_simulator_environment_is_read_by_its_settings() -> None:
    env = compose()["services"]["simulator"]["environment"]
    known = {f"SIMULATOR_{n.upper()}" for n in SimulatorSettings.model_fields}
    for field in SimulatorSettings.model_fields.values():
        choices = getattr(field.validation_alias, "choices", [])
        known |= {c for c in choices if isinstance(c, str)}
    assert set(env) <= known, set(env) - known


def test_mounted_files_exist() -> None:
    for name, svc in compose()["services"].items():
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"


def test_prometheus_config_is_valid() -> None:
    promtool = find_tool("promtool", apt_package="prometheus",
                         go_module="github.com/prometheus/prometheus/cmd/promtool@v0.307.3")
    if promtool is None:
        pytest.skip("promtool cannot be installed here: .ci/run installs Debian's prometheus")
    r = subprocess.run([promtool, "check", "config", "prometheus.yml"], cwd=ROOT / "deploy" / "prometheus",
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    jobs = {j["job_name"] for j in yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())["scrape_configs"]}
    assert jobs == {"roster", "dispatch", "notify", "simulator"}
