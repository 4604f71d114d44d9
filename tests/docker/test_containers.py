"""Container endpoints against the real test Docker engine."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.auth.conftest import bearer, create_admin, login
from tests.docker.conftest import ContainerFactory, HttpdFactory, poll
from tests.docker.engine import DockerEngine
from tests.nekzus_server import NekzusServer

pytestmark = [pytest.mark.xdist_group("docker"), pytest.mark.docker]


def test_list_shows_running_and_stopped(
    dclient: httpx.Client, httpd: HttpdFactory, container: ContainerFactory
) -> None:
    cid, port = httpd("web-list", labels={"nekzus.app.id": "weblist"})
    stopped = container("stopped-list", start=False)
    response = dclient.get("/api/v1/containers")
    assert response.status_code == 200
    items = {c["id"]: c for c in response.json()}
    web = items[cid[:12]]
    assert web["name"] == "web-list"
    assert web["image"] == "local/busybox:latest"
    assert web["state"] == "running"
    assert web["status"].startswith("Up")
    assert isinstance(web["created"], int) and web["created"] > 1_600_000_000
    assert web["ports"] == [{"ip": "127.0.0.1", "privatePort": 80, "publicPort": port, "type": "tcp"}]
    assert web["labels"] == {"nekzus.app.id": "weblist"}
    assert web["runtime"] == "docker" and web["namespace"] == ""
    assert items[stopped[:12]]["state"] == "created"

    assert dclient.get("/api/v1/containers", params={"runtime": "docker"}).status_code == 200
    bad = dclient.get("/api/v1/containers", params={"runtime": "podman"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "INVALID_RUNTIME"
    k8s = dclient.get("/api/v1/containers", params={"runtime": "kubernetes"})
    assert k8s.status_code == 503 and k8s.json()["error"]["code"] == "RUNTIME_UNAVAILABLE"
    assert dclient.get("/api/v1/containers", params={"namespace": "default"}).json() == []


def test_inspect_by_id_and_name(dclient: httpx.Client, container: ContainerFactory) -> None:
    cid = container("inspect-me", labels={"a": "b"})
    by_id = dclient.get(f"/api/v1/containers/{cid[:12]}")
    assert by_id.status_code == 200
    assert by_id.json()["Id"] == cid and by_id.json()["Config"]["Labels"] == {"a": "b"}
    assert dclient.get("/api/v1/containers/inspect-me").json()["Id"] == cid
    missing = dclient.get("/api/v1/containers/doesnotexist123")
    assert missing.status_code == 404
    assert missing.json()["error"] == {"code": "CONTAINER_NOT_FOUND", "message": "container not found"}


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/containers/%2E%2E",
        "/api/v1/containers/..%2F..%2Fetc",
        "/api/v1/containers/-rm",
        "/api/v1/containers/a%20b",
        "/api/v1/containers/%2E%2E/start",
        "/api/v1/containers/x%2Fy/stats",
    ],
)
def test_path_tricks_are_rejected(dclient: httpx.Client, path: str) -> None:
    method = "POST" if path.endswith("/start") else "GET"
    response = dclient.request(method, httpx.URL(path))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "INVALID_CONTAINER_ID"


def test_wrong_method_is_405(dclient: httpx.Client, container: ContainerFactory) -> None:
    cid = container("method-check")
    response = dclient.get(f"/api/v1/containers/{cid[:12]}/start")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


def test_stop_start_restart_are_async(
    dclient: httpx.Client, docker_engine: DockerEngine, container: ContainerFactory
) -> None:
    cid = container("lifecycle")
    short = cid[:12]
    stop = dclient.post(f"/api/v1/containers/{short}/stop", params={"timeout": 1})
    assert stop.status_code == 202
    body = stop.json()
    assert body["status"] == "accepted" and body["containerId"] == short
    assert body["message"] == "Container stop initiated" and body["timeout"] == 1
    assert isinstance(body["timestamp"], int)
    docker_engine.wait_state(cid, "exited")

    start = dclient.post(f"/api/v1/containers/{short}/start")
    assert start.status_code == 202 and start.json()["message"] == "Container start initiated"
    docker_engine.wait_state(cid, "running")

    before = docker_engine.inspect(cid)["State"]["StartedAt"]
    restart = dclient.post(f"/api/v1/containers/{short}/restart", params={"timeout": "1"})
    assert restart.status_code == 202 and restart.json()["message"] == "Container restart initiated"
    poll(lambda: docker_engine.inspect(cid)["State"]["StartedAt"] != before, what="restart")
    assert docker_engine.state(cid) == "running"


def _finished_job(dclient: httpx.Client, job_id: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        job: dict[str, Any] = dclient.get(f"/api/v1/jobs/{job_id}").json()
        return job if job["state"] in ("succeeded", "failed", "cancelled") else None

    found: dict[str, Any] = poll(check, what=f"job {job_id}")
    return found


def test_actions_run_as_recorded_jobs(
    dclient: httpx.Client, docker_engine: DockerEngine, container: ContainerFactory
) -> None:
    """Each accepted action is a job of kind container.<action>: listed, recorded with its outcome."""
    cid = container("as-job")
    stop = dclient.post(f"/api/v1/containers/{cid[:12]}/stop", params={"timeout": 1}).json()
    job = _finished_job(dclient, stop["jobId"])
    assert job["kind"] == "container.stop" and job["state"] == "succeeded", job
    assert job["triggeredBy"] and job["finishedAt"]
    assert docker_engine.state(cid) == "exited"
    listed = dclient.get("/api/v1/jobs", params={"kind": "container.stop"}).json()["jobs"]
    assert stop["jobId"] in [j["id"] for j in listed]
    # Stopping a stopped container fails: the job records why, as the failure event does.
    again = dclient.post(f"/api/v1/containers/{cid[:12]}/stop", params={"timeout": 1}).json()
    failed = _finished_job(dclient, again["jobId"])
    assert failed["state"] == "failed" and failed["error"], failed


@pytest.mark.parametrize("value", ["0", "301", "-5", "abc", "1.5"])
def test_timeout_is_validated(dclient: httpx.Client, container: ContainerFactory, value: str) -> None:
    cid = container(f"timeout-{value.replace('.', '_')}", start=False)
    for action in ("stop", "restart"):
        response = dclient.post(f"/api/v1/containers/{cid[:12]}/{action}", params={"timeout": value})
        assert response.status_code == 400, response.text
        assert response.json()["error"] == {
            "code": "INVALID_TIMEOUT",
            "message": "timeout must be between 1 and 300 seconds",
        }


def test_actions_on_unknown_container_are_404(dclient: httpx.Client) -> None:
    for action in ("start", "stop", "restart", "stats"):
        method = "GET" if action == "stats" else "POST"
        response = dclient.request(method, f"/api/v1/containers/nosuchcontainer/{action}")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "CONTAINER_NOT_FOUND"


def test_stats_move_when_cpu_burns(dclient: httpx.Client, container: ContainerFactory) -> None:
    """CPU use is computed from two samples of the container's CPU counter: a busy loop moves it, an
    idle container's stays put. How much CPU the loop gets depends on the machine's load (the host is
    shared), so the test asserts that the figure is non-zero and consistent, never a threshold."""
    burner = container("burner", ["sh", "-c", "while :; do :; done"])
    idle = container("idler")

    def busy_sample() -> dict[str, Any] | None:
        response = dclient.get(f"/api/v1/containers/{burner[:12]}/stats")
        assert response.status_code == 200, response.text
        sample: dict[str, Any] = response.json()
        return sample if sample["cpu"]["usage"] > 0 else None

    # Each call samples for about a second; a loaded host may starve the loop through one sample.
    stats: dict[str, Any] = poll(busy_sample, timeout=30, interval=0, what="the busy loop's CPU to move")
    cpu = stats["cpu"]
    assert stats["containerId"] == burner[:12]
    assert cpu["totalCores"] >= 1
    assert 0 < cpu["usage"] <= cpu["totalCores"] * 100 + 1, stats  # one loop: at most the whole host
    assert cpu["coresUsed"] == pytest.approx(cpu["usage"] / 100, abs=1e-4)
    assert 0 < stats["memory"]["used"] <= stats["memory"]["limit"]
    assert stats["memory"]["available"] == stats["memory"]["limit"] - stats["memory"]["used"]
    assert stats["network"]["rx"] >= 0 and stats["network"]["tx"] >= 0
    cold = dclient.get(f"/api/v1/containers/{idle[:12]}/stats").json()
    assert cold["cpu"]["usage"] < 5.0, cold  # `sleep` uses no CPU, whatever the load


def test_stats_of_stopped_container(dclient: httpx.Client, container: ContainerFactory) -> None:
    cid = container("not-running", start=False)
    response = dclient.get(f"/api/v1/containers/{cid[:12]}/stats")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "CONTAINER_NOT_RUNNING"


def test_all_stats_lists_app_containers(dclient: httpx.Client, container: ContainerFactory) -> None:
    app = container("stats-app", labels={"nekzus.app.id": "statsapp"})
    other = container("stats-other")
    body = dclient.get("/api/v1/containers/stats").json()
    ids = [c["containerId"] for c in body["containers"]]
    assert isinstance(body["timestamp"], int)
    assert app[:12] in ids or "catalog" in dclient.get("/api/v1/openapi.json").text
    assert other[:12] not in ids
    everything = dclient.get("/api/v1/containers/stats", params={"all": "true"}).json()
    all_ids = {c["containerId"] for c in everything["containers"]}
    assert {app[:12], other[:12]} <= all_ids


def test_batch_validation(dclient: httpx.Client) -> None:
    cases = [
        ([1, 2], "INVALID_REQUEST_BODY"),
        ({"operation": "explode", "containerIds": ["a"]}, "INVALID_ACTION"),
        ({"action": "start", "containerIds": []}, "EMPTY_CONTAINER_LIST"),
        ({"operation": "start"}, "EMPTY_CONTAINER_LIST"),
        ({"operation": "start", "containerIds": "abc"}, "INVALID_REQUEST_BODY"),
        ({"operation": "start", "containerIds": ["../x"]}, "INVALID_CONTAINER_ID"),
        ({"operation": "stop", "containerIds": ["abc"], "timeout": 0}, "INVALID_TIMEOUT"),
    ]
    for body, code in cases:
        response = dclient.post("/api/v1/containers/batch", json=body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"]["code"] == code, body
    raw = dclient.post(
        "/api/v1/containers/batch", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert 400 <= raw.status_code < 500


def test_batch_operation_and_action_spellings(
    dclient: httpx.Client, docker_engine: DockerEngine, container: ContainerFactory
) -> None:
    a = container("batch-a")
    b = container("batch-b")
    stopped = dclient.post(
        "/api/v1/containers/batch",
        json={"action": "stop", "containerIds": [a[:12], b[:12], "ghost"], "timeout": 1},
    )
    assert stopped.status_code == 200, stopped.text
    body = stopped.json()
    assert body["message"] == "Batch operation completed"
    assert (body["total"], body["success"], body["failed"]) == (3, 2, 1)
    by_id = {r["id"]: r for r in body["results"]}
    assert by_id[a[:12]] == {"id": a[:12], "name": "batch-a", "success": True, "error": None}
    assert by_id["ghost"]["success"] is False and by_id["ghost"]["error"]
    assert docker_engine.state(a) == "exited" and docker_engine.state(b) == "exited"
    started = dclient.post("/api/v1/containers/batch", json={"operation": "start", "container_ids": [a, b]})
    assert started.json()["success"] == 2
    assert docker_engine.state(a) == "running" and docker_engine.state(b) == "running"


def test_bulk_operations_skip_protected(
    dclient: httpx.Client, docker_engine: DockerEngine, container: ContainerFactory
) -> None:
    a = container("bulk-a")
    b = container("bulk-b", start=False)
    keep = container("bulk-keep", labels={"nekzus.skip": "true"})
    started = dclient.post("/api/v1/containers/start-all")
    assert started.status_code == 200
    body = started.json()
    assert body["message"] == "Start all operation completed"
    assert b[:12] in {r["id"] for r in body["results"]}
    assert docker_engine.state(b) == "running"

    stopped = dclient.post("/api/v1/containers/stop-all", params={"timeout": 1}).json()
    assert stopped["message"] == "Stop all operation completed"
    ids = {r["id"] for r in stopped["results"]}
    assert {a[:12], b[:12]} <= ids and keep[:12] not in ids
    assert stopped["failed"] == 0
    assert docker_engine.state(a) == "exited" and docker_engine.state(keep) == "running"

    restarted = dclient.post("/api/v1/containers/restart-all", params={"timeout": 1}).json()
    assert restarted["message"] == "Restart all operation completed"
    assert {a[:12], b[:12]} <= {r["id"] for r in restarted["results"] if r["success"]}
    assert docker_engine.state(a) == "running"
    bad = dclient.post("/api/v1/containers/stop-all", params={"timeout": 999})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "INVALID_TIMEOUT"


@pytest.fixture(scope="module")
def self_aware(
    docker_engine: DockerEngine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[NekzusServer, str]]:
    """A second Nekzus (one start for two tests): it "runs in" a container, recognised by HOSTNAME as
    Docker sets it (the container id), and has containers through the legacy discovery switch only."""
    me = docker_engine.run("pretend-nekzus")
    config = {"discovery": {"docker": {"enabled": True, "socket_path": docker_engine.host}}}
    srv = NekzusServer(config, env={"HOSTNAME": me[:12]}, data_dir=tmp_path_factory.mktemp("selfaware"))
    try:
        srv.start()
        yield srv, me
    finally:
        srv.stop()
        docker_engine.remove(me)


def test_never_touches_its_own_container(
    docker_engine: DockerEngine, self_aware: tuple[NekzusServer, str], container: ContainerFactory
) -> None:
    """Nekzus recognises itself by HOSTNAME (= its container id, as Docker sets it)."""
    srv, me = self_aware
    other = container("someone-else")
    with srv.client(timeout=60.0) as c:
        result = c.post("/api/v1/containers/stop-all", params={"timeout": 1}).json()
        ids = {r["id"] for r in result["results"]}
        assert other[:12] in ids and me[:12] not in ids
        assert docker_engine.state(me) == "running"
        batch = c.post(
            "/api/v1/containers/batch", json={"operation": "restart", "containerIds": [me[:12]]}
        ).json()
        assert batch["failed"] == 1 and batch["results"][0]["success"] is False
        assert docker_engine.state(me) == "running"


@pytest.fixture(scope="module")
def no_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NekzusServer, dict[str, str]]]:
    """A Nekzus whose Docker socket leads nowhere, on an untrusted network (one start for two tests),
    with an admin's bearer header."""
    data = tmp_path_factory.mktemp("no-engine")
    config = {
        "runtimes": {"docker": {"enabled": True, "socket_path": f"unix://{data}/none.sock"}},
        "auth": {"local_networks": []},
    }
    with NekzusServer(config, data_dir=data) as srv, srv.client() as c:
        create_admin(c, srv)
        yield srv, bearer(login(c))


