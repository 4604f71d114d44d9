"""Per-route proxy auth with real credentials on a server that trusts no network (route scopes, where
`access:admin` implies every scope, and token expiry).

Every credential is obtained like a client would: first-run setup with the one-time token from the log,
login, pairing with a bootstrap token, API keys through the API. Also: session cookies persisted per
device through the proxy (`persistCookies` routes).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import jwt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from nekzus.auth.principal import ADMIN
from tests.auth.conftest import PERMANENT_BOOTSTRAP, bearer, create_admin, login, pair
from tests.auth.test_audit_activity import audit, find
from tests.events.conftest import WS
from tests.nekzus_server import NekzusServer
from tests.proxy.conftest import Upstream

DEFAULT_SCOPES = ["read:catalog", "read:events"]
_ids = itertools.count()


@pytest.fixture(scope="module")
def srv(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NekzusServer]:
    routes = [
        {"id": "pub", "app_id": "pub", "path_base": "/apps/pub/", "to": upstream.url, "public_access": True},
        {
            "id": "pubs",
            "app_id": "pubs",
            "path_base": "/apps/pubs/",
            "to": upstream.url,
            "strip_prefix": True,
            "public_access": True,
        },
        {"id": "plain", "app_id": "plain", "path_base": "/apps/plain/", "to": upstream.url},
        {
            "id": "grafana",
            "app_id": "grafana",
            "path_base": "/apps/grafana/",
            "to": upstream.url,
            "strip_prefix": True,
            "scopes": ["access:grafana"],
        },
        {
            "id": "grafws",
            "app_id": "grafws",
            "path_base": "/apps/grafws/",
            "to": upstream.url,
            "strip_prefix": True,
            "websockets": True,
            "scopes": ["access:grafana"],
        },
        {
            "id": "jar",
            "app_id": "jar",
            "path_base": "/apps/jar/",
            "to": upstream.url,
            "strip_prefix": True,
            "persist_cookies": True,
        },
    ]
    server = NekzusServer(
        {
            "routes": routes,
            "auth": {"local_networks": [], "default_scopes": DEFAULT_SCOPES},
            "bootstrap": {"tokens": [PERMANENT_BOOTSTRAP]},
            "health_checks": {"enabled": False},
        },
        data_dir=tmp_path_factory.mktemp("proxy-auth"),
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def admin(srv: NekzusServer) -> dict[str, str]:
    """A dashboard user's bearer header (setup with the one-time token from the log, then login)."""
    with srv.client() as c:
        create_admin(c, srv)
        return bearer(login(c))


@pytest.fixture
def client(srv: NekzusServer) -> Iterator[httpx.Client]:
    with srv.client() as c:
        yield c


@pytest.fixture
def new_device(client: httpx.Client, admin: dict[str, str]) -> Callable[..., tuple[str, dict[str, str]]]:
    """Pair a fresh device (bootstrap token); optionally give it other scopes as admin."""

    def factory(scopes: list[str] | None = None) -> tuple[str, dict[str, str]]:
        device_id = f"proxy-dev-{next(_ids)}-{time.monotonic_ns()}"
        token = pair(client, device_id)["accessToken"]
        if scopes is not None:
            r = client.patch(f"/api/v1/devices/{device_id}", json={"scopes": scopes}, headers=admin)
            assert r.status_code == 200, r.text
        return device_id, bearer(token)

    return factory


@pytest.fixture
def new_key(client: httpx.Client, admin: dict[str, str]) -> Callable[..., tuple[str, dict[str, str]]]:
    def factory(scopes: list[str], **extra: Any) -> tuple[str, dict[str, str]]:
        r = client.post(
            "/api/v1/apikeys", json={"name": f"proxy {scopes}", "scopes": scopes, **extra}, headers=admin
        )
        assert r.status_code == 201, r.text
        return str(r.json()["id"]), {"X-API-Key": r.json()["key"]}

    return factory


def code(r: httpx.Response) -> str:
    assert r.headers["content-type"].startswith("application/json"), r.text
    value: str = r.json()["error"]["code"]
    return value


def reached_upstream(r: httpx.Response, path: str) -> bool:
    """The request was answered by the upstream echo handler (not by Nekzus)."""
    return r.status_code == 200 and r.headers.get("x-upstream") == "yes" and r.json()["path"] == path


