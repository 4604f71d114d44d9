"""Apps and routes through the API: CRUD taking effect without restart, validation, persistence."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest
import yaml

from tests.nekzus_server import NekzusServer
from tests.proxy.conftest import PNG, Upstream


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    up = Upstream().start()
    yield up
    up.stop()


@pytest.fixture
def srv(upstream: Upstream, make_server: Callable[..., NekzusServer]) -> NekzusServer:
    return make_server(
        {
            "apps": [{"id": "grafana", "name": "Grafana", "icon": "chart-line", "tags": ["monitoring"]}],
            "routes": [
                {
                    "id": "route_grafana",
                    "app_id": "grafana",
                    "path_base": "/apps/grafana/",
                    "to": upstream.url,
                    "strip_prefix": True,
                    "websocket": True,
                    "scopes": ["read:catalog"],
                }
            ],
            "health_checks": {"interval": "300ms", "unhealthy_threshold": 2, "path": "/health"},
        }
    )


def test_list_apps_and_routes_ref_shape(srv: NekzusServer) -> None:
    with srv.client() as c:
        apps = c.get("/api/v1/apps").json()
        routes = c.get("/api/v1/routes").json()
    assert [a["id"] for a in apps] == ["grafana"]
    app = apps[0]
    assert app["name"] == "Grafana"
    assert app["proxyPath"] == "/apps/grafana/"
    assert app["url"].endswith("/apps/grafana/")
    assert app["faviconURL"] == "/api/v1/apps/grafana/favicon"
    assert app["tags"] == ["monitoring"]
    route = routes[0]
    assert route["routeId"] == "route_grafana"
    assert route["websocket"] is True
    assert route["stripPrefix"] is True
    assert route["scopes"] == ["read:catalog"]
    assert route["status"] in ("ACTIVE", "UNKNOWN", "UNHEALTHY")
    assert set(route["healthInfo"]) >= {"status"}


def test_route_crud_takes_effect_without_restart(srv: NekzusServer, upstream: Upstream) -> None:
    with srv.client() as c:
        assert c.get("/apps/new/x").status_code == 404
        r = c.post(
            "/api/v1/routes",
            json={
                "routeId": "r_new",
                "appId": "newapp",
                "pathBase": "/apps/new/",
                "to": upstream.url,
                "stripPrefix": True,
            },
        )
        assert r.status_code == 201, r.text
        assert r.json()["pathBase"] == "/apps/new/"
        assert c.get("/apps/new/x").json()["path"] == "/x"
        assert c.get("/api/v1/routes/r_new").json()["appId"] == "newapp"
        # PATCH merges: only stripPrefix changes.
        r = c.patch("/api/v1/routes/r_new", json={"strip_prefix": False})
        assert r.status_code == 200
        assert r.json()["to"] == upstream.url
        assert c.get("/apps/new/x").json()["path"] == "/apps/new/x"
        # PUT replaces: omitted fields reset, path id wins.
        r = c.put(
            "/api/v1/routes/r_new",
            json={
                "routeId": "ignored",
                "appId": "newapp",
                "pathBase": "/apps/newer/",
                "to": upstream.url,
                "websockets": True,
            },
        )
        assert r.status_code == 200
        assert r.json()["routeId"] == "r_new"
        assert r.json()["websocket"] is True
        assert c.get("/apps/new/x").status_code == 404
        assert c.get("/apps/newer/x").status_code == 200
        assert c.delete("/api/v1/routes/r_new").status_code == 204
        assert c.get("/apps/newer/x").status_code == 404
        assert c.get("/api/v1/routes/r_new").status_code == 404
        assert c.delete("/api/v1/routes/r_new").status_code == 404
        assert (
            c.put("/api/v1/routes/nope", json={"pathBase": "/apps/x/", "to": upstream.url}).status_code == 404
        )
        assert "newapp" not in [a["id"] for a in c.get("/api/v1/apps").json()]


def test_conflicts_and_validation(srv: NekzusServer, upstream: Upstream) -> None:
    with srv.client() as c:
        r = c.post("/api/v1/routes", json={"routeId": "dup", "pathBase": "/apps/grafana", "to": upstream.url})
        assert r.status_code == 409
        assert r.json()["error"]["code"] == "ROUTE_CONFLICT"
        r = c.post(
            "/api/v1/routes", json={"routeId": "route_grafana", "pathBase": "/apps/z/", "to": upstream.url}
        )
        assert r.status_code == 409
        bad = [
            {"routeId": "b1", "pathBase": "/apps/b1/", "to": "ftp://x"},
            {"routeId": "b2", "pathBase": "/apps/b2/", "to": "not a url"},
            {"routeId": "b3", "pathBase": "apps/b3", "to": upstream.url},
            {"routeId": "b4", "pathBase": "/apps/../b4/", "to": upstream.url},
            {
                "routeId": "b5",
                "pathBase": "/apps/b5/",
                "to": upstream.url,
                "routingMode": "subdomain",
                "subdomain": "Bad_Name",
            },
            {"routeId": "b6", "to": upstream.url},
            {"routeId": "b 7", "pathBase": "/apps/b7/", "to": upstream.url},
        ]
        for body in bad:
            r = c.post("/api/v1/routes", json=body)
            assert r.status_code == 400, (body, r.text)
            assert r.json()["error"]["code"] == "VALIDATION_ERROR"
        r = c.post("/api/v1/routes", content=b"{nope", headers={"Content-Type": "application/json"})
        assert r.status_code == 400
        c.post(
            "/api/v1/routes",
            json={
                "routeId": "s1",
                "pathBase": "/apps/s1/",
                "to": upstream.url,
                "routingMode": "both",
                "subdomain": "same",
            },
        )
        r = c.post(
            "/api/v1/routes",
            json={
                "routeId": "s2",
                "pathBase": "/apps/s2/",
                "to": upstream.url,
                "routingMode": "subdomain",
                "subdomain": "same",
            },
        )
        assert r.status_code == 409


def test_every_field_persists_and_config_does_not_wipe_api_routes(
    srv: NekzusServer, upstream: Upstream
) -> None:
    body = {
        "routeId": "full",
        "appId": "fullapp",
        "pathBase": "/apps/full/",
        "to": upstream.url,
        "publicAccess": True,
        "persistCookies": True,
        "stripResponseCookies": True,
        "rewriteCookiePaths": True,
        "skipHealthCheck": True,
        "excludePaths": ["/api/"],
        "healthCheckPath": "/health",
        "healthCheckTimeout": "2s",
        "healthCheckInterval": "30s",
        "expectedStatusCodes": [200, 401],
        "tlsSkipVerify": True,
        "cache": True,
        "scopes": ["read:catalog"],
    }
    with srv.client() as c:
        assert c.post("/api/v1/routes", json=body).status_code == 201
    srv.restart()
    with srv.client() as c:
        got = c.get("/api/v1/routes/full").json()
        ids = [r["routeId"] for r in c.get("/api/v1/routes").json()]
    for key, value in body.items():
        assert got[key] == value, key
    assert ids == sorted(ids, key=lambda i: {"route_grafana": "/apps/grafana/", "full": "/apps/full/"}[i])
    assert "route_grafana" in ids and "full" in ids


def test_health_transitions_and_service_health(srv: NekzusServer, upstream: Upstream) -> None:
    def status() -> tuple[str, int]:
        with srv.client() as c:
            route = c.get("/api/v1/routes/route_grafana").json()
            svc = c.get("/api/v1/services/grafana/health")
            return route["healthInfo"]["status"], svc.status_code

    def wait_for(want: str) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if status()[0] == want:
                return
            time.sleep(0.1)
        raise AssertionError(f"never became {want}: {status()}")

    upstream.health_status = 200
    wait_for("healthy")
    assert status()[1] == 200
    with srv.client() as c:
        body = c.get("/api/v1/services/grafana/health").json()
        assert body["status"] == "healthy" and body["statusCode"] == 200 and "responseTime" in body
        assert c.get("/apps/grafana/x").status_code == 200
        comp = c.get("/healthz", headers={"Accept": "application/json"}).json()["components"]
        assert comp["health"]["status"] == "healthy"
    upstream.health_status = 500
    try:
        wait_for("unhealthy")
        with srv.client() as c:
            r = c.get("/api/v1/services/grafana/health")
            assert r.status_code == 503
            assert r.headers["x-health-status"] == "unhealthy"
            assert int(r.headers["x-consecutive-failures"]) >= 2
            h = c.head("/api/v1/services/grafana/health")
            assert h.status_code == 503 and h.content == b""
            p = c.get("/apps/grafana/x")
            assert p.status_code == 503
            assert p.json()["error"]["code"] == "SERVICE_UNHEALTHY"
            assert c.get("/api/v1/apps").json()[0]["healthStatus"] == "unhealthy"
    finally:
        upstream.health_status = 200
    wait_for("healthy")
    with srv.client() as c:
        assert c.get("/apps/grafana/x").status_code == 200
        assert c.get("/api/v1/services/nope/health").status_code == 404


def test_favicon_from_own_upstream(srv: NekzusServer) -> None:
    with srv.client() as c:
        r = c.get("/api/v1/apps/grafana/favicon")
        assert r.status_code == 200
        assert r.headers["content-type"] == "image/png"
        assert r.content == PNG
        assert c.get("/api/v1/apps/none/favicon").status_code == 404


def test_favicon_from_link_tag(make_server: Callable[..., NekzusServer]) -> None:
    up = Upstream(favicon_ico=False).start()
    try:
        srv = make_server(
            {
                "routes": [{"id": "r", "app_id": "linked", "path_base": "/apps/linked/", "to": up.url}],
                "health_checks": {"enabled": False},
            }
        )
        with srv.client() as c:
            r = c.get("/api/v1/apps/linked/favicon")
            assert r.status_code == 200 and r.content == PNG
    finally:
        up.stop()


def test_config_reapplied_at_start_keeps_api_routes(srv: NekzusServer, upstream: Upstream) -> None:
    with srv.client() as c:
        c.post("/api/v1/routes", json={"routeId": "api1", "pathBase": "/apps/api1/", "to": upstream.url})
        c.patch("/api/v1/routes/route_grafana", json={"stripPrefix": False})
    srv.stop()
    srv.config["routes"][0]["to"] = upstream.url + "/v2"
    srv.config_path.write_text(yaml.safe_dump(srv.config))
    srv.start()
    with srv.client() as c:
        ids = {r["routeId"]: r for r in c.get("/api/v1/routes").json()}
    assert "api1" in ids
    assert ids["route_grafana"]["to"] == upstream.url + "/v2"


def test_session_cookie_endpoints_need_a_jwt(srv: NekzusServer) -> None:
    with srv.client() as c:
        for method, path in (
            ("GET", "/api/v1/session-cookies"),
            ("DELETE", "/api/v1/session-cookies"),
            ("DELETE", "/api/v1/session-cookies/grafana"),
        ):
            r = c.request(method, path)
            assert r.status_code == 401, (method, path)
            assert r.json()["error"]["code"] == "UNAUTHORIZED"


def test_mutations_need_a_credential_when_untrusted(make_server: Callable[..., NekzusServer]) -> None:
    srv = make_server({"auth": {"local_networks": []}, "health_checks": {"enabled": False}})
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        assert c.get("/api/v1/routes").status_code == 401
        assert c.get("/api/v1/apps").status_code == 401
        assert c.post("/api/v1/routes", json={}).status_code == 401