def test_runtime_down_is_503(no_engine: tuple[NekzusServer, dict[str, str]]) -> None:
    srv, admin = no_engine
    with srv.client(headers=admin) as c:
        for method, path in (
            ("GET", "/api/v1/containers"),
            ("GET", "/api/v1/containers/abc"),
            ("POST", "/api/v1/containers/abc/start"),
            ("GET", "/api/v1/containers/stats"),
            ("POST", "/api/v1/containers/stop-all"),
        ):
            response = c.request(method, path)
            assert response.status_code == 503, (path, response.text)
            assert response.json()["error"]["code"] == "RUNTIME_UNAVAILABLE"
        health = c.get("/healthz", headers={"Accept": "application/json"}).json()
        assert health["components"]["runtime"]["status"] == "degraded"
        assert "unreachable" in health["components"]["runtime"]["message"]


def test_disabled_runtime_answers_with_a_clear_503(client: httpx.Client) -> None:
    """The shared server has no runtime configured: switched-off container features say why."""
    r = client.get("/api/v1/containers")
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "RUNTIME_UNAVAILABLE"


def test_legacy_discovery_switch_enables_containers(self_aware: tuple[NekzusServer, str]) -> None:
    srv, _me = self_aware
    with srv.client() as c:
        assert c.get("/api/v1/containers").status_code == 200
        health = c.get("/healthz", headers={"Accept": "application/json"}).json()
        assert health["components"]["runtime"]["status"] == "healthy"


