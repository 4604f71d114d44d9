"""The toolbox catalog and deploy-request validation, through a real server (no Docker engine needed:
templates are checked with the real docker-compose binary, which does not contact the daemon)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from nekzus.toolbox.templates import infer_variables
from tests.nekzus_server import NekzusServer
from tests.toolbox.conftest import write_catalog

BUNDLED = {
    "portainer",
    "uptime-kuma",
    "grafana",
    "jellyfin",
    "vaultwarden",
    "pihole",
    "home-assistant",
    "nextcloud",
    "gitea",
    "code-server",
    "homepage",
    "dozzle",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NekzusServer]:
    root = tmp_path_factory.mktemp("tbcat")
    catalog = write_catalog(root / "catalog")
    config = {
        "toolbox": {"enabled": True, "catalog_dir": str(catalog), "data_dir": str(root / "deployments")},
        # Nothing here reaches the engine: a socket that does not exist is enough.
        "runtimes": {"docker": {"enabled": False, "socket_path": f"unix://{root}/none.sock"}},
    }
    srv = NekzusServer(config, data_dir=root / "srv")
    srv.start(timeout=90)
    yield srv
    srv.stop()


@pytest.fixture
def client(server: NekzusServer) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def test_variables_inferred_from_references() -> None:
    raw = (
        "# ${IN_COMMENT}\n"
        "x: ${ADMIN_PASSWORD}\ny: ${WEB_PORT:-8080}\nz: ${GF_SERVER_ROOT_URL:-}\n"
        "w: $${ESCAPED} ${ADMIN_PASSWORD:-again} ${SERVICE_NAME} ${API_TOKEN:?needed}\n"
    )
    found = {v.name: v for v in infer_variables(raw)}
    assert list(found) == ["ADMIN_PASSWORD", "WEB_PORT", "GF_SERVER_ROOT_URL", "API_TOKEN"]
    assert found["ADMIN_PASSWORD"].required and found["ADMIN_PASSWORD"].type == "password"
    assert found["ADMIN_PASSWORD"].label == "Admin Password"
    assert not found["WEB_PORT"].required and found["WEB_PORT"].default == "8080"
    assert found["WEB_PORT"].type == "number"
    assert (
        found["GF_SERVER_ROOT_URL"].label == "Server Root Url" and found["GF_SERVER_ROOT_URL"].default == ""
    )
    assert found["API_TOKEN"].required and found["API_TOKEN"].type == "password"


def test_bundled_and_custom_templates_listed(client: httpx.Client) -> None:
    body = client.get("/api/v1/toolbox/services").json()
    ids = {s["id"] for s in body["services"]}
    assert body["count"] == len(body["services"])
    assert ids >= BUNDLED | {"testweb", "broken", "noimage"}
    # Templates without name/category labels or rejected by the compose loader are skipped.
    assert "nolabels" not in ids and "notcompose" not in ids
    by_id = {s["id"]: s for s in body["services"]}
    assert by_id["jellyfin"]["image"].startswith("jellyfin/jellyfin")
    assert by_id["testweb"]["tags"] == ["web", "test"] and by_id["testweb"]["source"] == "custom"


def test_category_filter(client: httpx.Client) -> None:
    body = client.get("/api/v1/toolbox/services", params={"category": "monitoring"}).json()
    assert {s["id"] for s in body["services"]} >= {"grafana", "uptime-kuma", "dozzle"}
    assert all(s["category"] == "monitoring" for s in body["services"])
    assert client.get("/api/v1/toolbox/services", params={"category": "nope"}).json() == {
        "services": [],
        "count": 0,
    }


def test_service_detail_and_variables(client: httpx.Client) -> None:
    grafana = client.get("/api/v1/toolbox/services/grafana").json()
    assert grafana["name"] == "Grafana" and grafana["default_port"] == 3000
    env = {v["name"]: v for v in grafana["env_vars"]}
    assert env["GF_SECURITY_ADMIN_PASSWORD"]["required"] is True
    assert env["GF_SECURITY_ADMIN_PASSWORD"]["type"] == "password"
    assert env["GF_SECURITY_ADMIN_USER"] == {
        "name": "GF_SECURITY_ADMIN_USER",
        "label": "Security Admin User",
        "description": "Configuration for Security Admin User",
        "type": "text",
        "required": False,
        "default": "admin",
    }


@pytest.mark.parametrize("sid", ["nope", "..", "..%2Fgrafana", "%2e%2e", "grafana%2F..%2Fx"])
def test_unknown_service_404(client: httpx.Client, sid: str) -> None:
    response = client.get(f"/api/v1/toolbox/services/{sid}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] in ("SERVICE_NOT_FOUND", "NOT_FOUND")


def _deployments(client: httpx.Client) -> list[dict[str, object]]:
    body = client.get("/api/v1/toolbox/deployments").json()
    assert body["count"] == len(body["deployments"])
    return list(body["deployments"])


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"serviceName": "x"}, 400, "MISSING_SERVICE_ID"),
        ({"serviceId": "nope", "serviceName": "x"}, 404, "SERVICE_NOT_FOUND"),
        ({"service_id": "../testweb", "service_name": "x"}, 404, "SERVICE_NOT_FOUND"),
        ({"serviceId": "testweb", "serviceName": "x"}, 400, "INVALID_REQUEST"),
        ({"service_id": "testweb", "env_vars": {"GREETING": "  "}}, 400, "INVALID_REQUEST"),
        ({"serviceId": "testweb", "envVars": {"GREETING": "hi"}, "customPort": 70000}, 400, "INVALID_PORT"),
        ({"serviceId": "testweb", "envVars": {"GREETING": "hi", "bad-name": "1"}}, 400, "INVALID_REQUEST"),
        (
            {"serviceId": "testweb", "envVars": {"GREETING": "hi"}, "serviceName": "!!!"},
            400,
            "INVALID_REQUEST",
        ),
        ({"serviceId": "testweb", "envVars": {"GREETING": "hi"}, "autoStart": "yes"}, 400, "INVALID_REQUEST"),
    ],
)
def test_bad_deploy_requests_make_nothing(
    client: httpx.Client, body: dict[str, object], status: int, code: str
) -> None:
    response = client.post("/api/v1/toolbox/deploy", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert _deployments(client) == []


def test_missing_variables_named(client: httpx.Client) -> None:
    response = client.post("/api/v1/toolbox/deploy", json={"serviceId": "grafana", "serviceName": "g"})
    assert response.status_code == 400
    assert "GF_SECURITY_ADMIN_PASSWORD" in response.json()["error"]["message"]


def test_port_conflict(client: httpx.Client, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        response = client.post(
            "/api/v1/toolbox/deploy",
            json={"serviceId": "testweb", "envVars": {"GREETING": "hi"}, "customPort": port},
        )
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "PORT_CONFLICT"
    assert _deployments(client) == []


@pytest.mark.parametrize("did", ["deploy_1", "nope", "..", "deploy_1%2F..%2F.."])
def test_unknown_deployment(client: httpx.Client, did: str) -> None:
    for method in ("GET", "DELETE"):
        response = client.request(method, f"/api/v1/toolbox/deployments/{did}")
        assert response.status_code == 404, (method, did, response.text)
        assert response.json()["error"]["code"] in ("DEPLOYMENT_NOT_FOUND", "NOT_FOUND")


def test_status_filter_validated(client: httpx.Client) -> None:
    response = client.get("/api/v1/toolbox/deployments", params={"status": "bogus"})
    assert response.status_code == 400
    assert client.get("/api/v1/toolbox/deployments", params={"status": "failed"}).json()["count"] == 0


def test_disabled_stubs(tmp_path: Path) -> None:
    srv = NekzusServer({}, data_dir=tmp_path)
    srv.start(timeout=90)
    try:
        with srv.client() as c:
            services = c.get("/api/v1/toolbox/services").json()
            deployments = c.get("/api/v1/toolbox/deployments").json()
    finally:
        srv.stop()
    assert services == {"services": [], "count": 0, "enabled": False}
    assert deployments == {"deployments": [], "count": 0, "enabled": False}
