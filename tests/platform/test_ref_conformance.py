"""API conformance: one compact check per API area of paths, methods, status codes and the
field names/types the API documents (extra fields are allowed; missing fields, `null` lists, non-numeric
numbers and non-`Z` timestamps are not). Detailed behaviour lives in each domain's own tests."""

from __future__ import annotations

import http.server
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.events.conftest import WS, run
from tests.nekzus_server import NekzusServer, free_port

BOOTSTRAP = "ref-conformance-bootstrap-token-0123456789abcdef"
USER, PASSWORD = "admin", "ref conformance password"
RFC3339Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
JSON = "application/json"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_num(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_ts(value: Any) -> bool:
    return isinstance(value, str) and RFC3339Z.match(value) is not None


def is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def has(obj: Any, **types: Any) -> None:
    """`obj` is a dict holding every named API field, each passing its check (a type or a predicate)."""
    assert isinstance(obj, dict), obj
    for name, check in types.items():
        assert name in obj, f"missing API field {name!r} in {obj}"
        ok = isinstance(obj[name], check) if isinstance(check, type | tuple) else check(obj[name])
        assert ok, f"API field {name!r} has the wrong type: {obj[name]!r}"


def error_of(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith(JSON)
    body = r.json()
    assert set(body) == {"error", "message", "code"} and body["error"]["code"] == code, body
    assert body["message"] == body["error"]["message"] and body["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


class _Upstream(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html><head><title>up</title></head><body>up</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


@dataclass
class Ref:
    srv: NekzusServer
    upstream: str
    setup_status: dict[str, Any]
    setup: httpx.Response
    login: dict[str, Any]
    user_token: str
    paired: dict[str, Any]
    device_token: str


@pytest.fixture(scope="module")
def ref(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ref]:
    """A trusted-loopback server (discovery on, Docker runtime configured but unreachable so the
    container routes exist), an upstream for routes, the first admin user and a paired device."""
    data = tmp_path_factory.mktemp("ref")
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    config = {
        "bootstrap": {"tokens": [BOOTSTRAP]},
        "discovery": {"enabled": True},
        "runtimes": {"docker": {"enabled": True, "socket_path": f"unix://{data / 'no-docker.sock'}"}},
    }
    srv = NekzusServer(config, data_dir=data).start()
    try:
        with srv.client() as c:
            status = c.get("/api/v1/auth/setup-status").json()
            setup = c.post("/api/v1/auth/setup", json={"username": USER, "password": PASSWORD})
            login = c.post("/api/v1/auth/login", json={"username": USER, "password": PASSWORD})
            assert login.status_code == 200, login.text
            body = {
                "device": {"id": "ref-phone", "model": "iPhone 15 Pro", "platform": "ios", "pushToken": "t"}
            }
            paired = c.post("/api/v1/auth/pair", json=body, headers=bearer(BOOTSTRAP))
            assert paired.status_code == 200, paired.text
        yield Ref(
            srv,
            f"http://127.0.0.1:{upstream.server_address[1]}",
            status,
            setup,
            login.json(),
            login.json()["token"],
            paired.json(),
            paired.json()["accessToken"],
        )
    finally:
        srv.stop()
        upstream.shutdown()


@pytest.fixture
def c(ref: Ref) -> Iterator[httpx.Client]:
    with ref.srv.client() as client:
        yield client


# --- Overview / Authentication / Rate limiting / Error handling --------------------------------------


def test_overview_errors_and_rate_limits(tmp_path: Path) -> None:
    srv = NekzusServer({"auth": {"local_networks": []}}, data_dir=tmp_path, rate_limits=True).start()
    try:
        with srv.client() as c:
            r = c.get("/healthz")
            assert r.headers["X-API-Version"]
            error_of(c.get("/api/v1/apps"), 401, "UNAUTHORIZED")
            error_of(c.get("/api/v1/apps", headers={"X-API-Key": "nekzus_" + "0" * 64}), 401, "UNAUTHORIZED")
            error_of(c.get("/api/v1/apps", headers=bearer("not.a.jwt")), 401, "UNAUTHORIZED")
            error_of(c.get("/api/v1/no-such-endpoint"), 404, "NOT_FOUND")
            error_of(c.put("/api/v1/auth/setup-status"), 405, "METHOD_NOT_ALLOWED")
            r = c.get("/api/v1/auth/setup-status")
            assert r.status_code == 200 and r.headers["X-API-Version"]
            for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"):
                assert r.headers[name].isdigit(), (name, r.headers.get(name))
            assert (
                int(r.headers["X-RateLimit-Limit"]) == 10
            )  # the authentication category allows 10 req/min, burst 10
            deadline = time.monotonic() + 10
            for _ in range(30):
                r = c.get("/api/v1/auth/setup-status")
                if r.status_code == 429 or time.monotonic() > deadline:
                    break
            error_of(r, 429, "RATE_LIMIT_EXCEEDED")
            assert r.headers["X-RateLimit-Remaining"] == "0" and r.headers["Retry-After"].isdigit()
    finally:
        srv.stop()


# --- Health --------------------------------------------------------------------------------------------


def test_health_probes(c: httpx.Client) -> None:
    for path in ("/healthz", "/livez", "/readyz"):
        r = c.get(path)
        assert (r.status_code, r.text) == (200, "ok"), (path, r.text)
        assert r.headers["X-API-Version"]


# --- Authentication endpoints -------------------------------------------------------------------------


def test_authentication_endpoints(ref: Ref, c: httpx.Client) -> None:
    qr = c.get("/api/v1/auth/qr")
    assert qr.status_code == 200
    body = qr.json()
    has(body, qr=dict, code=str)
    has(body["qr"], u=str, c=str)
    assert body["qr"]["c"] == body["code"] and len(body["code"]) == 8
    png = c.get("/api/v1/auth/qr", params={"format": "png"})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG")

    cfg = c.post("/api/v1/pair", json={"code": body["code"]}, headers={"X-Pairing-Request": "true"})
    assert cfg.status_code == 200, cfg.text
    has(
        cfg.json(),
        baseUrl=str,
        name=str,
        spkiPins=is_str_list,
        bootstrapToken=str,
        capabilities=is_str_list,
        nexusId=lambda v: isinstance(v, str) and re.fullmatch(r"nexus_[0-9a-f]{12}", v),
        expiresAt=is_int,
    )
    bad = c.post("/api/v1/pair", json={"code": "ZZZZ2345"}, headers={"X-Pairing-Request": "true"})
    error_of(bad, 404, "INVALID_CODE")

    has(ref.setup_status, setupRequired=bool, hasUsers=bool)
    assert ref.setup_status == {"setupRequired": True, "hasUsers": False} | ref.setup_status
    assert ref.setup.status_code == 201
    has(ref.setup.json(), message=str, username=lambda v: v == USER)
    assert c.get("/api/v1/auth/setup-status").json()["setupRequired"] is False

    user = {"id": is_int, "username": str, "createdAt": is_ts, "lastLogin": is_ts, "isActive": bool}
    has(ref.login, token=str, user=dict)
    has(ref.login["user"], **user)
    me = c.get("/api/v1/auth/me", headers=bearer(ref.user_token))
    assert me.status_code == 200
    has(me.json(), user=dict)
    has(me.json()["user"], **user)

    token_fields = {"accessToken": str, "expiresIn": is_int, "scopes": is_str_list, "deviceId": str}
    has(ref.paired, **token_fields)
    assert ref.paired["deviceId"] == "ref-phone" and ref.paired["expiresIn"] == 43200
    refreshed = c.post("/api/v1/auth/refresh", headers=bearer(ref.device_token))
    assert refreshed.status_code == 200, refreshed.text
    has(refreshed.json(), **token_fields)

    spare = c.post("/api/v1/auth/login", json={"username": USER, "password": PASSWORD}).json()["token"]
    out = c.post("/api/v1/auth/logout", headers=bearer(spare))
    assert out.status_code == 200 and out.json()["message"] == "Logged out successfully"


# --- Admin endpoints ------------------------------------------------------------------------------------


def test_admin_endpoints(ref: Ref, c: httpx.Client) -> None:
    info = c.get("/api/v1/admin/info")
    assert info.status_code == 200
    has(info.json(), version=str, nexusId=str, capabilities=is_str_list, buildDate=str)
    assert {"discovery", "websocket", "containers"} <= set(info.json()["capabilities"])

    stats = c.get("/api/v1/stats")
    assert stats.status_code == 200
    for card in ("routes", "devices", "discoveries", "requests"):
        has(stats.json(), **{card: dict})
        has(stats.json()[card], value=is_int, trend=str, trendUp=bool)

    activity_fields = {
        "id": str,
        "type": str,
        "icon": str,
        "iconClass": str,
        "message": str,
        "timestamp": is_int,
    }
    plain = c.get("/api/v1/activity/recent")
    assert plain.status_code == 200 and isinstance(plain.json(), list) and plain.json()
    has(plain.json()[0], **activity_fields)
    page = c.get("/api/v1/activity/recent", params={"limit": 10, "offset": 0})
    has(page.json(), activities=list, total=is_int, limit=is_int, offset=is_int)
    has(page.json()["activities"][0], **activity_fields)

    error_of(c.get("/api/v1/audit-logs"), 401, "UNAUTHORIZED")  # strict JWT, even from loopback
    logs = c.get("/api/v1/audit-logs", params={"limit": 50}, headers=bearer(ref.user_token))
    assert logs.status_code == 200
    has(logs.json(), logs=list, limit=is_int, offset=is_int, count=is_int)
    assert logs.json()["limit"] == 50 and logs.json()["count"] == len(logs.json()["logs"])
    entry = next(e for e in logs.json()["logs"] if e["action"] == "device.paired")
    has(entry, id=is_int, action=str, actor=str, target=str, details=str, ip=str, timestamp=is_ts)


# --- Apps and routes -------------------------------------------------------------------------------------


def test_apps_and_routes(ref: Ref, c: httpx.Client) -> None:
    route = {
        "routeId": "route_refapp",
        "appId": "refapp",
        "pathBase": "/apps/refapp/",
        "to": ref.upstream,
        "websocket": True,
        "icon": "chart-line",
    }
    assert c.post("/api/v1/routes", json=route).status_code == 201
    put = c.put("/api/v1/routes/route_refapp", json=route)
    assert put.status_code == 200, put.text
    has(put.json(), routeId=str, appId=str, pathBase=str, to=str, websocket=bool)
    assert put.json()["websocket"] is True

    deadline = time.monotonic() + 10
    while True:
        routes = c.get("/api/v1/routes").json()
        mine = next(r for r in routes if r["routeId"] == "route_refapp")
        if mine.get("healthInfo") or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    has(
        mine,
        routeId=str,
        appId=str,
        pathBase=str,
        to=str,
        stripPrefix=bool,
        websocket=bool,
        scopes=is_str_list,
        status=str,
        healthInfo=dict,
    )
    has(mine["healthInfo"], status=str, lastCheck=is_ts, responseTime=is_int)

    apps = c.get("/api/v1/apps")
    assert apps.status_code == 200
    app = next(a for a in apps.json() if a["id"] == "refapp")
    has(
        app,
        id=str,
        name=str,
        icon=str,
        tags=is_str_list,
        endpoints=dict,
        proxyPath=lambda v: v == "/apps/refapp/",
        url=lambda v: isinstance(v, str) and v.endswith("/apps/refapp/"),
        faviconURL=lambda v: v == "/api/v1/apps/refapp/favicon",
        healthStatus=str,
        lastHealthCheck=is_ts,
    )
    favicon = c.get(app["faviconURL"])  # the upstream has no icon: the path exists, the icon does not
    error_of(favicon, 404, "FAVICON_NOT_FOUND")

    health = c.get("/api/v1/services/refapp/health")
    assert health.status_code == 200
    has(health.json(), appId=str, status=str, lastCheck=is_ts, responseTime=is_int, statusCode=is_int)

    gone = c.delete("/api/v1/routes/route_refapp")
    assert gone.status_code == 204 and gone.content == b""
    error_of(c.delete("/api/v1/routes/route_refapp"), 404, "ROUTE_NOT_FOUND")


# --- Discovery -----------------------------------------------------------------------------------------


def _schema(spec: dict[str, Any], name: str) -> dict[str, Any]:
    schema: dict[str, Any] = spec["components"]["schemas"][name]
    return schema


def _requires(spec: dict[str, Any], name: str, *fields: str) -> None:
    required = set(_schema(spec, name).get("required", []))
    assert set(fields) <= required, (name, set(fields) - required)


def test_discovery(c: httpx.Client) -> None:
    proposals = c.get("/api/v1/discovery/proposals")
    assert proposals.status_code == 200 and proposals.json() == []
    again = c.post("/api/v1/discovery/rediscover")
    assert again.status_code == 200
    has(
        again.json(),
        status=lambda v: v == "success",
        message=str,
        dismissedCleared=is_int,
        activeCleared=is_int,
    )
    for action in ("approve", "dismiss"):
        r = c.post(f"/api/v1/discovery/proposals/proposal_unknown/{action}", json={"port": 3000})
        assert r.status_code == 200
        has(r.json(), status=str, id=lambda v: v == "proposal_unknown")

    # A proposal needs a discovery source (Docker): check the published response shape instead.
    spec = c.get("/api/v1/openapi.json").json()
    _requires(
        spec,
        "ProposalOut",
        "id",
        "source",
        "detectedScheme",
        "detectedHost",
        "detectedPort",
        "confidence",
        "suggestedApp",
        "suggestedRoute",
        "availablePorts",
        "tags",
        "lastSeen",
        "securityNotes",
    )
    _requires(spec, "SuggestedAppOut", "id", "name")
    assert "icon" in _schema(spec, "SuggestedAppOut")["properties"]
    _requires(spec, "SuggestedRouteOut", "pathBase", "to")
    _requires(spec, "AvailablePortOut", "port", "scheme", "label")
    _requires(spec, "ActionOut", "status", "id")
    assert {"app", "route"} <= set(_schema(spec, "ActionOut")["properties"])


# --- Devices ---------------------------------------------------------------------------------------------


DEVICE = {"deviceId": str, "deviceName": str, "scopes": is_str_list, "createdAt": is_ts, "lastSeenAt": is_ts}


def test_devices(c: httpx.Client) -> None:
    body = {"device": {"id": "ref-tablet", "model": "Pixel Tablet", "platform": "android"}}
    assert c.post("/api/v1/auth/pair", json=body, headers=bearer(BOOTSTRAP)).status_code == 200

    listed = c.get("/api/v1/devices")
    assert listed.status_code == 200 and isinstance(listed.json(), list)
    for device in listed.json():
        has(device, **DEVICE)
    page = c.get("/api/v1/devices", params={"limit": 10, "offset": 0})
    has(page.json(), devices=list, total=is_int, limit=is_int, offset=is_int)
    assert page.json()["limit"] == 10

    one = c.get("/api/v1/devices/ref-tablet")
    assert one.status_code == 200
    has(one.json(), **DEVICE)
    renamed = c.patch("/api/v1/devices/ref-tablet", json={"deviceName": "John's New Tablet"})
    assert renamed.status_code == 200
    has(renamed.json(), **DEVICE)
    assert renamed.json()["deviceName"] == "John's New Tablet"

    revoked = c.delete("/api/v1/devices/ref-tablet")
    assert revoked.status_code == 200
    has(revoked.json(), status=lambda v: v == "revoked", deviceId=str, message=str, revokedAt=str)
    assert c.get("/api/v1/devices/ref-tablet").status_code == 404


# --- API keys --------------------------------------------------------------------------------------------


def test_api_keys(c: httpx.Client) -> None:
    req = {
        "name": "Production CI/CD Pipeline",
        "scopes": ["read:catalog"],
        "expiresAt": "2099-01-15T00:00:00Z",
    }
    created = c.post("/api/v1/apikeys", json=req)
    assert created.status_code == 201, created.text
    key = created.json()
    has(
        key,
        id=str,
        name=str,
        prefix=lambda v: isinstance(v, str) and v.startswith("nekzus_"),
        key=lambda v: isinstance(v, str) and re.fullmatch(r"nekzus_[0-9a-f]{64}", v) is not None,
        scopes=is_str_list,
        expiresAt=lambda v: v == "2099-01-15T00:00:00Z",
        createdAt=is_ts,
        createdBy=str,
    )
    listed = c.get("/api/v1/apikeys")
    assert listed.status_code == 200
    mine = next(k for k in listed.json() if k["id"] == key["id"])
    fields = {
        "id": str,
        "name": str,
        "prefix": str,
        "scopes": is_str_list,
        "expiresAt": is_ts,
        "lastUsedAt": lambda v: v is None or is_ts(v),
        "createdAt": is_ts,
        "createdBy": str,
        "revokedAt": lambda v: v is None,
    }
    has(mine, **fields)
    assert "key" not in mine
    one = c.get(f"/api/v1/apikeys/{key['id']}")
    assert one.status_code == 200 and "key" not in one.json()
    has(one.json(), **fields)

    revoked = c.delete(f"/api/v1/apikeys/{key['id']}")
    assert revoked.status_code == 200 and revoked.json() == {"message": "API key revoked successfully"}
    assert is_ts(c.get(f"/api/v1/apikeys/{key['id']}").json()["revokedAt"])
    deleted = c.delete(f"/api/v1/apikeys/{key['id']}", params={"permanent": "true"})
    assert deleted.status_code == 200 and isinstance(deleted.json()["message"], str)
    error_of(c.get(f"/api/v1/apikeys/{key['id']}"), 404, "NOT_FOUND")


# --- Containers (shape only: the real calls need Docker, see tests/docker) ------------------------------


def test_containers_shape(c: httpx.Client) -> None:
    error_of(c.get("/api/v1/containers"), 503, "RUNTIME_UNAVAILABLE")  # runtime configured but unreachable
    spec = c.get("/api/v1/openapi.json").json()
    paths = spec["paths"]
    for path, method in [
        ("/api/v1/containers", "get"),
        ("/api/v1/containers/{containerId}", "get"),
        ("/api/v1/containers/stats", "get"),
        ("/api/v1/containers/{containerId}/stats", "get"),
        ("/api/v1/containers/start-all", "post"),
        ("/api/v1/containers/stop-all", "post"),
        ("/api/v1/containers/restart-all", "post"),
        ("/api/v1/containers/batch", "post"),
    ]:
        assert method in paths[path], (method, path)
    for action in ("start", "stop", "restart"):
        assert "202" in paths[f"/api/v1/containers/{{containerId}}/{action}"]["post"]["responses"], action
    stop = paths["/api/v1/containers/{containerId}/stop"]["post"]
    stop_params = {p["name"] for p in stop.get("parameters", [])}
    assert "timeout" in stop_params
    list_params = {p["name"] for p in paths["/api/v1/containers"]["get"].get("parameters", [])}
    assert {"runtime", "namespace"} <= list_params
    _requires(
        spec,
        "ContainerOut",
        "id",
        "name",
        "image",
        "state",
        "status",
        "created",
        "ports",
        "labels",
        "runtime",
        "namespace",
    )
    assert _schema(spec, "ContainerOut")["properties"]["created"]["type"] == "integer"
    assert {"ip", "privatePort", "publicPort", "type"} <= set(_schema(spec, "PortOut")["properties"])
    _requires(spec, "AcceptedOut", "status", "containerId", "message", "timestamp")
    assert "timeout" in _schema(spec, "AcceptedOut")["properties"]
    _requires(spec, "StatsOut", "containerId", "cpu", "memory", "network", "timestamp")
    _requires(spec, "CpuOut", "usage", "coresUsed", "totalCores")
    _requires(spec, "MemoryOut", "usage", "used", "limit", "available")
    _requires(spec, "NetworkOut", "rx", "tx")
    _requires(spec, "AllStatsOut", "containers", "timestamp")


# --- Webhooks and WebSocket message names ------------------------------------------------------------


def test_webhooks_and_websocket_messages(ref: Ref, c: httpx.Client) -> None:
    created = c.post("/api/v1/apikeys", json={"name": "hooks", "scopes": ["write:*"]})
    assert created.status_code == 201
    api_key = {"X-API-Key": created.json()["key"]}

    async def scenario() -> None:
        bad = await WS.open(ref.srv.ws_url, "not-a-valid-token", expect_ok=False)
        assert bad.auth is not None and bad.auth["type"] == "auth_failed"
        await bad.close()

        admin = await WS.open(ref.srv.ws_url, "")  # trusted loopback: auth_success then hello
        device = await WS.open(ref.srv.ws_url, ref.device_token)
        assert device.auth is not None and device.auth["type"] == "auth_success"
        assert device.hello is not None and device.hello["type"] == "hello"
        await device.send({"type": "ping", "data": {"n": 7}})
        assert (await device.recv_type("pong"))["data"] == {"n": 7}

        activity = c.post(
            "/api/v1/webhooks/activity",
            json={
                "message": "Deployment completed",
                "icon": "CheckCircle",
                "iconClass": "success",
                "details": "Version 2.0.0 deployed successfully",
                "deviceIds": ["ref-phone"],
            },
            headers=api_key,
        )
        assert activity.status_code == 200, activity.text
        has(activity.json(), success=lambda v: v is True, eventId=str)
        assert (await device.recv_type("webhook"))["data"]["message"] == "Deployment completed"

        notify = c.post(
            "/api/v1/webhooks/notify",
            json={"type": "custom_event", "data": {"title": "Build Complete"}, "deviceIds": []},
            headers=api_key,
        )
        assert notify.status_code == 200
        assert notify.json() == {"success": True, "sent": True}
        assert (await device.recv_type("webhook"))["data"]["type"] == "custom_event"

        body = {"device": {"id": "ref-ws-dev", "platform": "web"}}
        assert c.post("/api/v1/auth/pair", json=body, headers=bearer(BOOTSTRAP)).status_code == 200
        assert (await admin.recv_type("device_paired"))["data"]["deviceId"] == "ref-ws-dev"
        assert c.delete("/api/v1/devices/ref-ws-dev").status_code == 200
        assert (await admin.recv_type("device_revoked"))["data"]["deviceId"] == "ref-ws-dev"
        await device.close()
        await admin.close()

    run(scenario())


# --- Metrics ------------------------------------------------------------------------------------------------


def test_metrics(c: httpx.Client) -> None:
    r = c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert "# TYPE nekzus_http_requests_total counter" in r.text


# --- Session cookies ------------------------------------------------------------------------------------


def test_session_cookies(ref: Ref, c: httpx.Client) -> None:
    error_of(c.get("/api/v1/session-cookies"), 401, "UNAUTHORIZED")  # strict JWT, even from loopback
    listed = c.get("/api/v1/session-cookies", headers=bearer(ref.device_token))
    assert listed.status_code == 200 and listed.json() == {"sessions": []}
    one = c.delete("/api/v1/session-cookies/someapp", headers=bearer(ref.device_token))
    assert one.status_code == 204
    every = c.delete("/api/v1/session-cookies", headers=bearer(ref.device_token))
    assert every.status_code == 204
