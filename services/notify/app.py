"""Composition root of the notify service: settings, adapters, routers, consumers, background tasks.

Wiring (see ``services/notify/handlers`` and :mod:`services.notify.sender`)::

    roster.volunteer-contact.v1 ──▶ notify.contacts  ──▶ contacts (encrypted)
    dispatch.callout.v1         ──▶ notify.callouts  ──▶ messages (pending, one per call-out and kind)
    sender (background)         ──▶ providers (channels/) ──▶ outbox: MessageSent / MessageFailed
    POST /callbacks/...         ──▶ receipts, replies ──▶ outbox: MessageDelivered / MessageFailed / ReplyReceived
    GET|POST /r/{token}         ──▶ WeChat reply page ──▶ outbox: ReplyReceived

Errors (a small hierarchy, by where they surface)::

    ChannelConfigError (ValueError)  a provider is selected but its secret is missing → start-up fails
    ReplyLinkInvalid (ValueError)    forged/altered reply link → 404; ReplyLinkExpired → 410
    ValueError from parse_*          malformed callback → 400, nothing changed
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import httpx
from fastapi import FastAPI

from services.notify.adapters.crypto import ContactCipher
from services.notify.adapters.reply_links import ReplyLinks
from services.notify.channels import build_providers, provider_by_name, provider_http_client
from services.notify.channels.base import ChannelConfigError, ChannelProvider
from services.notify.context import NotifyContext
from services.notify.handlers import callbacks, reply_page
from services.notify.handlers.consumers import CallOutMessages, ContactProjection, close_incident_callouts
from services.notify.sender import Sender
from shared.consumer import IdempotentConsumer
from shared.metrics import NOTIFY_WAITING
from shared.service import Runtime, ServiceSpec, build_app
from shared.settings import NotifySettings
from shared.topics import CALLOUT, INCIDENT, ROSTER_CONTACT, TopicSpec
from shared.vocabulary import Channel

#: Bytes a provider callback's body may have (413 beyond, before it is read or parsed).
CALLBACK_BODY_LIMIT = 512 * 1024

__all__ = ["create_app"]

ProvidersFactory = Callable[[NotifySettings, httpx.AsyncClient], dict[Channel, ChannelProvider]]


def _cipher(settings: NotifySettings) -> ContactCipher:
    if settings.encryption_key is None:
        raise ValueError("NOTIFY_ENCRYPTION_KEY is not set: notify keeps phone numbers only encrypted")
    return ContactCipher(settings.encryption_key.get_secret_value())


def create_app(
    settings: NotifySettings | None = None,
    *,
    callout_topic: TopicSpec = CALLOUT,
    contact_topic: TopicSpec = ROSTER_CONTACT,
    incident_topic: TopicSpec = INCIDENT,
    consumer_prefix: str = "notify",
    providers_factory: ProvidersFactory = build_providers,
    migrate: bool = True,
) -> FastAPI:
    """Build the notify service's app (connects nothing until started).

    Args:
        settings: notify's settings; read from the environment / stack.env when None.
        callout_topic: the call-out topic consumed (tests pass their own).
        contact_topic: the contact topic consumed (tests pass their own).
        incident_topic: the incident topic consumed for closures (tests pass their own).
        consumer_prefix: prefix of the consumer (group) names ``<prefix>.callouts`` / ``<prefix>.contacts``.
        providers_factory: builds the providers (default: :func:`services.notify.channels.build_providers`).
        migrate: run the migrations at start.

    Raises:
        ValueError: ``NOTIFY_ENCRYPTION_KEY`` is not set.

    """
    settings = settings or NotifySettings()
    cipher = _cipher(settings)

    def contacts(runtime: Runtime) -> IdempotentConsumer:
        projection = ContactProjection(cipher)
        return IdempotentConsumer(
            name=f"{consumer_prefix}.contacts", topic=contact_topic, handler=projection,
            batch_handler=projection.apply_batch, pool=runtime.require_pool, dead_letters=_unwired,
        )

    def callouts(runtime: Runtime) -> IdempotentConsumer:
        messages = CallOutMessages()
        return IdempotentConsumer(
            name=f"{consumer_prefix}.callouts", topic=callout_topic, handler=messages,
            batch_handler=messages.apply_batch, pool=runtime.require_pool, dead_letters=_unwired,
        )

    def closures(runtime: Runtime) -> IdempotentConsumer:
        return IdempotentConsumer(
            name=f"{consumer_prefix}.incidents", topic=incident_topic, handler=close_incident_callouts,
            pool=runtime.require_pool, dead_letters=_unwired,
        )

    async def on_start(runtime: Runtime) -> None:
        # httpx's interface on aiohttp's transport: a WeChat send costs a fifth of plain httpx's CPU.
        http = provider_http_client(settings)
        providers = providers_factory(settings, http)
        # Callbacks of every configured provider are understood, the inactive SMS one included (its late
        # receipts and replies still arrive after a switch).
        parsers = {p.name: p for p in providers.values()}
        for name in ("aliyun", "tencent", "wechat"):
            if name not in parsers:
                with contextlib.suppress(ChannelConfigError):
                    parsers[name] = provider_by_name(settings, http, name)
        links = None
        if settings.reply_link_secret is not None:
            links = ReplyLinks(settings.reply_link_secret.get_secret_value(), settings.public_base_url,
                               max_age_seconds=settings.reply_link_max_age_seconds)
        pool = runtime.require_pool()
        runtime.extras["notify"] = NotifyContext(settings, pool, cipher, links, providers, http, parsers=parsers)
        runtime.extras["sender"] = Sender(pool, providers, settings, cipher, links)

    async def on_stop(runtime: Runtime) -> None:
        ctx: NotifyContext | None = runtime.extras.get("notify")
        if ctx is not None and ctx.wechat_receipt_group is not None:
            ctx.wechat_receipt_group.cancel()  # pushes not committed are answered 500 and retried by WeChat
        if ctx is not None and ctx.http is not None:
            await ctx.http.aclose()

    async def sender(runtime: Runtime) -> None:
        await runtime.extras["sender"].run()

    spec = ServiceSpec(
        name="notify",
        title="muster notify",
        routers=(callbacks.router, reply_page.router),
        consumers=(contacts, callouts, closures),
        background=(sender,),
        on_start=on_start,
        on_stop=on_stop,
        pool_max_size=20,
        scrape=(_messages_waiting,),
        # A provider's push is a batch of receipts or replies (Aliyun: at most 100 a request, ~300 bytes each);
        # a reply page's form is a code and a choice.
        body_limits={"/callbacks": CALLBACK_BODY_LIMIT, "/r/": 16 * 1024},
    )
    return build_app(spec, settings, migrate=migrate)


async def _messages_waiting(runtime: Runtime) -> None:
    """Set ``muster_notify_messages_waiting{status}``: messages pending or sending (their partial indexes)."""
    async with runtime.require_pool().acquire() as conn:
        for status in ("pending", "sending"):
            NOTIFY_WAITING.labels(status).set(
                await conn.fetchval("SELECT count(*) FROM messages WHERE status = $1", status))


async def _unwired(topic: str, value: bytes | None, key: bytes | None, headers: dict[str, str]) -> None:
    raise RuntimeError("dead-letter sink not wired")  # build_app replaces it with the broker's publisher
