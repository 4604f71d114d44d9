"""The Kubernetes runtime through the real API: pods listed (merged, filtered by runtime and namespace),
inspected, stopped/started through their Deployment, restarted by deleting the pod, bare pods refused
with 409, metrics-server stats (and a clear 503 without it), logs over the WebSocket; a kubeconfig that
points nowhere leaves the rest of Nekzus working."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from tests.kube import objects
from tests.kube.conftest import poll
from tests.kube.emulator import KubeEmulator
from tests.nekzus_server import NekzusServer, free_port


@pytest.fixture(scope="module")
def rserver(
    emulator: KubeEmulator, kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NekzusServer]:
    for obj in objects.all_objects():
        emulator.apply(obj)
    config = {
        "runtimes": {
            "primary": "kubernetes",
            # Docker configured but unreachable: the merged list skips it, Kubernetes still answers.
            "docker": {"enabled": True, "socket_path": f"tcp://127.0.0.1:{free_port()}"},
            "kubernetes": {"enabled": True, "kubeconfig": str(kubeconfig), "metrics_cache_ttl": "1s"},
        }
    }
    srv = NekzusServer(config, data_dir=tmp_path_factory.mktemp("krt"))
    srv.start(timeout=90)
    yield srv
    srv.stop()


@pytest.fixture
def rclient(rserver: NekzusServer) -> Iterator[httpx.Client]:
    with rserver.client() as c:
        yield c


def pods(client: httpx.Client, **params: str) -> list[dict[str, Any]]:
    response = client.get("/api/v1/containers", params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()
    return items


def grafana_pod(client: httpx.Client, state: str = "running") -> dict[str, Any] | None:
    for c in pods(client, runtime="kubernetes", namespace="monitoring"):
        if c["state"] == state and c["name"].startswith("grafana"):
            return c
    return None


def test_list_filter_and_merge(rclient: httpx.Client) -> None:
    items = pods(rclient, runtime="kubernetes", namespace="monitoring")
    assert [c["namespace"] for c in items] == ["monitoring"]
    pod = items[0]
    assert pod["runtime"] == "kubernetes" and pod["state"] == "running"
    assert pod["image"] == "docker.io/grafana/grafana:11.2.0"
    assert pod["ports"] == [{"privatePort": 3000, "type": "tcp"}]
    assert pod["labels"]["helm.sh/chart"] == "grafana-8.5.1"
    merged = pods(rclient)  # no filter: every runtime that answers (Docker is down here)
    assert {c["namespace"] for c in merged} >= {"monitoring", "bookinfo", "default"}
    assert all(c["runtime"] == "kubernetes" for c in merged)
    bad = rclient.get("/api/v1/containers", params={"runtime": "podman"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "INVALID_RUNTIME"
    docker = rclient.get("/api/v1/containers", params={"runtime": "docker"})
    assert docker.status_code == 503


def test_inspect_normalized(rclient: httpx.Client) -> None:
    pod = grafana_pod(rclient)
    assert pod is not None
    info = rclient.get(f"/api/v1/containers/{pod['id']}", params={"namespace": "monitoring"})
    assert info.status_code == 200, info.text
    body = info.json()
    assert body["owner"] == {"kind": "Deployment", "name": "grafana"}
    assert body["namespace"] == "monitoring" and body["runtime"] == "kubernetes"
    missing = rclient.get("/api/v1/containers/nope", params={"namespace": "monitoring"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "CONTAINER_NOT_FOUND"


def test_stop_start_restart_through_the_deployment(rclient: httpx.Client, emulator: KubeEmulator) -> None:
    pod = grafana_pod(rclient)
    assert pod is not None
    stopped = rclient.post(f"/api/v1/containers/monitoring/{pod['id']}/stop")
    assert stopped.status_code == 202, stopped.text
    assert stopped.json()["containerId"] == pod["id"] and stopped.json()["namespace"] == "monitoring"
    entry = poll(lambda: grafana_pod(rclient, "stopped"), what="scaled to zero")
    assert entry["id"] == "grafana"
    deployment = emulator.get("Deployment", "monitoring", "grafana")
    assert deployment is not None and deployment["spec"]["replicas"] == 0

    again = rclient.post("/api/v1/containers/monitoring/grafana/stop")
    assert again.status_code == 409 and again.json()["error"]["code"] == "CONTAINER_ALREADY_STOPPED"

    started = rclient.post("/api/v1/containers/grafana/start", params={"namespace": "monitoring"})
    assert started.status_code == 202, started.text
    running = poll(lambda: grafana_pod(rclient), what="scaled up")
    assert running["id"] != pod["id"]

    restarted = rclient.post(f"/api/v1/containers/monitoring/{running['id']}/restart")
    assert restarted.status_code == 202
    fresh = poll(
        lambda: (p := grafana_pod(rclient)) is not None and p["id"] != running["id"] and p, what="new pod"
    )
    assert fresh["state"] == "running"


def test_encoded_separators_are_not_the_path_form(rclient: httpx.Client) -> None:
    for path in ("/api/v1/containers/default%2Fdebug/stop", "/api/v1/containers/x%2Fy/stats"):
        method = rclient.post if path.endswith("stop") else rclient.get
        response = method(path)
        assert response.status_code == 400 and response.json()["error"]["code"] == "INVALID_CONTAINER_ID"


def test_bare_pod_cannot_be_started_or_restarted(rclient: httpx.Client) -> None:
    for action in ("start", "restart"):
        response = rclient.post(f"/api/v1/containers/default/debug/{action}")
        assert response.status_code == 409, response.text
        assert response.json()["error"]["code"] == "BARE_POD"
        assert "Deployment or StatefulSet" in response.json()["error"]["message"]


def test_stats_from_metrics_server(rclient: httpx.Client, emulator: KubeEmulator) -> None:
    emulator.metrics_enabled = False
    no_metrics = rclient.get("/api/v1/containers/default/postgres-0/stats")
    assert no_metrics.status_code == 503
    assert no_metrics.json()["error"]["code"] == "METRICS_UNAVAILABLE"
    emulator.metrics_enabled = True

    def fetch() -> dict[str, Any] | None:
        response = rclient.get("/api/v1/containers/postgres-0/stats", params={"namespace": "default"})
        return response.json() if response.status_code == 200 else None

    stats = poll(fetch, timeout=10, what="stats")
    assert stats["containerId"] == "postgres-0"
    assert stats["cpu"] == {"usage": 50.0, "coresUsed": 0.25, "totalCores": 0.5}
    assert stats["memory"]["used"] == 64 * 2**20 and stats["memory"]["limit"] == 256 * 2**20
    assert stats["network"] == {"rx": 0, "tx": 0}


def test_pod_usage_list_from_the_metrics_api(rclient: httpx.Client, emulator: KubeEmulator) -> None:
    """Every running pod's usage from one list of metrics.k8s.io, in the container-stats shape, parsed
    from metrics-server's own units (nano/micro/milli cores, KiB/MiB); without the API a 503 that says
    why (group not served, or registered but down), never an empty list that would look like idle pods."""
    emulator.metrics_enabled = False

    def refused(reason: str) -> dict[str, Any] | None:
        response = rclient.get("/api/v1/containers/stats", params={"runtime": "kubernetes", "all": "true"})
        if response.status_code != 503:
            return None
        error: dict[str, Any] = response.json()["error"]
        return error if reason in error["message"] else None

    error = poll(lambda: refused("is metrics-server installed"), timeout=10, what="503 without the group")
    assert error["code"] == "METRICS_UNAVAILABLE"
    emulator.metrics_enabled = True
    emulator.metrics_down = True
    poll(lambda: refused("not answering"), timeout=10, what="503 while metrics-server is down")
    emulator.metrics_down = False

    postgres = emulator.objects[("Pod", "default", "postgres-0")]
    container = postgres["spec"]["containers"][0]["name"]
    emulator.pod_usage[("default", "postgres-0")] = {container: {"cpu": "125000000n", "memory": "131072Ki"}}

    def usage(**params: str) -> list[dict[str, Any]] | None:
        response = rclient.get(
            "/api/v1/containers/stats", params={"runtime": "kubernetes", "all": "true", **params}
        )
        if response.status_code != 200:
            return None
        items: list[dict[str, Any]] = response.json()["containers"]
        return items

    items = poll(usage, timeout=10, what="pod usage")
    by_pod = {(i["namespace"], i["containerId"]): i for i in items}
    running = {
        (p["namespace"], p["id"]) for p in pods(rclient, runtime="kubernetes") if p["state"] == "running"
    }
    assert set(by_pod) == running
    pg = by_pod[("default", "postgres-0")]
    assert pg["runtime"] == "kubernetes"
    assert pg["cpu"] == {"usage": 25.0, "coresUsed": 0.125, "totalCores": 0.5}
    assert pg["memory"] == {
        "usage": 50.0,
        "used": 128 * 2**20,
        "limit": 256 * 2**20,
        "available": 128 * 2**20,
    }
    grafana = grafana_pod(rclient)
    assert grafana is not None
    gname = emulator.objects[("Pod", "monitoring", grafana["id"])]["spec"]["containers"][0]["name"]
    emulator.pod_usage[("monitoring", grafana["id"])] = {gname: {"cpu": "50000u", "memory": "32Mi"}}
    monitoring = usage(namespace="monitoring")
    assert monitoring is not None and {i["namespace"] for i in monitoring} == {"monitoring"}
    mine = next(i for i in monitoring if i["containerId"] == grafana["id"])
    assert mine["cpu"]["coresUsed"] == 0.05 and mine["memory"]["used"] == 32 * 2**20


def test_metrics_switched_off_never_asks_the_cluster(emulator: KubeEmulator, kubeconfig: Path) -> None:
    from nekzus.runtime.kubernetes import KubernetesRuntime, MetricsUnavailable

    async def scenario() -> None:
        runtime = KubernetesRuntime(str(kubeconfig), metrics_server=False)
        try:
            before = len(emulator.requests)
            with pytest.raises(MetricsUnavailable, match="metrics_server is false"):
                await runtime.pod_stats()
            with pytest.raises(MetricsUnavailable, match="metrics_server is false"):
                await runtime.stats("default/postgres-0")
            assert not [p for _m, p in emulator.requests[before:] if "metrics.k8s.io" in p]
        finally:
            await runtime.close()

    emulator.metrics_enabled = True
    asyncio.run(scenario())


def test_logs_over_websocket(rserver: NekzusServer, emulator: KubeEmulator) -> None:
    emulator.set_logs(
        "default", "postgres-0", ["LOG:  database system is ready", "LOG:  checkpoint starting"]
    )
    with connect(rserver.ws_url + "/api/v1/ws", open_timeout=5) as conn:
        conn.send(json.dumps({"type": "auth", "data": {"token": ""}}))
        seen: list[dict[str, Any]] = []

        def until(match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                msg: dict[str, Any] = json.loads(conn.recv(timeout=max(0.05, deadline - time.monotonic())))
                seen.append(msg)
                if match(msg):
                    return msg
            raise AssertionError(f"not received; got {[m.get('type') for m in seen]}")

        until(lambda m: m["type"] == "auth_success")
        conn.send(
            json.dumps(
                {
                    "type": "container.logs.subscribe",
                    "data": {
                        "containerId": "postgres-0",
                        "namespace": "default",
                        "tail": 10,
                        "follow": False,
                    },
                }
            )
        )
        first = until(lambda m: m["type"] == "container.logs.data")
        second = until(lambda m: m["type"] == "container.logs.data")
        assert [first["data"]["line"], second["data"]["line"]] == [
            "LOG:  database system is ready",
            "LOG:  checkpoint starting",
        ]
        assert first["data"]["stream"] == "stdout"
        assert (first["data"]["containerId"], first["data"]["namespace"]) == ("postgres-0", "default")
        until(lambda m: m["type"] == "container.logs.ended")


def test_log_unsubscribe_names_the_stream_like_subscribe(
    rserver: NekzusServer, emulator: KubeEmulator
) -> None:
    """A pod's followed log stream is stopped by an unsubscribe that names it the way the subscribe did
    (pod and namespace, and the container when one was given)."""
    emulator.set_logs("default", "postgres-0", ["LOG:  ready"])
    with connect(rserver.ws_url + "/api/v1/ws", open_timeout=5) as conn:
        conn.send(json.dumps({"type": "auth", "data": {"token": ""}}))
        nonces = iter(range(1000))

        def until(match: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
            seen: list[dict[str, Any]] = []
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                msg: dict[str, Any] = json.loads(conn.recv(timeout=max(0.05, deadline - time.monotonic())))
                seen.append(msg)
                if match(msg):
                    return seen
            raise AssertionError(f"not received; got {[m.get('type') for m in seen]}")

        def ask(type_: str, data: dict[str, Any]) -> list[dict[str, Any]]:
            """Send, then read everything up to the answer of a ping sent after it."""
            nonce = f"n{next(nonces)}"
            conn.send(json.dumps({"type": type_, "data": data}))
            conn.send(json.dumps({"type": "ping", "data": {"nonce": nonce}}))
            return until(lambda m: m["type"] == "pong" and (m.get("data") or {}).get("nonce") == nonce)

        def ended(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [m["data"] for m in messages if m["type"] == "container.logs.ended"]

        until(lambda m: m["type"] == "auth_success")
        pod = {"containerId": "postgres-0", "namespace": "default"}
        conn.send(json.dumps({"type": "container.logs.subscribe", "data": {**pod, "follow": True}}))
        until(lambda m: m["type"] == "container.logs.data")
        seen = ask("container.logs.unsubscribe", pod)
        if not ended(seen):
            seen = until(lambda m: m["type"] == "container.logs.ended")
        assert ended(seen)[-1]["reason"] == "stopped"
        assert (ended(seen)[-1]["containerId"], ended(seen)[-1]["namespace"]) == ("postgres-0", "default")

        one = {**pod, "container": "postgres"}
        conn.send(json.dumps({"type": "container.logs.subscribe", "data": {**one, "follow": True}}))
        until(lambda m: m["type"] == "container.logs.data")
        assert ended(ask("container.logs.unsubscribe", {**pod, "container": "sidecar"})) == []
        seen = ask("container.logs.unsubscribe", one)
        if not ended(seen):
            seen = until(lambda m: m["type"] == "container.logs.ended")
        assert ended(seen)[-1]["reason"] == "stopped"
        assert ended(seen)[-1]["container"] == "postgres"


def test_kubeconfig_pointing_nowhere(make_server: Callable[..., NekzusServer], tmp_path: Path) -> None:
    dead = KubeEmulator()
    dead.port = free_port()  # nothing listens there
    kubeconfig = dead.write_kubeconfig(tmp_path / "dead-kubeconfig")
    srv = make_server(
        {
            "runtimes": {"kubernetes": {"enabled": True, "kubeconfig": str(kubeconfig)}},
            "discovery": {"enabled": True, "kubernetes": {"enabled": True}},
        },
        start=False,
    )
    srv.start(timeout=90)
    with srv.client() as client:
        response = client.get("/api/v1/containers", params={"runtime": "kubernetes"})
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "RUNTIME_UNAVAILABLE"
        assert client.get("/api/v1/routes").status_code == 200
        assert client.get("/api/v1/discovery/proposals").json() == []
        assert client.get("/readyz").status_code == 200
        health = client.get("/healthz", headers={"Accept": "application/json"}).json()
        assert health["components"]["runtime"]["status"] == "degraded"


def test_missing_kubeconfig_is_unavailable_not_fatal(tmp_path: Path) -> None:
    from nekzus.runtime.base import RuntimeUnavailable
    from nekzus.runtime.kubernetes import KubernetesRuntime

    async def scenario() -> None:
        runtime = KubernetesRuntime(str(tmp_path / "missing"))
        for _ in range(2):  # retried on every call, never cached as broken
            with pytest.raises(RuntimeUnavailable):
                await runtime.list()
        await runtime.close()

    asyncio.run(scenario())
