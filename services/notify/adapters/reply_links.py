"""Signed, expiring links to the WeChat reply page (``GET/POST /r/{token}``).

The token is an ``itsdangerous.URLSafeTimedSerializer`` signature (HMAC-SHA1 over the payload and a
timestamp, salt ``muster.notify.reply-page``) of the message id, under ``NOTIFY_REPLY_LINK_SECRET``.
It carries no personal data: only the message id.

Errors: :class:`ReplyLinkInvalid` for a forged, altered or expired token.
"""

from __future__ import annotations

from uuid import UUID

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

__all__ = ["ReplyLinkExpired", "ReplyLinkInvalid", "ReplyLinks"]


class ReplyLinkInvalid(ValueError):
    """The token is not one of ours (forged or altered)."""


class ReplyLinkExpired(ReplyLinkInvalid):
    """The token is ours but older than its maximum age."""


class ReplyLinks:
    """Makes and checks reply-page tokens.

    Args:
        secret: the signing secret.
        base_url: notify's public base URL, e.g. ``https://notify.example.org`` (no trailing slash).
        max_age_seconds: how long a link stays valid, seconds.

    """

    def __init__(self, secret: str, base_url: str, *, max_age_seconds: float) -> None:
        self._s = URLSafeTimedSerializer(secret, salt="muster.notify.reply-page")
        self._base = base_url.rstrip("/")
        self._max_age = max_age_seconds

    def token(self, message_id: UUID) -> str:
        """The signed token of ``message_id``."""
        return str(self._s.dumps(message_id.hex))

    def url(self, message_id: UUID) -> str:
        """The reply page's URL for ``message_id``."""
        return f"{self._base}/r/{self.token(message_id)}"

    def message_id(self, token: str) -> UUID:
        """The message id inside ``token``.

        Raises:
            ReplyLinkExpired: the token is older than ``max_age_seconds``.
            ReplyLinkInvalid: the token is forged or altered.

        """
        try:
            raw = self._s.loads(token, max_age=int(self._max_age))
        except SignatureExpired as exc:
            raise ReplyLinkExpired("reply link expired") from exc
        except BadSignature as exc:
            raise ReplyLinkInvalid("reply link not valid") from exc
        try:
            return UUID(hex=str(raw))
        except ValueError as exc:
            raise ReplyLinkInvalid("reply link not valid") from exc
