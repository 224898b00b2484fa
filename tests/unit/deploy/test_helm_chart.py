"""The Helm chart (deploy/helm/muster) lints, renders, and every rendered object is valid Kubernetes.

Rendering needs ``helm`` (Go module helm.sh/helm/v4, built by ``go install`` when missing; .ci/run installs
it ahead of the tests); the objects are validated strictly (unknown fields refused) against the Kubernetes
JSON schemas that the kubernetes-validate package ships.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from deploy.tools import find_tool

CHART = Path(__file__).resolve().parents[3] / "deploy" / "helm" / "muster"
COMPONENTS = {"roster": 8101, "dispatch": 8102, "notify": 8103, "simulator": 8190}


@pytest.fixture(scope="module")
def helm() -> str:
    found = find_tool("helm", go_module="helm.sh/helm/v4/cmd/helm@v4.3.2", timeout=1500)
    if found is None:
        pytest.skip("helm cannot be installed here (no Go toolchain): .ci/run installs it with go install")
    return found


def render(helm: str, *values: str) -> list[dict[str, Any]]:
    args = [helm, "template", "muster", str(CHART), "--namespace", "muster"]
    for v in values:
        args += ["--set", v]
    r = subprocess.run(args, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in docs if d["kind"] == kind}


def test_chart_lints(helm: str) -> None:
    r = subprocess.run([helm, "lint", str(CHART), "--strict"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("values", [(), ("services.dispatch.replicas=4", "services.simulator.enabled=false",
                                          "otlpEndpoint=http://otel-collector:4318")])
def test_rendered_objects_are_valid_kubernetes(helm: str, values: tuple[str, ...]) -> None:
    docs = render(helm, *values)
    assert docs
    version = kubernetes_validate.latest_version()
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)  # raises ValidationError with the path


def test_services_probes_pdbs_and_secrets(helm: str) -> None:
    docs = render(helm)
    deployments = by_kind(docs, "Deployment")
    assert set(deployments) == set(COMPONENTS)
    assert not [d for d in docs if d["kind"] == "Secret"], "secrets are referenced, never rendered"
    for name, port in COMPONENTS.items():
        pod = deployments[name]["spec"]["template"]
        (container,) = pod["spec"]["containers"]
        assert container["ports"][0]["containerPort"] == port
        ready = "/sim/stats" if name == "simulator" else "/health/ready"
        live = "/sim/stats" if name == "simulator" else "/health/live"
        assert container["readinessProbe"]["httpGet"]["path"] == ready
        assert container["livenessProbe"]["httpGet"]["path"] == live
        assert {"requests", "limits"} <= set(container["resources"])
        refs = [e["secretRef"]["name"] for e in container["envFrom"] if "secretRef" in e]
        assert refs == [f"muster-{name}"]
        assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    assert set(by_kind(docs, "PodDisruptionBudget")) == {"roster", "dispatch", "notify"}
    config = by_kind(docs, "ConfigMap")
    assert config["dispatch"]["data"]["KAFKA_BOOTSTRAP_SERVERS"].startswith("kafka-0")
    assert config["notify"]["data"]["NOTIFY_ALIYUN_BASE_URL"] == "http://muster-simulator:8190"
    assert config["simulator"]["data"]["SIMULATOR_NOTIFY_URL"] == "http://muster-notify:8103"


def test_values_change_the_rendering(helm: str) -> None:
    docs = render(helm, "services.dispatch.replicas=4", "services.simulator.enabled=false",
                  "kafka.bootstrapServers=broker.example:9092", "otlpEndpoint=http://otel-collector:4318")
    deployments = by_kind(docs, "Deployment")
    assert deployments["dispatch"]["spec"]["replicas"] == 4 and "simulator" not in deployments
    config = by_kind(docs, "ConfigMap")
    assert config["notify"]["data"]["KAFKA_BOOTSTRAP_SERVERS"] == "broker.example:9092"
    assert "NOTIFY_ALIYUN_BASE_URL" not in config["notify"]["data"]
    assert config["dispatch"]["data"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"


def test_a_missing_secret_name_is_refused(helm: str) -> None:
    r = subprocess.run([helm, "template", "muster", str(CHART), "--set", "services.notify.existingSecret="],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "services.notify.existingSecret is required" in r.stderr
