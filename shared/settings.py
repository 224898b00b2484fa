"""Settings: one pydantic-settings class per service, each with its own environment prefix.

Values come from the environment, then from the stack's env file (``stack.env`` in the stack's
state directory, written by ``muster stack up``; override its path with ``MUSTER_ENV_FILE``).
Secrets are :class:`pydantic.SecretStr` and have no defaults.

=============  ==================  =========================================
service        prefix              HTTP port (default)
=============  ==================  =========================================
roster         ``ROSTER_``         8101
dispatch       ``DISPATCH_``       8102
notify         ``NOTIFY_``         8103
=============  ==================  =========================================

``KAFKA_BOOTSTRAP_SERVERS`` is shared (a prefixed name wins when both are set).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import AliasChoices, Field, PostgresDsn, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DispatchSettings", "NotifySettings", "RosterSettings", "ServiceSettings", "env_file_path"]


def env_file_path() -> Path:
    """The stack's env file: ``MUSTER_ENV_FILE``, else ``stack.env`` in the stack's state directory."""
    if env := os.environ.get("MUSTER_ENV_FILE"):
        return Path(env)
    from deploy.stack import env_file

    return env_file()


def _kafka_alias(prefix: str) -> AliasChoices:
    return AliasChoices(f"{prefix}KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS")


class ServiceSettings(BaseSettings):
    """What every service needs: Kafka, its own database, its HTTP address."""

    model_config = SettingsConfigDict(extra="ignore", env_file_encoding="utf-8")

    kafka_bootstrap_servers: str = Field(description="host:port[,host:port] of the Kafka brokers.")
    database_url: PostgresDsn = Field(description="postgresql://user:password@host:port/db of this service.")
    http_host: str = "127.0.0.1"
    http_port: int
    log_level: str = "INFO"
    outbox_batch_size: int = Field(default=500, ge=1, description="Rows the relay publishes per round.")
    consumer_max_records: int = Field(default=500, ge=1, description="Events a consumer takes per batch.")

    @property
    def dsn(self) -> str:
        """The database URL as a plain string, for asyncpg."""
        return str(self.database_url)


class RosterSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ROSTER_", env_file=env_file_path(), extra="ignore")

    kafka_bootstrap_servers: str = Field(validation_alias=_kafka_alias("ROSTER_"))
    http_port: int = 8101


class DispatchSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DISPATCH_", env_file=env_file_path(), extra="ignore")

    kafka_bootstrap_servers: str = Field(validation_alias=_kafka_alias("DISPATCH_"))
    http_port: int = 8102
    tick_seconds: float = Field(default=1.0, gt=0, description="How often due deadlines are looked for, seconds.")


class NotifySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFY_", env_file=env_file_path(), extra="ignore")

    kafka_bootstrap_servers: str = Field(validation_alias=_kafka_alias("NOTIFY_"))
    http_port: int = 8103
    encryption_key: SecretStr | None = Field(
        default=None, description="Fernet key for phone numbers and openids at rest (required to serve)."
    )
