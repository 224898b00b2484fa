"""Request-signing algorithms the providers publish, implemented to VERIFY requests in the simulator.

The adapters never sign by hand: the official SDKs sign (Aliyun's ``alibabacloud-tea-openapi``, Tencent's
``tencentcloud-sdk-python-common``). The simulator checks what arrives with these functions, written from
the providers' documents and tested against the providers' published examples
(``tests/unit/notify/test_signing.py``; vectors in ``/work/shared/reference/providers.md``):

* Aliyun RPC V1, HMAC-SHA1 (help.aliyun.com/document_detail/101343.htm): :func:`aliyun_rpc_v1_signature`.
* Aliyun V3, ACS3-HMAC-SHA256 (help.aliyun.com/document_detail/2593177.html): :func:`aliyun_acs3_signature`,
  :func:`parse_acs3_authorization`.
* Tencent Cloud API 3.0, TC3-HMAC-SHA256 (cloud.tencent.com/document/api/362/4208): :func:`tc3_signature`,
  :func:`parse_tc3_authorization`.
* WeChat server push signature, ``sha1(sorted(token, timestamp, nonce))`` (the Official Account
  "接入指南"): :func:`wechat_signature`.

All functions are pure; they raise :class:`ValueError` on a malformed ``Authorization`` header.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

__all__ = [
    "Acs3Authorization",
    "Tc3Authorization",
    "aliyun_acs3_signature",
    "aliyun_rpc_v1_signature",
    "parse_acs3_authorization",
    "parse_tc3_authorization",
    "percent_encode",
    "tc3_signature",
    "wechat_signature",
]


def percent_encode(value: str) -> str:
    """RFC 3986 percent-encoding as Aliyun specifies it: UTF-8, space → ``%20``, ``*`` → ``%2A``, ``~`` kept."""
    return quote(value, safe="~", encoding="utf-8")


def aliyun_rpc_v1_signature(method: str, params: Mapping[str, str], secret: str) -> str:
    """Aliyun RPC signature V1 (HMAC-SHA1), Base64.

    StringToSign = ``METHOD&%2F&`` + percentEncode(sorted ``k=v`` pairs joined by ``&``), key = ``secret + "&"``.

    Args:
        method: ``GET`` or ``POST``.
        params: every request parameter (query and form), ``Signature`` excluded (ignored if present).
        secret: the AccessKey secret (case-sensitive).

    """
    pairs = sorted((k, v) for k, v in params.items() if k != "Signature")
    query = "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in pairs)
    string_to_sign = f"{method.upper()}&%2F&{percent_encode(query)}"
    digest = hmac.new(f"{secret}&".encode(), string_to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


@dataclass(frozen=True)
class Acs3Authorization:
    """The parts of ``Authorization: ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=a;b,Signature=hex``."""

    access_key_id: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_acs3_authorization(header: str) -> Acs3Authorization:
    """Parse an ACS3 ``Authorization`` header.

    Raises:
        ValueError: not ``ACS3-HMAC-SHA256 Credential=...,SignedHeaders=...,Signature=...``.

    """
    algorithm, _, rest = header.strip().partition(" ")
    if algorithm != "ACS3-HMAC-SHA256":
        raise ValueError("unsupported signature algorithm")
    fields = dict(part.strip().partition("=")[::2] for part in rest.split(","))
    try:
        return Acs3Authorization(
            fields["Credential"], tuple(fields["SignedHeaders"].split(";")), fields["Signature"]
        )
    except KeyError as exc:
        raise ValueError(f"Authorization lacks {exc.args[0]}") from exc


def aliyun_acs3_signature(
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    signed_headers: tuple[str, ...],
    payload_sha256_hex: str,
    secret: str,
) -> str:
    r"""Aliyun V3 signature (ACS3-HMAC-SHA256), lowercase hex.

    CanonicalRequest = METHOD, URI, sorted percent-encoded query, ``name:value`` lines of the signed headers
    (lowercase names, sorted), a blank line, SignedHeaders, hex SHA-256 of the body; StringToSign =
    ``ACS3-HMAC-SHA256\n`` + hex SHA-256(CanonicalRequest); signature = hex HMAC-SHA256(secret, StringToSign).

    Args:
        method: the HTTP method.
        path: the request path (``/``).
        query: the query parameters, decoded.
        headers: request headers; names are matched case-insensitively.
        signed_headers: lowercase header names, as listed in ``SignedHeaders``.
        payload_sha256_hex: hex SHA-256 of the body (``x-acs-content-sha256``).
        secret: the AccessKey secret.

    """
    lower = {k.lower(): v for k, v in headers.items()}
    canonical_query = "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(query.items()))
    names = sorted(signed_headers)
    canonical_headers = "".join(f"{n}:{lower.get(n, '').strip()}\n" for n in names)
    canonical_request = "\n".join(
        [method.upper(), path or "/", canonical_query, canonical_headers, ";".join(names), payload_sha256_hex]
    )
    string_to_sign = "ACS3-HMAC-SHA256\n" + hashlib.sha256(canonical_request.encode()).hexdigest()
    return hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Tc3Authorization:
    """The parts of ``TC3-HMAC-SHA256 Credential=ID/date/service/tc3_request, SignedHeaders=..., Signature=...``."""

    secret_id: str
    date: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_tc3_authorization(header: str) -> Tc3Authorization:
    """Parse a TC3 ``Authorization`` header.

    Raises:
        ValueError: not a TC3-HMAC-SHA256 header.

    """
    algorithm, _, rest = header.strip().partition(" ")
    if algorithm != "TC3-HMAC-SHA256":
        raise ValueError("unsupported signature algorithm")
    fields = dict(part.strip().partition("=")[::2] for part in rest.split(","))
    try:
        scope = fields["Credential"].split("/")
        if len(scope) != 4 or scope[3] != "tc3_request":
            raise ValueError("bad credential scope")
        return Tc3Authorization(scope[0], scope[1], scope[2], tuple(fields["SignedHeaders"].split(";")),
                                fields["Signature"])
    except KeyError as exc:
        raise ValueError(f"Authorization lacks {exc.args[0]}") from exc


def tc3_signature(
    *,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    signed_headers: tuple[str, ...],
    payload: bytes,
    timestamp: int,
    service: str,
    secret_key: str,
) -> str:
    """Tencent Cloud TC3-HMAC-SHA256 signature, lowercase hex.

    SigningKey = HMAC(HMAC(HMAC("TC3" + SecretKey, date), service), "tc3_request"), where date is the UTC
    date (``YYYY-MM-DD``) of ``timestamp`` (seconds since the epoch).

    Args:
        method: the HTTP method.
        path: the request path (``/``).
        query: the canonical query string as sent (empty for POST).
        headers: request headers; names matched case-insensitively; values lowercased as TC3 specifies.
        signed_headers: lowercase names from ``SignedHeaders``.
        payload: the request body as sent.
        timestamp: ``X-TC-Timestamp``, seconds since the epoch.
        service: the service of the credential scope (``sms``).
        secret_key: the SecretKey.


    """
    import datetime as _dt

    lower = {k.lower(): v for k, v in headers.items()}
    names = sorted(signed_headers)
    canonical_headers = "".join(f"{n}:{lower.get(n, '').strip().lower()}\n" for n in names)
    canonical_request = "\n".join(
        [method.upper(), path or "/", query, canonical_headers, ";".join(names), hashlib.sha256(payload).hexdigest()]
    )
    date = _dt.datetime.fromtimestamp(timestamp, tz=_dt.UTC).strftime("%Y-%m-%d")
    scope = f"{date}/{service}/tc3_request"
    string_to_sign = "\n".join(
        ["TC3-HMAC-SHA256", str(timestamp), scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )

    def _h(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode(), hashlib.sha256).digest()

    signing_key = _h(_h(_h(f"TC3{secret_key}".encode(), date), service), "tc3_request")
    return hmac.new(signing_key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def wechat_signature(token: str, timestamp: str, nonce: str) -> str:
    """WeChat server-push signature: hex SHA-1 of the lexically sorted ``token``, ``timestamp``, ``nonce`` joined."""
    return hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()