def test_public_route_needs_nothing(client: httpx.Client) -> None:
    r = client.get("/apps/pub/x?y=1")
    assert r.status_code == 200 and r.json()["query"] == "y=1"
    # Nothing about the caller is forwarded, and a bad credential does not lock out a public route.
    assert reached_upstream(client.get("/apps/pub/x", headers=bearer("not.a.token")), "/apps/pub/x")


def test_no_credential_is_401_on_non_public_routes(client: httpx.Client) -> None:
    for path in ("/apps/plain/x", "/apps/grafana/x", "/apps/jar/x"):
        r = client.get(path)
        assert r.status_code == 401 and code(r) == "UNAUTHORIZED", path


def test_bad_and_expired_tokens_are_401(
    client: httpx.Client, srv: NekzusServer, new_device: Callable[..., tuple[str, dict[str, str]]]
) -> None:
    _device_id, headers = new_device(["access:grafana", *DEFAULT_SCOPES])
    token = headers["Authorization"].removeprefix("Bearer ")
    assert reached_upstream(client.get("/apps/grafana/ok", headers=headers), "/ok")
    claims = jwt.decode(token, options={"verify_signature": False})
    secret = (srv.data_dir / "jwt_secret").read_text().strip()
    now = int(time.time())
    expired = jwt.encode({**claims, "iat": now - 100, "exp": now - 10}, secret, algorithm="HS256")
    foreign = jwt.encode(claims, "another-secret-" + "x" * 40, algorithm="HS256")
    unsigned = jwt.encode(claims, "", algorithm="none")  # "none" takes no key
    cases = {
        "expired": (bearer(expired), "TOKEN_EXPIRED"),
        "foreign": (bearer(foreign), None),
        "alg none": (bearer(unsigned), None),
        "garbage": (bearer("garbage"), "UNAUTHORIZED"),
        "unknown api key": ({"X-API-Key": "nekzus_" + "ab" * 32}, "UNAUTHORIZED"),
        "malformed api key": ({"X-API-Key": "nekzus_short"}, "UNAUTHORIZED"),
    }
    for name, (bad, expected) in cases.items():
        for path in ("/apps/plain/x", "/apps/grafana/x"):
            r = client.get(path, headers=bad)
            assert r.status_code == 401, (name, path, r.text)
            if expected:
                assert code(r) == expected, (name, r.text)
    # The good token still works afterwards.
    assert reached_upstream(client.get("/apps/grafana/ok", headers=headers), "/ok")


def test_scoped_route_device_apikey_and_user(
    client: httpx.Client,
    admin: dict[str, str],
    new_device: Callable[..., tuple[str, dict[str, str]]],
    new_key: Callable[..., tuple[str, dict[str, str]]],
) -> None:
    _, with_scope = new_device(["access:grafana", *DEFAULT_SCOPES])
    _, default_device = new_device()  # paired devices get auth.default_scopes only
    _, key_with = new_key(["access:grafana"])
    _, key_without = new_key(DEFAULT_SCOPES)
    for headers in (with_scope, key_with, admin):
        assert reached_upstream(client.get("/apps/grafana/dash", headers=headers), "/dash")
    for headers in (default_device, key_without):
        r = client.get("/apps/grafana/dash", headers=headers)
        assert r.status_code == 403 and code(r) == "FORBIDDEN", r.text
        assert "access:grafana" in r.json()["error"]["message"]


def test_route_without_scopes_requires_default_scopes(
    client: httpx.Client,
    admin: dict[str, str],
    new_device: Callable[..., tuple[str, dict[str, str]]],
    new_key: Callable[..., tuple[str, dict[str, str]]],
) -> None:
    _, default_device = new_device()
    _, narrow_device = new_device(["access:grafana"])
    _, default_key = new_key(DEFAULT_SCOPES)
    _, wildcard_key = new_key(["read:*"])
    _, half_key = new_key(["read:catalog", "write:catalog"])
    _, narrow_key = new_key(["access:grafana"])
    _, admin_key = new_key([ADMIN])
    for headers in (default_device, default_key, wildcard_key, admin_key, admin):
        assert reached_upstream(client.get("/apps/plain/p", headers=headers), "/apps/plain/p"), headers
    for headers in (narrow_device, half_key, narrow_key):
        r = client.get("/apps/plain/p", headers=headers)
        assert r.status_code == 403 and code(r) == "FORBIDDEN", (headers, r.text)


