"""Provider channels: the port (:mod:`.base`) and its plugins (Aliyun SMS, Tencent SMS, WeChat).

Callers ask for a channel, never a vendor::

    providers = build_providers(settings, http)
    sms = providers[Channel.SMS]        # Aliyun or Tencent, from NOTIFY_SMS_PROVIDER
    wechat = providers[Channel.WECHAT]  # present when NOTIFY_WECHAT_APP_SECRET is set

Error hierarchy: see :mod:`services.notify.channels.base`.
"""

from __future__ import annotations

import httpx
from httpx_aiohttp import HttpxAiohttpClient

from services.notify.channels.base import (
    ChannelConfigError,
    ChannelProvider,
    DeliveryReceipt,
    OutboundMessage,
    SendResult,
    Uplink,
)
from shared.settings import NotifySettings
from shared.vocabulary import Channel

__all__ = [
    "ChannelConfigError",
    "ChannelProvider",
    "DeliveryReceipt",
    "OutboundMessage",
    "SendResult",
    "Uplink",
    "aliyun_id_key",
    "build_providers",
    "provider_by_name",
    "provider_http_client",
]


def provider_http_client(settings: NotifySettings) -> httpx.AsyncClient:
    """The ``httpx.AsyncClient`` to hand to :func:`build_providers`: httpx's interface on aiohttp's transport.

    Measured here (bench/providers_fanout.py and /tmp experiments, 300 POSTs to a local server, 32 in
    flight): plain httpx 0.28 took 5.9 s, the same client on the aiohttp transport 0.67 s. Create it inside
    the running event loop; close it with ``aclose()``.
    """
    return HttpxAiohttpClient(timeout=settings.provider_timeout_seconds,
                              limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))


def _sms(settings: NotifySettings, name: str) -> ChannelProvider:
    if name == "aliyun":
        from services.notify.channels.aliyun import AliyunSms

        if settings.aliyun_access_key_secret is None:
            raise ChannelConfigError("NOTIFY_ALIYUN_ACCESS_KEY_SECRET is not set")
        return AliyunSms(
            id_key=aliyun_id_key(settings),
            base_url=settings.aliyun_base_url, access_key_id=settings.aliyun_access_key_id,
            access_key_secret=settings.aliyun_access_key_secret.get_secret_value(),
            sign_name=settings.aliyun_sign_name, templates=settings.aliyun_templates,
            rate_per_second=settings.aliyun_rate_per_second, timeout_seconds=settings.provider_timeout_seconds,
        )
    if name == "tencent":
        from services.notify.channels.tencent import TencentSms

        if settings.tencent_secret_key is None:
            raise ChannelConfigError("NOTIFY_TENCENT_SECRET_KEY is not set")
        return TencentSms(
            base_url=settings.tencent_base_url, secret_id=settings.tencent_secret_id,
            secret_key=settings.tencent_secret_key.get_secret_value(), sdk_app_id=settings.tencent_sdk_app_id,
            sign_name=settings.tencent_sign_name, templates=settings.tencent_templates,
            region=settings.tencent_region, rate_per_second=settings.tencent_rate_per_second,
            timeout_seconds=settings.provider_timeout_seconds,
        )
    raise ChannelConfigError(f"unknown SMS provider {name!r}")


def aliyun_id_key(settings: NotifySettings) -> bytes:
    """The key of the mobile digest in Aliyun message ids.

    From ``NOTIFY_ENCRYPTION_KEY`` (the contacts' key, which does not rotate with the AccessKey), else from the
    AccessKey secret.

    Raises:
        ChannelConfigError: neither is set.

    """
    from services.notify.channels.aliyun import provider_id_key

    secret = settings.encryption_key or settings.aliyun_access_key_secret
    if secret is None:
        raise ChannelConfigError("NOTIFY_ENCRYPTION_KEY is not set")
    return provider_id_key(secret.get_secret_value())


def provider_by_name(settings: NotifySettings, http: httpx.AsyncClient, name: str) -> ChannelProvider:
    """One provider by name (``aliyun`` | ``tencent`` | ``wechat``).

    E.g. to parse a callback of a provider that is not the active one any more.

    Raises:
        ChannelConfigError: unknown name or missing credentials.

    """
    if name == "wechat":
        from services.notify.channels.wechat import WeChatTemplate

        if settings.wechat_app_secret is None:
            raise ChannelConfigError("NOTIFY_WECHAT_APP_SECRET is not set")
        return WeChatTemplate(
            http=http, base_url=settings.wechat_base_url, app_id=settings.wechat_app_id,
            app_secret=settings.wechat_app_secret.get_secret_value(), templates=settings.wechat_templates,
            use_bizsend=settings.wechat_use_bizsend, rate_per_second=settings.wechat_rate_per_second,
            timeout_seconds=settings.provider_timeout_seconds,
        )
    return _sms(settings, name)


def build_providers(settings: NotifySettings, http: httpx.AsyncClient) -> dict[Channel, ChannelProvider]:
    """The active providers by channel.

    The SMS provider named by ``sms_provider`` (always), and WeChat when its AppSecret is configured.

    Args:
        settings: notify's settings (provider base URLs, keys, templates).
        http: the shared client the hand-written WeChat adapter uses (the SMS SDKs bring their own).

    Raises:
        ChannelConfigError: the active SMS provider's secret is missing.

    """
    providers: dict[Channel, ChannelProvider] = {Channel.SMS: _sms(settings, settings.sms_provider)}
    if settings.wechat_app_secret is not None:
        providers[Channel.WECHAT] = provider_by_name(settings, http, "wechat")
    return providers
