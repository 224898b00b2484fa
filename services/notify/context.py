"""What notify's routes and tasks share at run time (built by the composition root, :mod:`services.notify.app`)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from services.notify.adapters.crypto import ContactCipher
from services.notify.adapters.reply_links import ReplyLinks
from services.notify.channels.base import ChannelProvider
from shared.settings import NotifySettings
from shared.vocabulary import Channel

__all__ = ["NotifyContext"]


@dataclass
class NotifyContext:
    """Notify's adapters, built at start-up.

    Attributes:
        settings: notify's settings.
        pool: the asyncpg pool.
        cipher: contact encryption and look-up hashes.
        links: reply-page links (None when ``NOTIFY_REPLY_LINK_SECRET`` is not set).
        providers: active providers by channel.
        http: the shared HTTP client (closed at stop).
        parsers: every configured provider by name, for parsing callbacks (the inactive SMS provider too).
        wechat_receipt_group: the group commit of WeChat receipt pushes (a
            :class:`shared.groupcommit.GroupCommit`, made by the callback route on first use).
        nonces_pruned_below: Unix seconds; WeChat callback nonces older than this have been pruned (a push
            prunes when the freshness window's floor has moved past it, so at most once a second).

    """

    settings: NotifySettings
    pool: asyncpg.Pool
    cipher: ContactCipher
    links: ReplyLinks | None
    providers: dict[Channel, ChannelProvider]
    http: httpx.AsyncClient | None = None
    parsers: dict[str, ChannelProvider] = field(default_factory=dict)
    allow: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(default_factory=list)
    wechat_allow: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(default_factory=list)
    nonces_pruned_below: int = 0
    wechat_receipt_group: Any = None

    def __post_init__(self) -> None:
        self.allow = [ipaddress.ip_network(n, strict=False) for n in self.settings.callback_allow_ips]
        self.wechat_allow = [ipaddress.ip_network(n, strict=False) for n in self.settings.wechat_callback_allow_ips]

    def provider(self, name: str) -> ChannelProvider | None:
        """The provider called ``name`` (``aliyun`` | ``tencent`` | ``wechat``) to parse its callbacks, if configured."""
        for p in self.providers.values():
            if p.name == name:
                return p
        return self.parsers.get(name)

    def allowed(self, host: str | None, *, wechat: bool = False) -> bool:
        """``host`` (the callback's peer address) is in the allow-list; False for None or a malformed address.

        The list is ``callback_allow_ips`` (Aliyun, Tencent), or ``wechat_callback_allow_ips`` when ``wechat``.
        """
        if host is None:
            return False
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(addr in net for net in (self.wechat_allow if wechat else self.allow))