def test_scoped_websocket(srv: NekzusServer, new_device: Callable[..., tuple[str, dict[str, str]]]) -> None:
    _, allowed = new_device(["access:grafana", *DEFAULT_SCOPES])
    _, denied = new_device()

    async def run() -> None:
        url = srv.ws_url + "/apps/grafws/ws"
        async with connect(url, additional_headers=allowed, open_timeout=5) as ws:
            hello = await asyncio.wait_for(ws.recv(), 5)
            assert '"credentials": []' in str(hello)
            await ws.send("hi")
            assert await asyncio.wait_for(ws.recv(), 5) == "echo:hi"
        for headers, status in ((denied, 403), ({}, 401), (bearer("x.y.z"), 401)):
            with pytest.raises(InvalidStatus) as info:
                async with connect(url, additional_headers=headers, open_timeout=5):
                    pass
            assert info.value.response.status_code == status

    asyncio.run(run())


def test_device_revocation_cuts_off_proxy_and_rest_at_once(
    client: httpx.Client, admin: dict[str, str], new_device: Callable[..., tuple[str, dict[str, str]]]
) -> None:
    device_id, headers = new_device(["access:grafana", *DEFAULT_SCOPES])
    assert reached_upstream(client.get("/apps/grafana/a", headers=headers), "/a")
    assert reached_upstream(client.get("/apps/plain/a", headers=headers), "/apps/plain/a")
    assert client.get("/api/v1/apps", headers=headers).status_code == 200
    r = client.delete(f"/api/v1/devices/{device_id}", headers=admin)
    assert r.status_code == 200, r.text
    # The very next requests are refused: no grace period, no cache.
    for path in ("/apps/grafana/a", "/apps/plain/a", "/api/v1/apps", f"/api/v1/devices/{device_id}"):
        r = client.get(path, headers=headers)
        assert r.status_code == 401, (path, r.text)
        assert code(r) == "DEVICE_REVOKED", (path, r.text)
    # Other credentials are unaffected.
    assert reached_upstream(client.get("/apps/grafana/a", headers=admin), "/a")


def test_device_revokes_itself(
    client: httpx.Client, new_device: Callable[..., tuple[str, dict[str, str]]]
) -> None:
    device_id, headers = new_device()
    assert reached_upstream(client.get("/apps/plain/s", headers=headers), "/apps/plain/s")
    assert client.delete(f"/api/v1/devices/{device_id}", headers=headers).status_code == 200
    assert client.get("/apps/plain/s", headers=headers).status_code == 401


def test_websocket_tunnel_refused_after_revocation(
    srv: NekzusServer,
    client: httpx.Client,
    admin: dict[str, str],
    new_device: Callable[..., tuple[str, dict[str, str]]],
) -> None:
    device_id, headers = new_device(["access:grafana", *DEFAULT_SCOPES])
    assert client.delete(f"/api/v1/devices/{device_id}", headers=admin).status_code == 200

    async def run() -> None:
        with pytest.raises(InvalidStatus) as info:
            async with connect(srv.ws_url + "/apps/grafws/ws", additional_headers=headers, open_timeout=5):
                pass
        assert info.value.response.status_code == 401

    asyncio.run(run())


def test_api_key_revocation_and_deletion_cut_off_at_once(
    client: httpx.Client, admin: dict[str, str], new_key: Callable[..., tuple[str, dict[str, str]]]
) -> None:
    for permanent in (False, True):
        key_id, headers = new_key(["access:grafana", *DEFAULT_SCOPES])
        assert reached_upstream(client.get("/apps/grafana/k", headers=headers), "/k")
        assert reached_upstream(client.get("/apps/plain/k", headers=headers), "/apps/plain/k")
        suffix = "?permanent=true" if permanent else ""
        r = client.delete(f"/api/v1/apikeys/{key_id}{suffix}", headers=admin)
        assert r.status_code in (200, 204), r.text
        for path in ("/apps/grafana/k", "/apps/plain/k", "/api/v1/apps"):
            r = client.get(path, headers=headers)
            assert r.status_code == 401 and code(r) == "UNAUTHORIZED", (permanent, path, r.text)


