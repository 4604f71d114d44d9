"""Deployments on the real Docker engine with the real docker-compose binary: deploy, reach, redeploy
with the volume intact, remove with and without volumes, roll back failures, survive a restart."""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.docker.conftest import poll, wait_http
from tests.docker.engine import DockerEngine
from tests.nekzus_server import NekzusServer, free_port
from tests.toolbox.conftest import write_catalog

pytestmark = [pytest.mark.xdist_group("docker"), pytest.mark.docker]

PROJECT_LABEL = "com.docker.compose.project"


@pytest.fixture(scope="module")
def server(docker_engine: DockerEngine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NekzusServer]:
    root = tmp_path_factory.mktemp("tbdeploy")
    config = {
        "runtimes": {"docker": {"enabled": True, "socket_path": docker_engine.host}},
        "toolbox": {
            "enabled": True,
            "include_bundled": False,
            "catalog_dir": str(write_catalog(root / "catalog")),
            "data_dir": str(root / "deployments"),
            "auto_route": True,
        },
    }
    srv = NekzusServer(config, data_dir=root / "srv")
    srv.start(timeout=90)
    yield srv
    srv.stop()


@pytest.fixture
def client(server: NekzusServer) -> Iterator[httpx.Client]:
    with server.client(timeout=60.0) as c:
        yield c


