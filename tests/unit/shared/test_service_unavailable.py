"""A service answers 503 with Retry-After, not 500, while its database is restarting (no I/O: ASGI in process)."""

from __future__ import annotations

import asyncpg
import httpx
import pytest
from fastapi import APIRouter

from shared.service import ServiceSpec, build_app
from shared.settings import DispatchSettings

router = APIRouter()


@router.post("/restarting")
async def restarting() -> None:
    raise asyncpg.CannotConnectNowError("the database system is shutting down")


@router.post("/reset")
async def reset() -> None:
    raise ConnectionResetError(104, "Connection reset by peer")


@router.post("/broken-connection")
async def broken_connection() -> None:
    # What a pooled connection raised after PostgreSQL terminated its session mid-operation (fault drill run 5).
    raise asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress")


@router.post("/protocol-bug")
async def protocol_bug() -> None:
    raise asyncpg.exceptions.ProtocolError("array length overflow")


@router.post("/bug")
async def bug() -> None:
    raise ValueError("a bug")


@pytest.fixture
def client() -> httpx.AsyncClient:
    settings = DispatchSettings(database_url="postgresql://u:p@127.0.0.1:1/db", kafka_bootstrap_servers="127.0.0.1:1")
    app = build_app(ServiceSpec(name="dispatch", title="t", routers=(router,)), settings, migrate=False)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://t")


@pytest.mark.parametrize("path", ["/restarting", "/reset", "/broken-connection"])
async def test_database_gone_is_503_with_retry_after(client: httpx.AsyncClient, path: str) -> None:
    """Regression (fault drill): a reply page posted during a PostgreSQL restart got a 500."""
    r = await client.post(path)
    assert r.status_code == 503 and r.headers["Retry-After"] == "2" and r.json()["error"] == "unavailable"


@pytest.mark.parametrize("path", ["/bug", "/protocol-bug"])
async def test_a_bug_is_still_a_500(client: httpx.AsyncClient, path: str) -> None:
    assert (await client.post(path)).status_code == 500


def test_only_the_broken_connection_of_asyncpgs_internal_errors_is_transient() -> None:
    """A ProtocolError or a missing codec recurs on every retry: it is dead-lettered, not retried forever."""
    from shared.consumer import is_transient

    assert is_transient(asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress"))
    assert not is_transient(asyncpg.exceptions.ProtocolError("array length overflow"))
    assert not is_transient(asyncpg.InternalClientError("missing codec information for OID 1234"))


def test_of_asyncpgs_interface_errors_only_the_closed_connection_is_transient() -> None:
    """A query argument asyncpg cannot encode (its client-side ``DataError``, an ``InterfaceError``) recurs
    on every retry: it is dead-lettered, not retried forever. A closed connection is retried."""
    from shared.consumer import is_transient

    client_data_error = next(c for c in asyncpg.InterfaceError.__subclasses__() if c.__name__ == "DataError")
    assert is_transient(asyncpg.InterfaceError("cannot perform operation: connection is closed"))
    assert not is_transient(client_data_error("invalid input for query argument $1: 'x' (an integer is required)"))
    assert not is_transient(asyncpg.ClientConfigurationError("bad dsn"))
    assert not is_transient(asyncpg.UnsupportedServerFeatureError("no such feature"))