# --- session cookies persisted per device through the proxy ------------------------------------------


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_session_cookie_round_trip_through_the_proxy(
    client: httpx.Client, admin: dict[str, str], new_device: Callable[..., tuple[str, dict[str, str]]]
) -> None:
    _, phone = new_device()
    _, other_phone = new_device()
    # The upstream sets a session cookie; the webview would lose it (no cookie jar across launches).
    r = client.get("/apps/jar/setcookie?v=s3cr3t", headers=phone)
    assert r.status_code == 200 and "session=s3cr3t" in r.headers["set-cookie"]
    client.cookies.clear()

    # A later request from the same device without the cookie gets it injected upstream.
    def injected() -> bool:
        echoed: dict[str, str] = client.get("/apps/jar/echo", headers=phone).json()["headers"]
        return echoed.get("cookie") == "session=s3cr3t"

    assert wait_for(injected)
    # A cookie the client sends itself wins over the stored one.
    echoed = client.get("/apps/jar/echo", headers={**phone, "Cookie": "session=mine"}).json()
    assert "session=mine" in echoed["headers"]["cookie"] and "s3cr3t" not in echoed["headers"]["cookie"]
    # Cookies are per device: another device (and a dashboard user) get nothing.
    assert "cookie" not in client.get("/apps/jar/echo", headers=other_phone).json()["headers"]
    assert "cookie" not in client.get("/apps/jar/echo", headers=admin).json()["headers"]

    # The device can list its sessions, without values.
    def listed() -> list[dict[str, Any]]:
        r = client.get("/api/v1/session-cookies", headers=phone)
        assert r.status_code == 200, r.text
        sessions: list[dict[str, Any]] = r.json()["sessions"]
        return sessions

    sessions = wait_for(listed)
    assert [s["appId"] for s in sessions] == ["jar"]
    assert sessions[0]["cookieCount"] == 1
    assert sessions[0]["lastUpdated"].endswith("Z") and sessions[0]["expiresAt"].endswith("Z")
    assert "s3cr3t" not in client.get("/api/v1/session-cookies", headers=phone).text
    assert client.get("/api/v1/session-cookies", headers=other_phone).json() == {"sessions": []}

    # Deleting the app's cookies stops the injection at once.
    assert client.delete("/api/v1/session-cookies/jar", headers=phone).status_code == 204
    assert client.get("/api/v1/session-cookies", headers=phone).json() == {"sessions": []}
    assert "cookie" not in client.get("/apps/jar/echo", headers=phone).json()["headers"]

    # Captured again, then cleared with the all-apps DELETE.
    client.get("/apps/jar/setcookie?v=again", headers=phone)
    client.cookies.clear()
    assert wait_for(listed)
    assert client.delete("/api/v1/session-cookies", headers=phone).status_code == 204
    assert client.get("/api/v1/session-cookies", headers=phone).json() == {"sessions": []}
    assert "cookie" not in client.get("/apps/jar/echo", headers=phone).json()["headers"]


def test_session_cookie_endpoints_need_a_jwt(client: httpx.Client, new_key: Callable[..., Any]) -> None:
    _, key = new_key([ADMIN])
    anonymous: dict[str, str] = {}
    for headers in (anonymous, key):
        assert client.get("/api/v1/session-cookies", headers=headers).status_code == 401
        assert client.delete("/api/v1/session-cookies", headers=headers).status_code == 401


# --- audit: denials on the proxy path, route changes through the API ---------------------------------


def details_of(row: dict[str, Any]) -> dict[str, Any]:
    raw = row["details"]
    data: dict[str, Any] = json.loads(raw) if isinstance(raw, str) else raw
    return data


def test_proxy_refusals_are_audited(
    client: httpx.Client, admin: dict[str, str], new_key: Callable[..., tuple[str, dict[str, str]]]
) -> None:
    key_id, key = new_key(DEFAULT_SCOPES)
    for _ in range(5):  # repeated refusals are audited once, not once per request
        assert client.get("/apps/grafana/d", headers=key).status_code == 403
    row = find(client, admin, "access.denied", actor=key_id)
    assert row["success"] is False and row["ip"] == "127.0.0.1" and row["target"] == "/apps/grafana/d"
    details = details_of(row)
    assert details["routeId"] == "grafana" and details["required"] == ["access:grafana"]
    assert details["kind"] == "apikey"
    rows = [r for r in audit(client, admin, action="access.denied", limit=1000) if r["actor"] == key_id]
    assert len(rows) == 1
    # A revoked key used on the proxy path.
    assert client.delete(f"/api/v1/apikeys/{key_id}", headers=admin).status_code in (200, 204)
    assert client.get("/apps/plain/d", headers=key).status_code == 401
    assert find(client, admin, "apikey.denied", target=key_id)["success"] is False


