"""Every credential type accepted where it should be and refused (401/403) where not, on a server that
trusts no network; forged tokens; immediate revocation."""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest

from tests.auth.conftest import (
    PERMANENT_BOOTSTRAP,
    TRUSTED,
    UNTRUSTED,
    assert_healthy,
    bearer,
    create_admin,
    error_code,
    login,
    pair,
)
from tests.nekzus_server import NekzusServer


def make_key(client: httpx.Client, admin: dict[str, str], scopes: list[str], **extra: Any) -> dict[str, Any]:
    r = client.post(
        "/api/v1/apikeys", json={"name": f"key {scopes}", "scopes": scopes, **extra}, headers=admin
    )
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


def secret(srv: NekzusServer) -> str:
    return (srv.data_dir / "jwt_secret").read_text().strip()


def claims_of(token: str) -> dict[str, Any]:
    data: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return data


def status(client: httpx.Client, method: str, path: str, headers: dict[str, str], **kw: Any) -> int:
    return client.request(method, path, headers=headers, **kw).status_code


def test_no_credential_is_refused_without_trusted_networks(client: httpx.Client) -> None:
    for path in (
        "/api/v1/devices",
        "/api/v1/admin/devices",
        "/api/v1/admin/info",
        "/api/v1/stats",
        "/api/v1/activity/recent",
        "/api/v1/apikeys",
        "/api/v1/audit-logs",
        "/api/v1/auth/me",
        "/api/v1/auth/qr",
    ):
        r = client.get(path)
        assert r.status_code == 401, path
        assert error_code(r) == "UNAUTHORIZED"
    # Public endpoints stay public.
    assert client.get("/api/v1/auth/setup-status").status_code == 200
    assert client.get("/healthz").status_code == 200


def test_device_token_scopes(client: httpx.Client, admin: dict[str, str]) -> None:
    me = bearer(pair(client, "scoped-phone")["accessToken"])
    pair(client, "other-phone")
    # Any credential / read:events
    for path in ("/api/v1/devices", "/api/v1/admin/info", "/api/v1/stats", "/api/v1/activity/recent"):
        assert status(client, "GET", path, me) == 200, path
    assert status(client, "GET", "/api/v1/stats/quick", me) == 200
    # Admin only
    for method, path in (
        ("GET", "/api/v1/apikeys"),
        ("POST", "/api/v1/apikeys"),
        ("GET", "/api/v1/audit-logs"),
        ("GET", "/api/v1/auth/qr"),
    ):
        r = client.request(method, path, headers=me, json={"name": "n", "scopes": ["read:catalog"]})
        assert r.status_code == 403 and error_code(r) == "FORBIDDEN", path
    # A device may rename itself, not others, and may not change its own scopes.
    r = client.patch("/api/v1/devices/scoped-phone", json={"deviceName": "Mine"}, headers=me)
    assert r.status_code == 200 and r.json()["deviceName"] == "Mine"
    assert status(client, "PATCH", "/api/v1/devices/other-phone", me, json={"deviceName": "x"}) == 403
    r = client.patch("/api/v1/devices/scoped-phone", json={"scopes": ["access:admin"]}, headers=me)
    assert r.status_code == 403
    assert status(client, "DELETE", "/api/v1/devices/other-phone", me) == 403
    assert status(client, "DELETE", "/api/v1/admin/devices/other-phone", me) == 403
    # /auth/me is for dashboard users only.
    r = client.get("/api/v1/auth/me", headers=me)
    assert r.status_code == 401


def test_device_may_revoke_itself(client: httpx.Client) -> None:
    me = bearer(pair(client, "self-revoker")["accessToken"])
    r = client.delete("/api/v1/devices/self-revoker", headers=me)
    assert r.status_code == 200 and r.json()["status"] == "revoked"
    r = client.get("/api/v1/devices", headers=me)
    assert r.status_code == 401 and error_code(r) == "DEVICE_REVOKED"


