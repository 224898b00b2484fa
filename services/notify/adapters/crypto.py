"""Contact data at rest: authenticated encryption and keyed hashes for look-ups.

PIPL Art. 51 asks for encryption and de-identification (see ``/work/shared/reference/providers.md`` §4):
mobiles and openids are stored only encrypted, plus an HMAC-SHA256 of the normalised value so that the
sender of an SMS reply can be found without decrypting every row. One secret, ``NOTIFY_ENCRYPTION_KEY``
(a Fernet key: 32 bytes, URL-safe base64), serves everything through HKDF-SHA256:

- values are sealed with AES-256-GCM (``cryptography``'s ``AESGCM``; key info ``muster.notify.contact``,
  a random 96-bit nonce per value, NIST SP 800-38D) as ``0x02 ‖ nonce ‖ ciphertext ‖ tag``. Fernet
  (AES-128-CBC + HMAC-SHA256) was used first and is still read: a stored Fernet token (it starts with
  ``gAAAAA``) decrypts as before. The sender decrypts a contact per message, and a Fernet decryption
  costs about 30 times an AES-GCM one (87 µs against 3 µs here, see the fan-out benchmark, issue #7);
- look-up hashes are HMAC-SHA256 under the key with info ``muster.notify.lookup``.

Errors: :class:`cryptography.fernet.InvalidToken` when a value was sealed under another key or altered;
``ValueError`` for a key that is not a Fernet key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import unicodedata

from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["ContactCipher", "normalise_mobile"]

_AEAD_VERSION = b"\x02"  # first byte of an AES-GCM sealed value; a Fernet token starts with "g" (0x80 in base64)
_NONCE = 12


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
        self._fernet = Fernet(raw)  # reads values stored before AES-GCM
        self._aead = AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                                 info=b"muster.notify.contact").derive(raw))
        self._lookup_key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"muster.notify.lookup"
        ).derive(raw)

    def encrypt(self, value: str | None) -> bytes | None:
        """``value`` sealed with AES-256-GCM: ``0x02 ‖ 12-byte nonce ‖ ciphertext ‖ 16-byte tag`` (None stays None)."""
        if value is None:
            return None
        nonce = os.urandom(_NONCE)
        return _AEAD_VERSION + nonce + self._aead.encrypt(nonce, value.encode(), _AEAD_VERSION)

    def decrypt(self, token: bytes | None) -> str | None:
        """The plain value of a sealed value or of an older Fernet token (None stays None).

        Raises:
            InvalidToken: sealed under another key, or altered.

        """
        if token is None:
            return None
        data = bytes(token)
        if data[:1] != _AEAD_VERSION:
            return self._fernet.decrypt(data).decode()
        try:
            return self._aead.decrypt(data[1:1 + _NONCE], data[1 + _NONCE:], _AEAD_VERSION).decode()
        except InvalidTag as exc:
            raise InvalidToken from exc

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