def test_route_changes_are_audited_and_take_effect_on_the_proxy(
    client: httpx.Client, admin: dict[str, str], upstream: Upstream
) -> None:
    route_id = f"audited-{time.monotonic_ns()}"
    app_id = f"app-{route_id}"
    body = {"routeId": route_id, "appId": app_id, "pathBase": f"/apps/{route_id}/", "to": upstream.url}
    r = client.post("/api/v1/routes", json={**body, "scopes": ["access:audited"]}, headers=admin)
    assert r.status_code == 201, r.text
    created = find(client, admin, "route.created", target=route_id)
    assert created["actor"] == "user-admin" and created["ip"] == "127.0.0.1"
    assert details_of(created)["pathBase"] == f"/apps/{route_id}/"
    assert find(client, admin, "app.registered", target=app_id)["actor"] == "user-admin"
    # The new route is live and guarded at once.
    assert client.get(f"/apps/{route_id}/x").status_code == 401
    assert reached_upstream(client.get(f"/apps/{route_id}/x", headers=admin), f"/apps/{route_id}/x")

    r = client.patch(f"/api/v1/routes/{route_id}", json={"publicAccess": True}, headers=admin)
    assert r.status_code == 200, r.text
    updated = find(client, admin, "route.updated", target=route_id)
    assert "public_access" in details_of(updated)["fields"]
    assert reached_upstream(client.get(f"/apps/{route_id}/x"), f"/apps/{route_id}/x")
    r = client.put(f"/api/v1/routes/{route_id}", json=body, headers=admin)
    assert r.status_code == 200, r.text
    assert client.get(f"/apps/{route_id}/x").status_code == 401
    rows = [r for r in audit(client, admin, action="route.updated", limit=1000) if r["target"] == route_id]
    assert len(rows) == 2

    assert client.delete(f"/api/v1/routes/{route_id}", headers=admin).status_code == 204
    deleted = find(client, admin, "route.deleted", target=route_id)
    assert deleted["actor"] == "user-admin" and details_of(deleted)["appId"] == app_id
    assert find(client, admin, "app.deleted", target=app_id)
    assert client.get(f"/apps/{route_id}/x", headers=admin).status_code == 404


def test_refused_route_changes_are_not_audited_as_changes(
    client: httpx.Client, admin: dict[str, str], new_key: Callable[..., tuple[str, dict[str, str]]]
) -> None:
    key_id, key = new_key(["read:catalog"])
    body = {"routeId": "sneaky", "pathBase": "/apps/sneaky/", "to": "http://127.0.0.1:9"}
    assert client.post("/api/v1/routes", json=body, headers=key).status_code == 403
    assert find(client, admin, "access.denied", actor=key_id)["target"] == "/api/v1/routes"
    assert client.post("/api/v1/routes", json={**body, "to": "not a url"}, headers=admin).status_code == 400
    assert not [
        r for r in audit(client, admin, action="route.created", limit=1000) if r["target"] == "sneaky"
    ]


def test_websocket_hub_scope_denial_is_audited(
    srv: NekzusServer,
    client: httpx.Client,
    admin: dict[str, str],
    new_key: Callable[..., tuple[str, dict[str, str]]],
) -> None:
    key_id, key = new_key(["read:catalog"])

    async def run() -> dict[str, Any]:
        ws = await WS.open(srv.ws_url, key["X-API-Key"], expect_ok=False)
        try:
            assert ws.auth is not None
            return ws.auth
        finally:
            await ws.close()

    reply = asyncio.run(asyncio.wait_for(run(), 20))
    assert reply["type"] == "auth_failed", reply
    row = find(client, admin, "access.denied", actor=key_id)
    assert row["target"] == "/api/v1/ws" and details_of(row)["required"] == ["read:events"]


def test_open_websocket_tunnel_closes_when_its_credential_is_revoked(
    srv: NekzusServer,
    client: httpx.Client,
    admin: dict[str, str],
    new_device: Callable[..., tuple[str, dict[str, str]]],
    new_key: Callable[..., tuple[str, dict[str, str]]],
) -> None:
    """A tunnel already open when its device or API key is revoked is closed at once (1008)."""
    device_id, device_headers = new_device(["access:grafana", *DEFAULT_SCOPES])
    key_id, key_headers = new_key(["access:grafana", *DEFAULT_SCOPES])
    _, bystander = new_key(["access:grafana", *DEFAULT_SCOPES])

    async def run() -> None:
        url = srv.ws_url + "/apps/grafws/ws"
        for headers, revoke in (
            (device_headers, f"/api/v1/devices/{device_id}"),
            (key_headers, f"/api/v1/apikeys/{key_id}"),
        ):
            async with (
                connect(url, additional_headers=headers, open_timeout=5) as ws,
                connect(url, additional_headers=bystander, open_timeout=5) as other,
            ):
                await asyncio.wait_for(ws.recv(), 5)
                await asyncio.wait_for(other.recv(), 5)
                await ws.send("before")
                assert await asyncio.wait_for(ws.recv(), 5) == "echo:before"
                r = client.delete(revoke, headers=admin)
                assert r.status_code == 200, r.text
                with pytest.raises(ConnectionClosed):
                    for _ in range(10):
                        await asyncio.wait_for(ws.recv(), 5)
                assert ws.close_code == 1008
                await other.send("still here")
                assert await asyncio.wait_for(other.recv(), 5) == "echo:still here"

    asyncio.run(run())


