"""Encryption at rest, look-up hashes and reply-page links (pure, no I/O)."""

from __future__ import annotations

import uuid

import pytest
from cryptography.fernet import Fernet, InvalidToken

from services.notify.adapters.crypto import ContactCipher, normalise_mobile
from services.notify.adapters.reply_links import ReplyLinkExpired, ReplyLinkInvalid, ReplyLinks


@pytest.mark.parametrize(
    "writing",
    ["+8613812341234", "13812341234", "8613812341234", "008613812341234", "+86 138 1234 1234", "１３８１２３４１２３４",
     "138-1234-1234"],
)
def test_mobile_writings_normalise_and_hash_alike(writing: str) -> None:
    cipher = ContactCipher(Fernet.generate_key())
    assert normalise_mobile(writing) == "+8613812341234"
    assert cipher.mobile_hash(writing) == cipher.mobile_hash("+8613812341234")


def test_encryption_round_trip_and_no_plaintext() -> None:
    cipher = ContactCipher(Fernet.generate_key())
    token = cipher.encrypt("+8613812341234")
    assert token is not None and b"13812341234" not in token
    assert cipher.decrypt(token) == "+8613812341234"
    assert cipher.encrypt(None) is None and cipher.decrypt(None) is None


def test_hashes_depend_on_the_key_and_the_kind() -> None:
    a, b = ContactCipher(Fernet.generate_key()), ContactCipher(Fernet.generate_key())
    assert a.mobile_hash("+8613812341234") != b.mobile_hash("+8613812341234")
    assert a.openid_hash("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o") != a.mobile_hash("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o")


def test_another_key_cannot_decrypt() -> None:
    token = ContactCipher(Fernet.generate_key()).encrypt("+8613812341234")
    with pytest.raises(InvalidToken):
        ContactCipher(Fernet.generate_key()).decrypt(token)


def test_an_altered_value_is_refused() -> None:
    cipher = ContactCipher(Fernet.generate_key())
    token = bytearray(cipher.encrypt("+8613812341234") or b"")
    token[-1] ^= 1
    with pytest.raises(InvalidToken):
        cipher.decrypt(bytes(token))


def test_values_stored_as_fernet_tokens_still_decrypt() -> None:
    """Contacts projected before the switch to AES-GCM were stored as Fernet tokens under the same key."""
    key = Fernet.generate_key()
    old = Fernet(key).encrypt(b"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o")
    cipher = ContactCipher(key)
    assert cipher.decrypt(old) == "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
    new = cipher.encrypt("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o")
    assert new is not None and new[:1] == b"\x02" and new != old
    assert cipher.encrypt("+8613812341234") != cipher.encrypt("+8613812341234")  # a fresh nonce each time


def test_reply_link_round_trip_and_forgery() -> None:
    links = ReplyLinks("secret", "https://notify.example.org/", max_age_seconds=3600)
    mid = uuid.uuid4()
    url = links.url(mid)
    assert url.startswith("https://notify.example.org/r/")
    token = url.rsplit("/", 1)[1]
    assert links.message_id(token) == mid
    with pytest.raises(ReplyLinkInvalid):
        links.message_id(token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1])
    with pytest.raises(ReplyLinkInvalid):
        ReplyLinks("other-secret", "https://x", max_age_seconds=3600).message_id(token)


def test_reply_link_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    import itsdangerous.timed as timed

    links = ReplyLinks("secret", "https://x", max_age_seconds=60)
    token = links.token(uuid.uuid4())
    real = timed.time.time
    monkeypatch.setattr(timed.time, "time", lambda: real() + 120)
    with pytest.raises(ReplyLinkExpired):
        links.message_id(token)


def test_callback_allow_list() -> None:
    from typing import Any, cast

    from services.notify.context import NotifyContext
    from shared.settings import NotifySettings

    settings = NotifySettings(kafka_bootstrap_servers="x:1", database_url="postgresql://u:p@h:1/d",
                              callback_allow_ips=["127.0.0.1/32", "10.8.0.0/16"])
    ctx = NotifyContext(settings, cast(Any, None), ContactCipher(Fernet.generate_key()), None, {})
    assert ctx.allowed("127.0.0.1") and ctx.allowed("10.8.3.4")
    assert not ctx.allowed("10.9.0.1") and not ctx.allowed(None) and not ctx.allowed("not-an-ip")


def test_wechat_callback_allow_list_is_its_own() -> None:
    from typing import Any, cast

    from services.notify.context import NotifyContext
    from shared.settings import NotifySettings

    settings = NotifySettings(kafka_bootstrap_servers="x:1", database_url="postgresql://u:p@h:1/d",
                              callback_allow_ips=["10.8.0.0/16"], wechat_callback_allow_ips=["101.226.0.0/16"])
    ctx = NotifyContext(settings, cast(Any, None), ContactCipher(Fernet.generate_key()), None, {})
    assert ctx.allowed("101.226.1.2", wechat=True) and not ctx.allowed("10.8.3.4", wechat=True)
    assert ctx.allowed("10.8.3.4") and not ctx.allowed("101.226.1.2")
    assert NotifySettings(kafka_bootstrap_servers="x:1", database_url="postgresql://u:p@h:1/d",
                          ).wechat_callback_allow_ips == ["127.0.0.1/32"]


@pytest.mark.parametrize("value", ["2017-01-01T00:00:00", "2017-01-01", "2017-01-01 00:00:00+08:00",
                                   "2017-13-01 00:00:00", "２０１７-01-01 00:00:00", " 2017-01-01 00:00:00"])
def test_provider_local_times_other_than_the_documented_shape_are_refused(value: str) -> None:
    from services.notify.channels._common import parse_local_time

    with pytest.raises(ValueError):
        parse_local_time(value)


def test_provider_local_time_is_shanghai_wall_time() -> None:
    from datetime import UTC, datetime

    from services.notify.channels._common import parse_local_time

    assert parse_local_time("2017-01-01 08:00:05") == datetime(2017, 1, 1, 0, 0, 5, tzinfo=UTC)