def test_scope_change_by_admin_applies_at_once(client: httpx.Client, admin: dict[str, str]) -> None:
    device = bearer(pair(client, "promoted")["accessToken"])
    assert status(client, "GET", "/api/v1/apikeys", device) == 403
    r = client.patch("/api/v1/devices/promoted", json={"scopes": ["access:admin"]}, headers=admin)
    assert r.status_code == 200 and r.json()["scopes"] == ["access:admin"]
    assert status(client, "GET", "/api/v1/apikeys", device) == 200
    # write:* lets a device manage other devices.
    r = client.patch("/api/v1/devices/promoted", json={"scopes": ["write:*"]}, headers=admin)
    assert r.status_code == 200
    pair(client, "victim")
    assert status(client, "PATCH", "/api/v1/devices/victim", device, json={"deviceName": "v"}) == 200
    assert status(client, "GET", "/api/v1/apikeys", device) == 403


def test_user_token_is_admin(client: httpx.Client, admin: dict[str, str]) -> None:
    for path in ("/api/v1/devices", "/api/v1/apikeys", "/api/v1/audit-logs", "/api/v1/stats/quick"):
        assert status(client, "GET", path, admin) == 200, path
    r = client.get("/api/v1/auth/me", headers=admin)
    assert r.status_code == 200 and r.json()["user"]["username"] == "admin"


def test_api_keys_by_scope(client: httpx.Client, admin: dict[str, str]) -> None:
    reader = make_key(client, admin, ["read:catalog"])
    key = reader["key"]
    assert key.startswith("nekzus_") and len(key) == 71 and reader["prefix"] == key[:10]
    h = {"X-API-Key": key}
    assert status(client, "GET", "/api/v1/devices", h) == 200
    assert status(client, "GET", "/api/v1/devices", bearer(key)) == 200  # Bearer nekzus_… works too
    r = client.get("/api/v1/activity/recent", headers=h)
    assert r.status_code == 403 and error_code(r) == "FORBIDDEN"
    assert status(client, "GET", "/api/v1/apikeys", h) == 403
    # Strict-JWT endpoints refuse API keys.
    assert status(client, "GET", "/api/v1/stats/quick", h) == 401
    assert status(client, "GET", "/api/v1/audit-logs", h) == 401

    admin_key = {"X-API-Key": make_key(client, admin, ["access:admin"])["key"]}
    assert status(client, "GET", "/api/v1/apikeys", admin_key) == 200
    assert status(client, "GET", "/api/v1/audit-logs", admin_key) == 401

    # The key itself is never listed again; lastUsedAt is tracked.
    listed = client.get(f"/api/v1/apikeys/{reader['id']}", headers=admin).json()
    assert "key" not in listed and "keyHash" not in listed
    assert listed["lastUsedAt"] is not None and listed["createdBy"] == "user-admin"
    everything = client.get("/api/v1/apikeys", headers=admin).text
    assert key not in everything


def test_api_key_revoke_and_delete(client: httpx.Client, admin: dict[str, str]) -> None:
    created = make_key(client, admin, ["read:*"])
    h = {"X-API-Key": created["key"]}
    assert status(client, "GET", "/api/v1/activity/recent", h) == 200
    r = client.delete(f"/api/v1/apikeys/{created['id']}", headers=admin)
    assert r.status_code == 200 and r.json() == {"message": "API key revoked successfully"}
    r = client.get("/api/v1/devices", headers=h)
    assert r.status_code == 401 and error_code(r) == "UNAUTHORIZED"
    kept = client.get(f"/api/v1/apikeys/{created['id']}", headers=admin).json()
    assert kept["revokedAt"] is not None
    r = client.delete(f"/api/v1/apikeys/{created['id']}", params={"permanent": "true"}, headers=admin)
    assert r.status_code == 200
    assert client.get(f"/api/v1/apikeys/{created['id']}", headers=admin).status_code == 404
    assert client.delete("/api/v1/apikeys/key_nope", headers=admin).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"name": "", "scopes": ["read:catalog"]},
        {"name": "n", "scopes": []},
        {"name": "n", "scopes": ["root"]},
        {"name": "n" * 256, "scopes": ["read:catalog"]},
        {"name": "n", "scopes": ["read:catalog"], "expiresAt": "2001-01-01T00:00:00Z"},
        {"name": "n", "scopes": ["read:catalog"], "expiresAt": "tomorrow"},
        {"scopes": ["read:catalog"]},
    ],
)
def test_api_key_validation(client: httpx.Client, admin: dict[str, str], body: dict[str, Any]) -> None:
    r = client.post("/api/v1/apikeys", json=body, headers=admin)
    assert r.status_code == 400 and error_code(r) == "VALIDATION_ERROR", r.text