STREAM_TIMEOUT = httpx.Timeout(10.0, read=5.0)  # a stream that is not cut fails the test after 5 s


def test_streaming_response_is_cut_when_its_credential_is_revoked(
    srv: NekzusServer,
    upstream: Upstream,
    client: httpx.Client,
    admin: dict[str, str],
    new_device: Callable[..., tuple[str, dict[str, str]]],
    new_key: Callable[..., tuple[str, dict[str, str]]],
) -> None:
    """An event stream (relayed as its chunks come) and a long download (relayed straight from the
    protocol callbacks once a pooled connection is idle) stop when the device or API key that opened
    them is revoked, as WebSocket tunnels do; other callers go on being served."""
    device_id, device_headers = new_device(["access:grafana", *DEFAULT_SCOPES])
    key_id, key_headers = new_key(["access:grafana", *DEFAULT_SCOPES])
    with srv.client(timeout=STREAM_TIMEOUT) as streams:
        # An event stream: one event, then the upstream waits for the gate, which stays shut.
        try:
            with streams.stream("GET", "/apps/grafana/sse-gated", headers=device_headers) as sse:
                assert sse.status_code == 200
                events = sse.iter_raw()
                assert next(events).startswith(b"data: first")
                r = client.delete(f"/api/v1/devices/{device_id}", headers=admin)
                assert r.status_code == 200, r.text
                with pytest.raises(httpx.RemoteProtocolError):
                    for _ in events:
                        pass
        finally:
            upstream.open_gate()

        # A 50 MiB download the client reads slowly; a pooled connection is idle, so it is relayed
        # without an ASGI task.
        assert streams.get("/apps/grafana/x", headers=key_headers).status_code == 200
        received = 0
        with streams.stream("GET", "/apps/grafana/big?mb=50", headers=key_headers) as big:
            assert big.status_code == 200 and big.headers["content-length"] == str(50 << 20)
            pieces = big.iter_raw()
            received += len(next(pieces))
            r = client.delete(f"/api/v1/apikeys/{key_id}", headers=admin)
            assert r.status_code == 200, r.text
            with pytest.raises(httpx.RemoteProtocolError):
                for piece in pieces:
                    received += len(piece)
        assert received < 50 << 20
        # A cut is an expected end: logged as such, not reported as a response left incomplete.
        logs = srv.logs()
        assert "response from grafana cut short: device_revoked" in logs  # the event stream
        assert "response from grafana cut short: credential revoked" in logs  # the download
        assert "without completing response" not in logs
        # The revoked key is refused from now on; the server goes on serving others.
        assert streams.get("/apps/grafana/x", headers=key_headers).status_code == 401
        _, other = new_key(["access:grafana", *DEFAULT_SCOPES])
        assert streams.get("/apps/grafana/x", headers=other).status_code == 200


def test_streaming_response_on_a_public_route_is_not_cut(
    srv: NekzusServer,
    upstream: Upstream,
    client: httpx.Client,
    admin: dict[str, str],
    new_device: Callable[..., tuple[str, dict[str, str]]],
) -> None:
    """Anyone may read a public route: revoking the credential a caller happened to send changes
    nothing for a stream already open."""
    device_id, device_headers = new_device()
    with srv.client(timeout=STREAM_TIMEOUT) as streams:
        try:
            with streams.stream("GET", "/apps/pubs/sse-gated", headers=device_headers) as sse:
                events = sse.iter_raw()
                assert next(events).startswith(b"data: first")
                r = client.delete(f"/api/v1/devices/{device_id}", headers=admin)
                assert r.status_code == 200, r.text
                upstream.open_gate()
                assert b"".join(events).startswith(b"data: second")
        finally:
            upstream.open_gate()