def test_unauthenticated_callers_are_refused(no_engine: tuple[NekzusServer, dict[str, str]]) -> None:
    """Refused before the runtime is even asked (its socket leads nowhere here)."""
    srv, _admin = no_engine
    with srv.client() as c:
        assert c.get("/api/v1/containers").status_code == 401
        assert c.post("/api/v1/containers/x/start").status_code == 401
        assert c.post("/api/v1/containers/stop-all").status_code == 401


def test_stop_of_long_running_request_is_bounded(
    dclient: httpx.Client, docker_engine: DockerEngine, container: ContainerFactory
) -> None:
    """The stop is accepted at once and runs in the background: the container ignores SIGTERM, so the
    engine's stop takes the whole 30 s grace period, yet the answer comes while it is still running."""
    stubborn = ["sh", "-c", "trap '' TERM; while :; do sleep 1; done"]
    cid = container("bounded", stubborn, init=False)
    response = dclient.post(f"/api/v1/containers/{cid[:12]}/stop", params={"timeout": 30})
    assert response.status_code == 202
    assert docker_engine.state(cid) == "running"


def test_scopes_with_api_keys(dclient: httpx.Client, container: ContainerFactory) -> None:
    """Listing takes any credential; the raw inspect (environment, command, mounts), actions, bulk,
    approve and unsanitized export need write:*."""
    cid = container("scoped")
    created = dclient.post("/api/v1/apikeys", json={"name": "reader", "scopes": ["read:catalog"]})
    assert created.status_code == 201, created.text
    reader = {"X-API-Key": created.json()["key"]}
    writer_key = dclient.post("/api/v1/apikeys", json={"name": "writer", "scopes": ["write:*"]}).json()["key"]
    writer = {"X-API-Key": writer_key}
    short = cid[:12]
    assert dclient.get("/api/v1/containers", headers=reader).status_code == 200
    assert dclient.post(f"/api/v1/containers/{short}/export", headers=reader).status_code == 200
    assert dclient.get(f"/api/v1/containers/{short}", headers=writer).status_code == 200
    for method, path, body in (
        ("GET", f"/api/v1/containers/{short}", None),
        ("POST", f"/api/v1/containers/{short}/stop", None),
        ("POST", "/api/v1/containers/stop-all", None),
        ("POST", "/api/v1/containers/batch", {"operation": "stop", "containerIds": [short]}),
        ("POST", f"/api/v1/containers/{short}/export", {"sanitize_secrets": False}),
        ("POST", "/api/v1/discovery/proposals/x/approve", None),
        ("POST", "/api/v1/discovery/rediscover", None),
    ):
        response = dclient.request(method, path, json=body, headers=reader)
        assert response.status_code == 403, (path, response.text)
        assert response.json()["error"]["code"] == "FORBIDDEN"
    assert dclient.post(f"/api/v1/containers/{short}/restart?timeout=1", headers=writer).status_code == 202
    bad = dclient.get("/api/v1/containers", headers={"X-API-Key": "nekzus_" + "0" * 64})
    assert bad.status_code == 401