class Events:
    """Collects WebSocket messages of one connection."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.seen: list[dict[str, Any]] = []

    def until(self, type_: str, deployment_id: str, timeout: float = 60.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for msg in self.seen:
                if msg.get("type") == type_ and (msg.get("data") or {}).get("deploymentId") == deployment_id:
                    return [
                        m for m in self.seen if (m.get("data") or {}).get("deploymentId") == deployment_id
                    ]
            try:
                raw = self.conn.recv(timeout=max(0.05, deadline - time.monotonic()))
            except TimeoutError:
                break
            self.seen.append(json.loads(raw))
        raise AssertionError(f"no {type_} for {deployment_id}; saw {[m.get('type') for m in self.seen]}")


@pytest.fixture
def events(server: NekzusServer) -> Iterator[Events]:
    with connect(server.ws_url + "/api/v1/ws", open_timeout=5) as conn:
        conn.send(json.dumps({"type": "auth", "data": {"token": ""}}))
        assert json.loads(conn.recv(timeout=10))["type"] == "auth_success"
        yield Events(conn)


def deploy(client: httpx.Client, body: dict[str, Any]) -> str:
    response = client.post("/api/v1/toolbox/deploy", json=body)
    assert response.status_code == 202, response.text
    data = response.json()
    assert data["status"] == "pending" and data["deployment_id"].startswith("deploy_")
    return str(data["deployment_id"])


def settled(client: httpx.Client, deployment_id: str, timeout: float = 90.0) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        body: dict[str, Any] = client.get(f"/api/v1/toolbox/deployments/{deployment_id}").json()
        return body if body["status"] in ("deployed", "failed") else None

    result: dict[str, Any] = poll(check, timeout=timeout, interval=0.2, what=f"deployment {deployment_id}")
    return result


def project_objects(engine: DockerEngine, project: str) -> dict[str, list[str]]:
    flt = json.dumps({"label": [f"{PROJECT_LABEL}={project}"]})
    containers = engine.http.get("/containers/json", params={"all": "1", "filters": flt}).json()
    networks = engine.http.get("/networks", params={"filters": flt}).json()
    volumes = engine.http.get("/volumes", params={"filters": flt}).json().get("Volumes") or []
    return {
        "containers": [c["Id"] for c in containers],
        "networks": [n["Name"] for n in networks],
        "volumes": [v["Name"] for v in volumes],
    }


def remove(client: httpx.Client, deployment_id: str, *, volumes: bool) -> None:
    params = {"removeVolumes": "true"} if volumes else {}
    response = client.delete(f"/api/v1/toolbox/deployments/{deployment_id}", params=params)
    assert response.status_code == 200, response.text
    assert response.json() == {"message": "Deployment removed successfully"}


def test_deploy_reach_redeploy_and_remove(
    client: httpx.Client, events: Events, docker_engine: DockerEngine, server: NekzusServer
) -> None:
    port = free_port()
    first = deploy(
        client,
        {
            "serviceId": "testweb",
            "serviceName": "My Site",
            "envVars": {"GREETING": "hello", "ADMIN_TOKEN": "s3cret"},
            "customPort": port,
            "autoStart": True,
        },
    )
    seen = events.until("toolbox.deploy.completed", first)
    progress = [m["data"] for m in seen if m["type"] == "toolbox.deploy.progress"]
    phases = [p["phase"] for p in progress]
    assert {"validating", "pulling", "creating", "starting", "routing"} <= set(phases), phases
    percents = [p["percent"] for p in progress]
    assert percents == sorted(percents) and percents[-1] == 100

    record = settled(client, first)
    assert record["status"] == "deployed", record
    assert record["project_name"] == "my-site" and record["deployed_at"]
    assert record["env_vars"] == {"GREETING": "hello", "ADMIN_TOKEN": "********"}
    assert record["volume_names"] == ["my-site_site"]
    assert record["network_names"] == ["my-site_backend"]

    page = wait_http(f"http://127.0.0.1:{port}/index.html").text
    assert page.startswith("hello ")

    objects = project_objects(docker_engine, "my-site")
    assert len(objects["containers"]) == 1 and objects["networks"] == ["my-site_backend"]
    info = docker_engine.inspect(objects["containers"][0])
    assert info["State"]["Status"] == "running"
    assert info["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert info["Config"]["Labels"]["nekzus.toolbox.deployment"] == first
    assert info["HostConfig"]["PortBindings"]["80/tcp"][0] == {"HostIp": "127.0.0.1", "HostPort": str(port)}
    assert [m["Name"] for m in info["Mounts"] if m["Type"] == "volume"] == ["my-site_site"]

    # The auto route points at the published loopback port.
    route = client.get("/api/v1/routes").json()
    routes = route if isinstance(route, list) else route.get("routes", [])
    mine = [r for r in routes if r.get("routeId") == record["route_id"]]
    assert mine and mine[0]["to"] == f"http://127.0.0.1:{port}" and mine[0]["pathBase"] == "/apps/my-site/"

    # A second deployment on the same port is refused before anything is made.
    clash = client.post(
        "/api/v1/toolbox/deploy",
        json={
            "service_id": "testweb",
            "service_name": "other",
            "env_vars": {"GREETING": "x"},
            "custom_port": port,
        },
    )
    assert clash.status_code == 409 and clash.json()["error"]["code"] == "PORT_CONFLICT"
    # So is a second deployment of the same name.
    again = client.post(
        "/api/v1/toolbox/deploy",
        json={"serviceId": "testweb", "serviceName": "my site", "envVars": {"GREETING": "x"}},
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "DEPLOYMENT_EXISTS"

    # Remove but keep the volume, then redeploy under the same name: the page (made once) is intact.
    remove(client, first, volumes=False)
    assert client.get(f"/api/v1/toolbox/deployments/{first}").status_code == 404
    objects = project_objects(docker_engine, "my-site")
    assert objects["containers"] == [] and objects["networks"] == []
    assert objects["volumes"] == ["my-site_site"]
    assert not [r for r in client.get("/api/v1/routes").json() if r.get("routeId") == record["route_id"]]

    second = deploy(
        client,
        {
            "serviceId": "testweb",
            "serviceName": "My Site",
            "envVars": {"GREETING": "changed"},
            "customPort": port,
        },
    )
    assert settled(client, second)["status"] == "deployed"
    assert wait_http(f"http://127.0.0.1:{port}/index.html").text == page

    remove(client, second, volumes=True)
    assert project_objects(docker_engine, "my-site") == {"containers": [], "networks": [], "volumes": []}


def test_auto_start_false_creates_without_starting(client: httpx.Client, docker_engine: DockerEngine) -> None:
    deployment = deploy(
        client,
        {
            "service_id": "testweb",
            "service_name": "idle",
            "env_vars": {"GREETING": "zz"},
            "custom_port": free_port(),
            "auto_start": False,
        },
    )
    record = settled(client, deployment)
    assert record["status"] == "deployed" and record["auto_start"] is False
    (cid,) = project_objects(docker_engine, "idle")["containers"]
    assert docker_engine.state(cid) == "created"
    listed = client.get("/api/v1/toolbox/deployments", params={"status": "deployed"}).json()
    assert deployment in {d["id"] for d in listed["deployments"]}
    remove(client, deployment, volumes=True)
    assert project_objects(docker_engine, "idle") == {"containers": [], "networks": [], "volumes": []}


def test_failed_deployment_leaves_nothing(
    client: httpx.Client, events: Events, docker_engine: DockerEngine
) -> None:
    deployment = deploy(client, {"serviceId": "broken", "serviceName": "broken"})
    failed = events.until("toolbox.deploy.failed", deployment)[-1]
    assert failed["data"]["status"] == "failed" and failed["data"]["error"]
    record = settled(client, deployment)
    assert record["status"] == "failed" and record["error_message"]
    assert project_objects(docker_engine, "broken") == {"containers": [], "networks": [], "volumes": []}
    listed = client.get("/api/v1/toolbox/deployments", params={"status": "failed"}).json()
    assert deployment in {d["id"] for d in listed["deployments"]}
    remove(client, deployment, volumes=True)


def test_missing_image_fails_cleanly(client: httpx.Client, docker_engine: DockerEngine) -> None:
    deployment = deploy(client, {"serviceId": "noimage", "serviceName": "noimage"})
    record = settled(client, deployment)
    assert record["status"] == "failed"
    assert "127.0.0.1:9/nekzus/missing:latest" in record["error_message"]
    assert project_objects(docker_engine, "noimage") == {"containers": [], "networks": [], "volumes": []}
    # The name is free again; removing the old failed record later leaves the new deployment alone.
    port = free_port()
    newer = deploy(
        client,
        {"serviceId": "testweb", "serviceName": "noimage", "envVars": {"GREETING": "n"}, "customPort": port},
    )
    assert settled(client, newer)["status"] == "deployed"
    remove(client, deployment, volumes=True)
    assert wait_http(f"http://127.0.0.1:{port}/index.html").text.startswith("n ")
    assert len(project_objects(docker_engine, "noimage")["volumes"]) == 1
    remove(client, newer, volumes=True)
    assert project_objects(docker_engine, "noimage") == {"containers": [], "networks": [], "volumes": []}


def test_deployment_cut_off_by_a_crash_is_failed_at_start_up(
    client: httpx.Client, server: NekzusServer, docker_engine: DockerEngine
) -> None:
    with socket.socket() as registry:
        registry.bind(("127.0.0.1", 0))
        registry.listen(16)
        port = registry.getsockname()[1]
        deployment = deploy(
            client, {"serviceId": "hang", "serviceName": "hang", "envVars": {"REGISTRY": f"127.0.0.1:{port}"}}
        )

        def pulling() -> bool:
            record = client.get(f"/api/v1/toolbox/deployments/{deployment}").json()
            return bool(record["status"] == "deploying" and record["phase"] == "pulling")

        poll(pulling, timeout=30, what="pulling phase")
        server.stop(sig=signal.SIGKILL)
        server.start(timeout=90)
    with server.client(timeout=60.0) as fresh:
        record = fresh.get(f"/api/v1/toolbox/deployments/{deployment}").json()
        assert record["status"] == "failed"
        assert record["error_message"] == "Interrupted by a server restart"
        remove(fresh, deployment, volumes=True)
    assert project_objects(docker_engine, "hang") == {"containers": [], "networks": [], "volumes": []}


def test_deployments_survive_restart(
    client: httpx.Client, server: NekzusServer, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    port = free_port()
    deployment = deploy(
        client,
        {
            "serviceId": "testweb",
            "serviceName": "keeper",
            "envVars": {"GREETING": "kept"},
            "customPort": port,
        },
    )
    assert settled(client, deployment)["status"] == "deployed"
    server.stop()
    server.start(timeout=90)
    with server.client(timeout=60.0) as fresh:
        record = fresh.get(f"/api/v1/toolbox/deployments/{deployment}").json()
        assert record["status"] == "deployed" and record["project_name"] == "keeper"
        assert wait_http(f"http://127.0.0.1:{port}/index.html").text.startswith("kept ")
        remove(fresh, deployment, volumes=True)
    assert project_objects(docker_engine, "keeper") == {"containers": [], "networks": [], "volumes": []}
