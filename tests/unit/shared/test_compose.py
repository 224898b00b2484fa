"""docker-compose.yml cannot run here (no Docker engine): keep it in step with the settings classes."""

from pathlib import Path

import yaml

from shared.settings import DispatchSettings, NotifySettings, RosterSettings

ROOT = Path(__file__).resolve().parents[3]
SERVICES = {"roster": RosterSettings, "dispatch": DispatchSettings, "notify": NotifySettings}


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _required_env(settings_cls, prefix: str) -> set[str]:
    names = set()
    for name, field in settings_cls.model_fields.items():
        if field.is_required():
            names.add("KAFKA_BOOTSTRAP_SERVERS" if name == "kafka_bootstrap_servers" else f"{prefix}{name.upper()}")
    return names


def test_compose_has_official_images_with_health_checks():
    services = _compose()["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
    assert services["postgres"]["image"].startswith("postgres:15")
    for name in ("kafka", "postgres", *SERVICES):
        assert "healthcheck" in services[name], name


def test_compose_services_match_settings_classes():
    services = _compose()["services"]
    for name, settings_cls in SERVICES.items():
        svc = services[name]
        prefix = settings_cls.model_config["env_prefix"]
        env = svc["environment"]
        assert svc["command"] == ["serve", name]
        missing = _required_env(settings_cls, prefix) - set(env)
        assert not missing, f"{name} lacks required settings {missing}"
        unknown = {k for k in env if k != "KAFKA_BOOTSTRAP_SERVERS" and k.removeprefix(prefix).lower() not in settings_cls.model_fields}
        assert not unknown, f"{name} sets variables its settings class does not read: {unknown}"
        port = settings_cls.model_fields["http_port"].default
        assert int(env[f"{prefix}HTTP_PORT"]) == port
        assert f"{port}:{port}" in svc["ports"]
        assert {"kafka", "postgres"} <= set(svc["depends_on"])
        assert all(c["condition"] == "service_healthy" for c in svc["depends_on"].values())
        assert env[f"{prefix}DATABASE_URL"].endswith(f"/muster_{name}")
