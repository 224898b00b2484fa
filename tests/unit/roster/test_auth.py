"""The roster API's bearer token: every route but /health/* refuses requests without it (no I/O).

The app is built but not started (no pool, no broker): a request that got past the token check
would reach the database and fail with "the database pool is not open yet", so a 401 here
shows the check ran first.
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from pydantic import SecretStr

from services.roster.app import create_app
from services.roster.handlers.auth import check_token
from shared.settings import RosterSettings

TOKEN = "roster-unit-" + uuid.uuid4().hex


def _settings(token: str | None) -> RosterSettings:
    return RosterSettings(
        database_url="postgresql://u:p@127.0.0.1:1/none", kafka_bootstrap_servers="127.0.0.1:1",
        admin_token=SecretStr(token) if token is not None else None,
    )


def _roster_routes() -> list[tuple[str, str]]:
    """Every (method, path) of the app's OpenAPI document but /health/*, path parameters filled in."""
    app = create_app(_settings(TOKEN))
    out = []
    for path, operations in app.openapi()["paths"].items():
        if path.startswith("/health/"):
            continue
        path = path.replace("{volunteer_id}", str(uuid.uuid4())).replace("{team_id}", str(uuid.uuid4()))
        path = path.replace("{code}", "330603")
        out.extend((method.upper(), path) for method in sorted(operations))
    return out


ROUTES = _roster_routes()


def test_every_data_route_is_covered() -> None:
    paths = {p.split("/")[1] for _, p in ROUTES}
    assert {"volunteers", "teams", "imports", "units"} <= paths
    assert len(ROUTES) >= 12


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token-0123456789", f"Basic {TOKEN}", "Bearer"])
async def test_routes_refuse_missing_or_wrong_tokens(method: str, path: str, authorization: str | None) -> None:
    app = create_app(_settings(TOKEN))
    headers = {"Authorization": authorization} if authorization else {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://roster") as c:
        r = await c.request(method, path, headers=headers)
    assert r.status_code == 401, (method, path, r.text)
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.json()["detail"]


async def test_health_needs_no_token_and_the_right_token_passes_the_check() -> None:
    app = create_app(_settings(TOKEN))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://roster") as c:
        assert (await c.get("/health/live")).status_code == 200
        # Past the token check the route reaches for the (unopened) pool.
        with pytest.raises(RuntimeError, match="pool is not open"):
            await c.get("/volunteers", headers={"Authorization": f"Bearer {TOKEN}"})


def test_check_token_messages() -> None:
    assert check_token(TOKEN, TOKEN) is None
    assert "missing" in (check_token(TOKEN, None) or "")
    assert "invalid" in (check_token(TOKEN, TOKEN + "x") or "")
    assert "no token configured" in (check_token(None, TOKEN) or "")


@pytest.mark.parametrize("token", [None, "", "short"])
def test_the_app_refuses_to_start_without_a_real_token(token: str | None) -> None:
    with pytest.raises(ValueError, match="ROSTER_ADMIN_TOKEN"):
        create_app(_settings(token))
