"""Token refresh: a just-expired token refreshes (within the grace); a revoked device never does."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest

from tests.auth.conftest import UNTRUSTED, bearer, error_code, pair
from tests.nekzus_server import NekzusServer, deep_merge


@pytest.fixture(scope="module")
def srv(module_server: Callable[..., NekzusServer]) -> NekzusServer:
    return module_server(deep_merge(UNTRUSTED, {"auth": {"token_ttl": "2s"}}))


def wait_until_expired(client: httpx.Client, token: str, timeout: float = 10.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get("/api/v1/devices", headers=bearer(token))
        if r.status_code != 200:
            return r
        time.sleep(0.2)
    raise AssertionError("token did not expire in time")


def test_refresh_of_a_just_expired_token(client: httpx.Client) -> None:
    first = pair(client, "refresher")
    assert first["expiresIn"] == 2
    r = wait_until_expired(client, first["accessToken"])
    assert r.status_code == 401 and error_code(r) == "TOKEN_EXPIRED"
    r = client.post("/api/v1/auth/refresh", headers=bearer(first["accessToken"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["deviceId"] == "refresher" and body["scopes"] == ["read:catalog", "read:events"]
    assert body["accessToken"] != first["accessToken"]
    assert client.get("/api/v1/devices", headers=bearer(body["accessToken"])).status_code == 200


def test_refresh_refused_for_a_revoked_device(client: httpx.Client) -> None:
    token = pair(client, "refresh-revoked")["accessToken"]
    assert client.delete("/api/v1/devices/refresh-revoked", headers=bearer(token)).status_code == 200
    r = client.post("/api/v1/auth/refresh", headers=bearer(token))
    assert r.status_code == 401 and error_code(r) == "DEVICE_REVOKED"
    wait_until_expired(client, token)
    r = client.post("/api/v1/auth/refresh", headers=bearer(token))
    assert r.status_code == 401 and error_code(r) == "DEVICE_REVOKED"


def test_refresh_refuses_beyond_grace_and_bad_tokens(client: httpx.Client, srv: NekzusServer) -> None:
    token = pair(client, "ancient")["accessToken"]
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    secret = (srv.data_dir / "jwt_secret").read_text().strip()
    now = int(time.time())
    old = jwt.encode({**claims, "iat": now - 9 * 86400, "exp": now - 8 * 86400}, secret, algorithm="HS256")
    r = client.post("/api/v1/auth/refresh", headers=bearer(old))
    assert r.status_code == 401 and error_code(r) == "TOKEN_EXPIRED_BEYOND_GRACE"
    within = jwt.encode({**claims, "iat": now - 6 * 86400, "exp": now - 5 * 86400}, secret, algorithm="HS256")
    assert client.post("/api/v1/auth/refresh", headers=bearer(within)).status_code == 200
    forged = jwt.encode(claims, "another-secret-that-is-long-enough-000", algorithm="HS256")
    r = client.post("/api/v1/auth/refresh", headers=bearer(forged))
    assert r.status_code == 401 and error_code(r) == "UNAUTHORIZED"
    assert client.post("/api/v1/auth/refresh").status_code == 401
    assert client.post("/api/v1/auth/refresh", headers={"X-API-Key": "nekzus_" + "a" * 64}).status_code == 401
