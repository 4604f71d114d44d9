"""Kubernetes discovery against the API emulator, driven through the real client inside a real Nekzus:
proposals appear, change and disappear as objects change, also across a watch cut mid-stream and a
forced `410 Gone`; approval registers the route; malformed labels never stop the worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.kube import objects
from tests.kube.conftest import poll, proposals
from tests.kube.emulator import KubeEmulator
from tests.nekzus_server import NekzusServer

GRAFANA = "proposal_kubernetes_http_monitoring_grafana_80"
GRAFANA_INGRESS = "proposal_kubernetes-ingress_https_monitoring_grafana__443"
PRODUCTPAGE = "proposal_kubernetes_http_bookinfo_productpage_9080"


@pytest.fixture(scope="module")
def kserver(
    emulator: KubeEmulator, kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NekzusServer]:
    for obj in objects.all_objects():
        emulator.apply(obj)
    config = {
        "discovery": {
            "enabled": True,
            "kubernetes": {"enabled": True, "kubeconfig": str(kubeconfig), "poll_interval": "20s"},
        }
    }
    srv = NekzusServer(config, data_dir=tmp_path_factory.mktemp("kdisc"))
    srv.start(timeout=90)
    yield srv
    srv.stop()


@pytest.fixture
def kclient(kserver: NekzusServer) -> Iterator[httpx.Client]:
    with kserver.client() as c:
        yield c


def wait_for(client: httpx.Client, pid: str, check: Any = None, timeout: float = 15.0) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        p = proposals(client).get(pid)
        return p if p is not None and (check is None or check(p)) else None

    found: dict[str, Any] = poll(probe, timeout=timeout, what=pid)
    return found


def wait_gone(client: httpx.Client, pid: str, timeout: float = 15.0) -> None:
    poll(lambda: pid not in proposals(client), timeout=timeout, what=f"{pid} withdrawn")


def test_helm_grafana_service_and_tls_ingress_are_proposed(kclient: httpx.Client) -> None:
    p = wait_for(kclient, GRAFANA)
    assert p["source"] == "kubernetes"
    assert (p["detectedScheme"], p["detectedHost"], p["detectedPort"]) == (
        "http",
        "grafana.monitoring.svc.cluster.local",
        80,
    )
    app = p["suggestedApp"]
    assert app["id"] == "grafana" and app["name"] == "grafana"
    assert app["endpoints"] == {"cluster": "http://grafana.monitoring.svc.cluster.local:80"}
    assert "monitoring" in app["tags"]
    assert p["suggestedRoute"]["pathBase"] == "/apps/grafana/"
    assert p["suggestedRoute"]["to"] == "http://grafana.monitoring.svc.cluster.local:80"
    assert "Namespace: monitoring" in p["securityNotes"]
    assert p["confidence"] == pytest.approx(
        0.8
    )  # inferred (Helm chart, not a backend) + known chart + port 80

    ing = wait_for(kclient, GRAFANA_INGRESS)
    assert (ing["detectedScheme"], ing["detectedHost"], ing["detectedPort"]) == (
        "https",
        "grafana.home.example",
        443,
    )
    assert ing["suggestedRoute"]["to"] == "https://grafana.home.example"
    assert ing["suggestedApp"]["discoveryMeta"]["tls"] is True
    assert "TLS termination at Ingress" in ing["securityNotes"]
    assert ing["suggestedApp"]["endpoints"]["cluster"] == "http://grafana.monitoring.svc.cluster.local:80"


def test_istio_namespace_is_inferred_and_backends_and_system_are_not(kclient: httpx.Client) -> None:
    p = wait_for(kclient, PRODUCTPAGE)
    assert "Istio service mesh sidecar" in p["securityNotes"]
    ids = set(proposals(kclient))
    assert not any("postgres" in i for i in ids)  # a database chart is not a web app
    assert not any("kube_dns" in i or "kube_system" in i for i in ids)


def test_changes_update_and_deletion_withdraws(kclient: httpx.Client, emulator: KubeEmulator) -> None:
    wait_for(kclient, GRAFANA)
    svc = emulator.get("Service", "monitoring", "grafana")
    assert svc is not None
    svc["metadata"]["labels"]["nekzus.app.name"] = "Grafana Dashboards"
    svc["metadata"]["annotations"]["nekzus.app.icon"] = "chart-line"
    emulator.apply(svc)
    p = wait_for(kclient, GRAFANA, lambda p: p["suggestedApp"]["name"] == "Grafana Dashboards")
    assert p["suggestedApp"]["icon"] == "chart-line"

    wait_for(kclient, PRODUCTPAGE)
    emulator.delete("Service", "bookinfo", "productpage")
    wait_gone(kclient, PRODUCTPAGE)


def test_namespace_inheritance(kclient: httpx.Client, emulator: KubeEmulator) -> None:
    emulator.apply(objects.namespace("homelab", {"nekzus.enable": "true", "nekzus.route.websocket": "true"}))
    emulator.apply(
        objects.service("wiki", "homelab", {}, [{"name": "http", "port": 8080, "protocol": "TCP"}])
    )
    emulator.apply(
        objects.service(
            "internal",
            "homelab",
            {"nekzus.enable": "false"},
            [{"name": "http", "port": 80, "protocol": "TCP"}],
        )
    )
    p = wait_for(kclient, "proposal_kubernetes_http_homelab_wiki_8080")
    assert p["confidence"] >= 0.95 and p["suggestedRoute"]["websocket"] is True
    assert "proposal_kubernetes_http_homelab_internal_80" not in proposals(kclient)
    # The namespace switches off: its inherited proposal goes away.
    emulator.apply(objects.namespace("homelab", {"nekzus.enable": "false"}))
    wait_gone(kclient, "proposal_kubernetes_http_homelab_wiki_8080")


def test_one_proposal_per_port_and_malformed_labels(kclient: httpx.Client, emulator: KubeEmulator) -> None:
    emulator.apply(
        objects.service(
            "gitea",
            "default",
            {
                "nekzus.enable": "true",
                "nekzus.app.id": "not a valid id!",
                "nekzus.route.path": "/../../etc",
                "nekzus.route.websocket": "maybe",
            },
            [
                {"name": "http", "port": 3000, "protocol": "TCP"},
                {"name": "https", "port": 3443, "protocol": "TCP"},
                {"name": "ssh", "port": "twenty-two", "protocol": "TCP"},
                {"name": "dns", "port": 53, "protocol": "UDP"},
            ],
        )
    )
    http = wait_for(kclient, "proposal_kubernetes_http_default_gitea_3000")
    https = wait_for(kclient, "proposal_kubernetes_https_default_gitea_3443")
    assert http["suggestedApp"]["id"] == "gitea" and https["suggestedApp"]["id"] == "gitea-https"
    assert http["suggestedRoute"]["pathBase"] == "/apps/gitea/"
    assert http["suggestedRoute"]["websocket"] is False
    assert any("nekzus.app.id" in w for w in http["labelWarnings"])
    assert not any(i.startswith("proposal_kubernetes_http_default_gitea_53") for i in proposals(kclient))


def test_watch_cut_and_410_gone_are_survived(
    kclient: httpx.Client, emulator: KubeEmulator, kserver: NekzusServer
) -> None:
    wait_for(kclient, GRAFANA)
    # A watch cut mid-stream resumes from the last resourceVersion.
    emulator.drop_watches()
    emulator.apply(
        objects.service("after-drop", "default", {"nekzus.enable": "true"}, [{"name": "web", "port": 80}])
    )
    wait_for(kclient, "proposal_kubernetes_http_default_after_drop_80")
    # History compacted and watches cut: resuming gets 410 Gone, so the worker lists again.
    emulator.compact()
    emulator.drop_watches()
    emulator.apply(
        objects.service("after-gone", "default", {"nekzus.enable": "true"}, [{"name": "web", "port": 80}])
    )
    emulator.delete("Service", "default", "after-drop")
    wait_for(kclient, "proposal_kubernetes_http_default_after_gone_80", timeout=20)
    wait_gone(kclient, "proposal_kubernetes_http_default_after_drop_80", timeout=20)
    poll(lambda: "expired (410)" in kserver.logs(), timeout=10, what="410 logged")
    health = kclient.get("/healthz", headers={"Accept": "application/json"}).json()
    assert health["components"]["discovery"]["status"] == "healthy", health


def test_approve_and_dismiss(kclient: httpx.Client) -> None:
    wait_for(kclient, GRAFANA)
    approved = kclient.post(f"/api/v1/discovery/proposals/{GRAFANA}/approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["route"]["to"] == "http://grafana.monitoring.svc.cluster.local:80"
    routes = kclient.get("/api/v1/routes").json()
    assert any(r.get("appId") == "grafana" for r in routes)
    assert GRAFANA not in proposals(kclient)
    https = wait_for(kclient, "proposal_kubernetes_https_default_gitea_3443")
    dismissed = kclient.post(f"/api/v1/discovery/proposals/{https['id']}/dismiss")
    assert dismissed.json()["status"] == "dismissed"
    assert https["id"] not in proposals(kclient)
