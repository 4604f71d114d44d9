"""Token refresh and API-key expiry over real HTTP, judged against a manual clock: exact boundaries and no
real-second waits. A just-expired token refreshes up to the grace and not a moment after; a revoked device
never refreshes; an API key stops working at its `expiresAt`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest

from nekzus.timefmt import rfc3339
from tests.auth.conftest import UNTRUSTED, bearer, error_code, pair
from tests.inproc_server import InProcNekzus, admin_bearer, expiring_api_key
from tests.nekzus_server import deep_merge

TTL = 3600
GRACE = 7 * 86400


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcNekzus]:
    config = deep_merge(UNTRUSTED, {"auth": {"token_ttl": f"{TTL}s", "refresh_grace": f"{GRACE}s"}})
    server = InProcNekzus(tmp_path_factory.mktemp("expiry"), config).start()
    yield server
    server.stop()


@pytest.fixture
def client(srv: InProcNekzus) -> Iterator[httpx.Client]:
    with srv.client() as c:
        yield c


def claims_of(token: str) -> dict[str, Any]:
    data: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return data


def devices(client: httpx.Client, token: str) -> httpx.Response:
    return client.get("/api/v1/devices", headers=bearer(token))


def refresh(client: httpx.Client, token: str) -> httpx.Response:
    return client.post("/api/v1/auth/refresh", headers=bearer(token))


def test_refresh_of_a_just_expired_token(client: httpx.Client, srv: InProcNekzus) -> None:
    first = pair(client, "refresher")
    assert first["expiresIn"] == TTL
    exp = claims_of(first["accessToken"])["exp"]
    assert exp == int(srv.clock.now) + TTL
    srv.clock.now = exp - 0.001
    assert devices(client, first["accessToken"]).status_code == 200
    srv.clock.now = exp
    r = devices(client, first["accessToken"])
    assert r.status_code == 401 and error_code(r) == "TOKEN_EXPIRED"
    r = refresh(client, first["accessToken"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["deviceId"] == "refresher" and body["scopes"] == ["read:catalog", "read:events"]
    assert body["accessToken"] != first["accessToken"]
    assert claims_of(body["accessToken"])["exp"] == int(srv.clock.now) + TTL
    assert devices(client, body["accessToken"]).status_code == 200


def test_refresh_allowed_up_to_the_grace_and_refused_after(client: httpx.Client, srv: InProcNekzus) -> None:
    last_ok = pair(client, "grace-edge")["accessToken"]
    too_late = pair(client, "grace-past")["accessToken"]
    exp = claims_of(last_ok)["exp"]
    assert claims_of(too_late)["exp"] == exp
    srv.clock.now = exp + GRACE
    r = refresh(client, last_ok)
    assert r.status_code == 200, r.text
    srv.clock.now = exp + GRACE + 0.001
    r = refresh(client, too_late)
    assert r.status_code == 401 and error_code(r) == "TOKEN_EXPIRED_BEYOND_GRACE"


def test_refresh_refused_for_a_revoked_device(client: httpx.Client, srv: InProcNekzus) -> None:
    token = pair(client, "refresh-revoked")["accessToken"]
    exp = claims_of(token)["exp"]
    assert client.delete("/api/v1/devices/refresh-revoked", headers=bearer(token)).status_code == 200
    r = refresh(client, token)
    assert r.status_code == 401 and error_code(r) == "DEVICE_REVOKED"
    srv.clock.now = exp  # expired, well within the grace: still refused
    r = devices(client, token)
    assert r.status_code == 401
    r = refresh(client, token)
    assert r.status_code == 401 and error_code(r) == "DEVICE_REVOKED"


def test_refresh_refuses_beyond_grace_and_bad_tokens(client: httpx.Client, srv: InProcNekzus) -> None:
    token = pair(client, "ancient")["accessToken"]
    claims = claims_of(token)
    secret = (srv.data_dir / "jwt_secret").read_text().strip()
    now = int(srv.clock.now)
    old = jwt.encode({**claims, "iat": now - 9 * 86400, "exp": now - 8 * 86400}, secret, algorithm="HS256")
    r = refresh(client, old)
    assert r.status_code == 401 and error_code(r) == "TOKEN_EXPIRED_BEYOND_GRACE"
    within = jwt.encode({**claims, "iat": now - 6 * 86400, "exp": now - 5 * 86400}, secret, algorithm="HS256")
    assert refresh(client, within).status_code == 200
    forged = jwt.encode(claims, "another-secret-that-is-long-enough-000", algorithm="HS256")
    r = refresh(client, forged)
    assert r.status_code == 401 and error_code(r) == "UNAUTHORIZED"
    assert client.post("/api/v1/auth/refresh").status_code == 401
    assert client.post("/api/v1/auth/refresh", headers={"X-API-Key": "nekzus_" + "a" * 64}).status_code == 401


def test_api_key_expiry(client: httpx.Client, srv: InProcNekzus) -> None:
    admin = admin_bearer(srv, client)
    h, expires = expiring_api_key(srv, client, admin, "soon", ["read:*"])
    srv.clock.now = expires - 0.001
    assert client.get("/api/v1/devices", headers=h).status_code == 200
    srv.clock.now = expires
    r = client.get("/api/v1/devices", headers=h)
    assert r.status_code == 401, r.text
    # An expiry the clock has already reached is refused at creation.
    r = client.post(
        "/api/v1/apikeys",
        json={"name": "past", "scopes": ["read:*"], "expiresAt": rfc3339(srv.clock.now)},
        headers=admin,
    )
    assert r.status_code == 400 and error_code(r) == "VALIDATION_ERROR", r.text
