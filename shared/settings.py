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
from typing import Literal

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
    # 2,000 rather than 500: a batch costs a few round trips and event-loop turns whatever its size, and in a
    # 10,000 fan-out notify consumed the call-outs in 6.8 s instead of 19.9 s (bench.fanout_stages). A batch
    # is only as large as what is waiting, so replies at low rates still go one or a few at a time.
    outbox_batch_size: int = Field(default=2000, ge=1, description="Rows the relay publishes per round.")
    consumer_max_records: int = Field(default=2000, ge=1, description="Events a consumer takes per batch.")

    @property
    def dsn(self) -> str:
        """The database URL as a plain string, for asyncpg."""
        return str(self.database_url)


class RosterSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ROSTER_", env_file=env_file_path(), extra="ignore")

    kafka_bootstrap_servers: str = Field(validation_alias=_kafka_alias("ROSTER_"))
    http_port: int = 8101
    divisions_file: Path | None = Field(
        default=None, description="Divisions CSV loaded at start when the units table is empty (default: bundled Shaoxing)."
    )
    admin_token: SecretStr | None = Field(
        default=None,
        description="Bearer token of the roster HTTP API (``Authorization: Bearer <token>`` on every route but "
        "/health/*); at least 16 characters; required to serve (the CLI, which talks to the database, does not need it).",
    )


class DispatchSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DISPATCH_", env_file=env_file_path(), extra="ignore")

    kafka_bootstrap_servers: str = Field(validation_alias=_kafka_alias("DISPATCH_"))
    http_port: int = 8102
    tick_seconds: float = Field(default=1.0, gt=0, description="How often due deadlines are looked for, seconds.")
    consumer_prefix: str = Field(
        default="dispatch", description="Prefix of the consumers' names and group ids (tests use their own)."
    )
    star_levels: str | None = Field(
        default=None, description="Star-rating levels as JSON, e.g. [{\"stars\": 1, \"min_hours\": 100, "
        "\"min_deployments\": 2, \"min_drills\": 1}, …]; default the national 100/300/600/1000/1500 hours "
        "(services.dispatch.domain.stars).",
    )


class NotifySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFY_", env_file=env_file_path(), extra="ignore")

    kafka_bootstrap_servers: str = Field(validation_alias=_kafka_alias("NOTIFY_"))
    http_port: int = 8103
    encryption_key: SecretStr | None = Field(
        default=None, description="Key for phone numbers and openids at rest: a Fernet key (32 bytes, URL-safe base64), "
        "from which the AES-GCM and look-up keys are derived (required to serve)."
    )

    # --- provider adapters (services/notify/channels) -------------------------------------------------
    sms_provider: Literal["aliyun", "tencent"] = Field(
        default="aliyun", description="The active SMS channel's provider."
    )
    provider_timeout_seconds: float = Field(default=5.0, gt=0, description="HTTP timeout towards providers, s.")
    aliyun_base_url: str = Field(
        default="http://127.0.0.1:8190", description="Dysmsapi base URL (real: https://dysmsapi.aliyuncs.com)."
    )
    aliyun_access_key_id: str = Field(default="muster-local", description="Aliyun AccessKey id (not secret).")
    aliyun_access_key_secret: SecretStr | None = Field(default=None, description="Aliyun AccessKey secret.")
    aliyun_sign_name: str = Field(default="红十字志愿者", description="Approved SMS signature (签名).")
    aliyun_templates: dict[str, str] = Field(
        default={"callout": "SMS_900001", "assigned": "SMS_900002", "stand_down": "SMS_900003",
                 "reminder": "SMS_900004", "auto_answer": "SMS_900005",
                 "broadcast": "SMS_900006", "cardiac_cpr": "SMS_900007", "cardiac_aed": "SMS_900008"},
        description="Approved template code per message kind (JSON object in the environment).",
    )
    aliyun_rate_per_second: float = Field(default=100.0, gt=0, description="Requests/s towards Dysmsapi.")
    tencent_base_url: str = Field(
        default="http://127.0.0.1:8190", description="SMS API 3.0 base URL (real: https://sms.tencentcloudapi.com)."
    )
    tencent_secret_id: str = Field(default="AKIDmusterlocal", description="Tencent SecretId (not secret).")
    tencent_secret_key: SecretStr | None = Field(default=None, description="Tencent SecretKey.")
    tencent_region: str = "ap-guangzhou"
    tencent_sdk_app_id: str = Field(default="1400006666", description="SmsSdkAppId.")
    tencent_sign_name: str = Field(default="红十字志愿者", description="Approved SMS signature content.")
    tencent_templates: dict[str, str] = Field(
        default={"callout": "1900001", "assigned": "1900002", "stand_down": "1900003", "reminder": "1900004",
                 "auto_answer": "1900005", "broadcast": "1900006", "cardiac_cpr": "1900007",
                 "cardiac_aed": "1900008"},
        description="Approved TemplateId per message kind (JSON object in the environment).",
    )
    tencent_rate_per_second: float = Field(default=100.0, gt=0, description="Requests/s towards SendSms.")
    wechat_base_url: str = Field(
        default="http://127.0.0.1:8190", description="WeChat API base URL (real: https://api.weixin.qq.com)."
    )
    wechat_app_id: str = Field(default="wx0000muster0local", description="Official Account AppID (not secret).")
    wechat_app_secret: SecretStr | None = Field(default=None, description="Official Account AppSecret.")
    wechat_templates: dict[str, str] = Field(
        default={"callout": "TPL_callout", "assigned": "TPL_assigned", "stand_down": "TPL_stand_down",
                 "reminder": "TPL_reminder", "auto_answer": "TPL_auto_answer",
                 "broadcast": "TPL_broadcast", "cardiac_cpr": "TPL_cardiac_cpr", "cardiac_aed": "TPL_cardiac_aed"},
        description="Template message template_id per message kind (JSON object in the environment).",
    )
    wechat_use_bizsend: bool = Field(
        default=False, description="Send subscribe notices (message/subscribe/bizsend) instead of template messages."
    )
    wechat_rate_per_second: float = Field(default=200.0, gt=0, description="Requests/s towards WeChat.")

    # --- pipeline (services/notify: sender, callbacks, reply page) ------------------------------------
    callback_token: SecretStr | None = Field(
        default=None,
        description="Secret path token of the provider callbacks (/callbacks/aliyun/{token}/...), also the "
        "WeChat server Token of the callback signature (required to serve callbacks).",
    )
    callback_allow_ips: list[str] = Field(
        default=["127.0.0.1/32"], description="Networks allowed to post Aliyun/Tencent callbacks (CIDR, JSON list)."
    )
    wechat_callback_allow_ips: list[str] = Field(
        default=["127.0.0.1/32"],
        description="Networks allowed to post WeChat callbacks (CIDR, JSON list; real: WeChat's callback IPs, "
        "cgi-bin/getcallbackip).",
    )
    wechat_callback_max_skew_seconds: float = Field(
        default=300.0, gt=0,
        description="Oldest (and newest) WeChat callback timestamp accepted, seconds; within it a signed "
        "(timestamp, nonce) pair is accepted once.",
    )
    reply_link_secret: SecretStr | None = Field(
        default=None, description="Signing secret of the WeChat reply-page links (required to send WeChat)."
    )
    reply_link_max_age_seconds: float = Field(default=86400.0, gt=0, description="Reply links expire after, s.")
    public_base_url: str = Field(
        default="http://127.0.0.1:8103", description="Notify's address as phones reach it (reply-page links)."
    )
    reply_window_hours: float = Field(
        default=24.0, gt=0, description="A call-out can be answered by SMS for this long after it was sent, h."
    )
    send_claim_size: int = Field(default=1000, ge=1, description="Messages the sender claims per round.")
    send_concurrency: int = Field(default=8, ge=1, description="Requests in flight per provider.")
    send_poll_seconds: float = Field(default=0.5, gt=0, description="Sender's safety poll when not woken, s.")
    retry_base_seconds: float = Field(default=2.0, gt=0, description="First retry delay; doubles per try, s.")
    retry_max_seconds: float = Field(default=300.0, gt=0, description="Longest retry delay, s.")
    max_attempts: int = Field(default=8, ge=1, description="Tries per message and channel before it fails.")
    sending_timeout_seconds: float = Field(
        default=60.0, gt=0, description="A message 'sending' for longer is in doubt and resolved with query(), s."
    )
    in_doubt_resend_after_seconds: float = Field(
        default=300.0, gt=0,
        description="When a provider cannot tell whether it took an in-doubt message, resend after this, s.",
    )
    wechat_receipt_timeout_seconds: float = Field(
        default=60.0, gt=0, description="No WeChat delivery receipt within this → fall back to SMS, s."
    )
