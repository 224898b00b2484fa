"""Contact data at rest: Fernet encryption and keyed hashes for look-ups.

PIPL Art. 51 asks for encryption and de-identification (see ``/work/shared/reference/providers.md`` §4):
mobiles and openids are stored only encrypted with Fernet (AES-128-CBC + HMAC-SHA256, from
``cryptography``) under ``NOTIFY_ENCRYPTION_KEY``, plus an HMAC-SHA256 of the normalised value so
that the sender of an SMS reply can be found without decrypting every row. The HMAC key is derived
from the encryption key with HKDF-SHA256 (info ``muster.notify.lookup``), so one secret serves both.

Errors: :class:`cryptography.fernet.InvalidToken` when a value was encrypted under another key;
``ValueError`` for a key that is not a Fernet key.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["ContactCipher", "normalise_mobile"]


def normalise_mobile(mobile: str) -> str:
    """A mainland mobile in any writing (``138 1234 1234``, ``8613812341234``, full width) → ``+8613812341234``.

    Numbers that are not mainland mobiles are returned as ``+`` and their digits.
    """
    digits = "".join(c for c in unicodedata.normalize("NFKC", mobile) if c.isdigit())
    if digits.startswith("0086"):
        digits = digits[4:]
    elif len(digits) == 13 and digits.startswith("86"):
        digits = digits[2:]
    if len(digits) == 11 and digits.startswith("1"):
        return "+86" + digits
    return "+" + digits


class ContactCipher:
    """Encrypts, decrypts and hashes mobiles and openids.

    Args:
        key: a Fernet key (32 bytes, URL-safe base64).

    """

    def __init__(self, key: str | bytes) -> None:
        raw = key.encode() if isinstance(key, str) else key
        self._fernet = Fernet(raw)
        self._lookup_key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"muster.notify.lookup"
        ).derive(raw)

    def encrypt(self, value: str | None) -> bytes | None:
        """Fernet token of ``value`` (None stays None)."""
        return None if value is None else self._fernet.encrypt(value.encode())

    def decrypt(self, token: bytes | None) -> str | None:
        """The plain value of a Fernet token (None stays None)."""
        return None if token is None else self._fernet.decrypt(bytes(token)).decode()

    def mobile_hash(self, mobile: str | None) -> bytes | None:
        """HMAC-SHA256 of the normalised E.164 mobile (see :func:`normalise_mobile`)."""
        if mobile is None:
            return None
        return hmac.new(self._lookup_key, b"mobile:" + normalise_mobile(mobile).encode(), hashlib.sha256).digest()

    def openid_hash(self, openid: str | None) -> bytes | None:
        """HMAC-SHA256 of the openid."""
        if openid is None:
            return None
        return hmac.new(self._lookup_key, b"openid:" + openid.strip().encode(), hashlib.sha256).digest()