@pytest.mark.parametrize(
    "key",
    [
        "nekzus_" + "0" * 64,
        "nekzus_short",
        "nekzus_" + "Z" * 64,
        "",
    ],
)
def test_bad_api_keys(client: httpx.Client, key: str) -> None:
    r = client.get("/api/v1/devices", headers={"X-API-Key": key} if key else {"Authorization": "Bearer"})
    assert r.status_code == 401 and error_code(r) == "UNAUTHORIZED"


def test_forged_tokens(client: httpx.Client, srv: NekzusServer) -> None:
    good = pair(client, "forge-target")["accessToken"]
    real = claims_of(good)
    now = int(time.time())
    right = secret(srv)

    def sign(claims: dict[str, Any], key: str = right, alg: str = "HS256") -> str:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # short keys for HS512 are the point of the test
            return jwt.encode(claims, key, algorithm=alg)

    forged = {
        "wrong secret": sign(real, "x" * 40),
        "wrong audience": sign({**real, "aud": "someone-else"}),
        "wrong issuer": sign({**real, "iss": "evil"}),
        "audience list": sign({**real, "aud": ["other"]}),
        "HS512": sign(real, alg="HS512"),
        "no jti": sign({k: v for k, v in real.items() if k != "jti"}),
        "no exp": sign({k: v for k, v in real.items() if k != "exp"}),
        "scopes not a list": sign({**real, "scopes": "access:admin"}),
        "garbage": "a.b.c",
        "not a jwt": "hello",
        "other session": sign({**real, "sid": "0" * 32}),
        "unknown device": sign({**real, "sub": "ghost"}),
        "user that does not exist": sign({**real, "sub": "user-mallory", "typ": "user"}),
    }
    header = jwt.utils.base64url_encode(b'{"alg":"none","typ":"JWT"}').decode()
    promoted = {**real, "scopes": ["access:admin"]}
    body = jwt.utils.base64url_encode(json.dumps(promoted).encode()).decode()
    forged["alg none"] = f"{header}.{body}."
    for name, token in forged.items():
        r = client.get("/api/v1/devices", headers=bearer(token))
        assert r.status_code == 401, name
        assert error_code(r) in ("UNAUTHORIZED", "DEVICE_REVOKED"), name
    # Scopes in a validly signed token do not override the device's stored scopes.
    r = client.get("/api/v1/apikeys", headers=bearer(sign({**real, "jti": "fresh-id-1"} | promoted)))
    assert r.status_code == 403
    expired = sign({**real, "iat": now - 100, "exp": now - 10})
    r = client.get("/api/v1/devices", headers=bearer(expired))
    assert r.status_code == 401 and error_code(r) == "TOKEN_EXPIRED"
    assert client.get("/api/v1/devices", headers=bearer(good)).status_code == 200
    assert_healthy(client)


def test_revocation_cuts_off_at_once(client: httpx.Client, admin: dict[str, str]) -> None:
    token = pair(client, "doomed")["accessToken"]
    assert status(client, "GET", "/api/v1/devices", bearer(token)) == 200
    r = client.delete("/api/v1/admin/devices/doomed", headers=admin)
    assert r.status_code == 200
    body = r.json()
    assert body["deviceId"] == "doomed" and body["revokedAt"].endswith("Z")
    r = client.get("/api/v1/devices", headers=bearer(token))
    assert r.status_code == 401 and error_code(r) == "DEVICE_REVOKED"
    r = client.post("/api/v1/auth/refresh", headers=bearer(token))
    assert r.status_code == 401 and error_code(r) == "DEVICE_REVOKED"
    assert client.get("/api/v1/devices/doomed", headers=admin).status_code == 404
    assert client.delete("/api/v1/devices/doomed", headers=admin).status_code == 404
    # Re-pairing the same id does not revive the old token.
    fresh = pair(client, "doomed")["accessToken"]
    assert status(client, "GET", "/api/v1/devices", bearer(fresh)) == 200
    assert status(client, "GET", "/api/v1/devices", bearer(token)) == 401


def test_trusted_network_and_presented_credentials(make_server: Callable[..., NekzusServer]) -> None:
    srv = make_server(TRUSTED)
    with srv.client() as c:
        # No credential from loopback acts as admin…
        assert c.get("/api/v1/apikeys").status_code == 200
        # …but a presented credential is judged by itself.
        r = c.get("/api/v1/apikeys", headers=bearer("a.b.c"))
        assert r.status_code == 401
        r = c.get("/api/v1/apikeys", headers={"X-API-Key": "nekzus_" + "1" * 64})
        assert r.status_code == 401
        device = pair(c, "lan-phone")["accessToken"]
        assert c.get("/api/v1/apikeys", headers=bearer(device)).status_code == 403
        # Strict endpoints need a JWT even from a trusted network.
        r = c.get("/api/v1/audit-logs")
        assert r.status_code == 401
        # Other authorization schemes are not ours to judge.
        assert c.get("/api/v1/apikeys", headers={"Authorization": "Basic dTpw"}).status_code == 200


def test_revocation_and_logout_survive_restart(make_server: Callable[..., NekzusServer]) -> None:
    srv = make_server(UNTRUSTED)
    with srv.client() as c:
        create_admin(c, srv)
        user_token = login(c)
        admin = bearer(user_token)
        revoked = pair(c, "gone")["accessToken"]
        kept = pair(c, "kept")["accessToken"]
        assert c.delete("/api/v1/devices/gone", headers=admin).status_code == 200
        assert c.post("/api/v1/auth/logout", headers=admin).status_code == 200
        r = c.get("/api/v1/devices", headers=admin)
        assert r.status_code == 401 and error_code(r) == "TOKEN_REVOKED"
    srv.restart()
    with srv.client() as c:
        r = c.get("/api/v1/devices", headers=bearer(revoked))
        assert r.status_code == 401 and error_code(r) == "DEVICE_REVOKED"
        r = c.get("/api/v1/devices", headers=bearer(user_token))
        assert r.status_code == 401 and error_code(r) == "TOKEN_REVOKED"
        assert c.get("/api/v1/devices", headers=bearer(kept)).status_code == 200
        # No setup token is offered once a user exists.
        assert "X-Setup-Token): " not in srv.logs().split("Nekzus listening")[-1]


def test_permanent_bootstrap_token_is_reusable(client: httpx.Client) -> None:
    a = pair(client, "perm-a", token=PERMANENT_BOOTSTRAP)
    b = pair(client, "perm-b", token=PERMANENT_BOOTSTRAP)
    assert a["deviceId"] == "perm-a" and b["deviceId"] == "perm-b"


def test_rate_limits_are_keyed_by_credential(make_server: Callable[..., NekzusServer]) -> None:
    srv = make_server(TRUSTED, rate_limits=True)
    with srv.client() as c:
        first = bearer(pair(c, "greedy")["accessToken"])
        second = bearer(pair(c, "patient")["accessToken"])
        codes: list[int] = []
        while 429 not in codes and len(codes) < 100:  # refills at 0.5/s, so a slow run needs a few more
            codes.append(c.get("/api/v1/devices", headers=first).status_code)
        assert codes[:30] == [200] * 30 and codes[-1] == 429
        # Same IP, another device: its own bucket.
        assert c.get("/api/v1/devices", headers=second).status_code == 200
