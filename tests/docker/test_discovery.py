"""Docker discovery on the real engine, in `published` network mode (targets 127.0.0.1 only)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.docker.conftest import (
    ContainerFactory,
    HttpdFactory,
    discovery_scans,
    poll,
    wait_full_scan,
    wait_http,
)
from tests.docker.engine import DockerEngine
from tests.nekzus_server import NekzusServer

pytestmark = [pytest.mark.xdist_group("docker"), pytest.mark.docker]


def proposals(client: httpx.Client) -> dict[str, dict[str, Any]]:
    response = client.get("/api/v1/discovery/proposals")
    assert response.status_code == 200, response.text
    return {p["id"]: p for p in response.json()}


def wait_proposal(client: httpx.Client, pid: str, timeout: float = 10.0) -> dict[str, Any]:
    found: dict[str, Any] = poll(lambda: proposals(client).get(pid), timeout=timeout, what=f"proposal {pid}")
    return found


def test_labelled_container_is_proposed_within_seconds(dclient: httpx.Client, httpd: HttpdFactory) -> None:
    started = time.monotonic()
    cid, port = httpd(
        "grafana-like",
        labels={
            "nekzus.enable": "true",
            "nekzus.app.id": "grafana",
            "nekzus.app.name": "Grafana",
            "nekzus.app.icon": "chart-line",
            "nekzus.app.tags": "monitoring, dashboards",
            "nekzus.route.websocket": "true",
            "nekzus.route.strip_prefix": "false",
        },
    )
    p = wait_proposal(dclient, "proposal_docker_http_grafana_like_80")
    assert time.monotonic() - started < 8.0  # event-driven, not the periodic resync
    assert p["source"] == "docker"
    assert (p["detectedScheme"], p["detectedHost"], p["detectedPort"]) == ("http", "127.0.0.1", port)
    assert p["confidence"] == 1.0
    assert p["suggestedApp"]["id"] == "grafana" and p["suggestedApp"]["name"] == "Grafana"
    assert p["suggestedApp"]["icon"] == "chart-line"
    assert p["suggestedApp"]["tags"] == ["monitoring", "dashboards"]
    assert p["suggestedApp"]["endpoints"] == {"lan": f"http://127.0.0.1:{port}"}
    assert p["suggestedApp"]["discoveryMeta"]["containerId"] == cid[:12]
    route = p["suggestedRoute"]
    assert route["pathBase"] == "/apps/grafana/" and route["to"] == f"http://127.0.0.1:{port}"
    assert route["containerId"] == cid[:12] and route["scopes"] == ["access:grafana"]
    assert route["websocket"] is True and route["stripPrefix"] is False and route["rewriteHTML"] is True
    assert p["availablePorts"] == [
        {"port": port, "scheme": "http", "label": "Main UI (container port 80)", "containerPort": 80}
    ]
    assert p["tags"] == []
    assert p["lastSeen"].endswith("Z")
    assert "Discovered via Docker API" in p["securityNotes"]
    assert "Upstream uses HTTP (unencrypted)" in p["securityNotes"]


def test_confidence_without_enable_and_unlabelled_ignored(dclient: httpx.Client, httpd: HttpdFactory) -> None:
    httpd("plain-web")  # no nekzus labels: discovery is opt-in
    httpd("app-only", labels={"nekzus.app.id": "apponly"})
    httpd("switched-off", labels={"nekzus.enable": "false", "nekzus.app.id": "off"})
    p = wait_proposal(dclient, "proposal_docker_http_app_only_80")
    assert p["confidence"] == 0.85  # app id 0.85 + port 80 0.10, capped at 0.85 without nekzus.enable
    assert p["suggestedRoute"]["scopes"] == ["access:apponly"]
    current = proposals(dclient)
    assert not any("plain_web" in pid or "switched_off" in pid for pid in current)


def test_malformed_labels_are_ignored_with_warnings(
    dserver: NekzusServer, dclient: httpx.Client, httpd: HttpdFactory
) -> None:
    httpd(
        "odd-labels",
        labels={
            "nekzus.enable": "true",
            "nekzus.app.id": "bad id!",
            "nekzus.route.path": "no-slash",
            "nekzus.route.websocket": "perhaps",
            "nekzus.scheme": "gopher",
        },
    )
    p = wait_proposal(dclient, "proposal_docker_http_odd_labels_80")
    assert p["suggestedApp"]["id"] == "odd_labels"
    assert p["suggestedRoute"]["pathBase"] == "/apps/odd_labels/"
    assert p["suggestedRoute"]["websocket"] is False and p["detectedScheme"] == "http"
    assert len(p["labelWarnings"]) == 4
    assert "malformed label nekzus.app.id" in dserver.logs()
    assert dclient.get("/readyz").status_code == 200


def test_primary_port_and_all_ports(dclient: httpx.Client, container: ContainerFactory) -> None:
    from tests.nekzus_server import free_port

    p1, p2 = free_port(), free_port()
    # nothing listens: primary_port and discover.all_ports skip the HTTP probe
    container(
        "multi-port",
        ports={8080: p1, 9000: p2},
        labels={"nekzus.enable": "true", "nekzus.discover.all_ports": "true"},
    )
    container(
        "primary-only", ports={8080: free_port(), 9000: free_port()}, labels={"nekzus.primary_port": "9000"}
    )
    multi = wait_proposal(dclient, "proposal_docker_http_multi_port_8080")
    assert [a["port"] for a in multi["availablePorts"]] == [p1, p2]
    primary = wait_proposal(dclient, "proposal_docker_http_primary_only_9000")
    assert [a["containerPort"] for a in primary["availablePorts"]] == [9000]


def test_silent_ports_are_not_proposed(dclient: httpx.Client, container: ContainerFactory) -> None:
    from tests.nekzus_server import free_port

    container("silent", ports={8080: free_port()}, labels={"nekzus.enable": "true"})  # nothing answers HTTP
    # Its start event has been handled and a full scan has looked at it since: still no proposal.
    wait_full_scan(dclient, kick=True)
    assert not any("silent" in pid for pid in proposals(dclient))


def test_stopped_container_proposal_goes_away(
    dclient: httpx.Client, docker_engine: DockerEngine, httpd: HttpdFactory
) -> None:
    cid, _ = httpd("short-lived", labels={"nekzus.enable": "true"})
    wait_proposal(dclient, "proposal_docker_http_short_lived_80")
    docker_engine.stop_container(cid)
    poll(lambda: "proposal_docker_http_short_lived_80" not in proposals(dclient), what="proposal removal")


def test_dismiss_survives_restart_and_rediscover_brings_back(
    dserver: NekzusServer, httpd: HttpdFactory
) -> None:
    srv = dserver  # restarted in place: the shared server keeps its port and data directory
    pid = "proposal_docker_http_dismiss_me_80"
    httpd("dismiss-me", labels={"nekzus.enable": "true"})
    with srv.client() as c:
        wait_proposal(c, pid)
        unknown = c.post("/api/v1/discovery/proposals/nope/dismiss").json()
        assert unknown == {
            "status": "already_processed",
            "message": "Proposal has already been processed or does not exist",
            "id": "nope",
        }
        assert c.post(f"/api/v1/discovery/proposals/{pid}/dismiss").json() == {
            "status": "dismissed",
            "id": pid,
        }
        assert pid not in proposals(c)
        assert c.post(f"/api/v1/discovery/proposals/{pid}/dismiss").json()["status"] == "already_processed"
    srv.restart()
    with srv.client() as c:
        # A full resync has run since the restart (the counter starts again at zero with the process).
        poll(lambda: discovery_scans(c) >= 1, what="the first scan after the restart")
        assert pid not in proposals(c)
        again = c.post("/api/v1/discovery/rediscover")
        assert again.status_code == 200
        body = again.json()
        assert body["status"] == "success"
        assert body["message"] == "Rediscovery triggered. Discovery workers will scan for new services."
        assert body["dismissedCleared"] >= 1 and body["activeCleared"] >= 0
        wait_proposal(c, pid, timeout=5.0)


def test_approve_validation(dclient: httpx.Client, httpd: HttpdFactory) -> None:
    httpd("approve-check", labels={"nekzus.enable": "true"})
    pid = "proposal_docker_http_approve_check_80"
    wait_proposal(dclient, pid)
    missing = dclient.post("/api/v1/discovery/proposals/unknown_id/approve")
    assert missing.status_code == 200 and missing.json()["status"] == "already_processed"
    bad_port = dclient.post(f"/api/v1/discovery/proposals/{pid}/approve", json={"port": 1})
    assert bad_port.status_code == 400
    assert bad_port.json()["error"] == {
        "code": "INVALID_PORT",
        "message": "port 1 is not in the available ports list",
    }
    not_int = dclient.post(f"/api/v1/discovery/proposals/{pid}/approve", json={"port": "80"})
    assert not_int.status_code == 400 and not_int.json()["error"]["code"] == "INVALID_PORT"
    assert dclient.post(f"/api/v1/discovery/proposals/{pid}/approve", json=[1]).status_code == 400
    assert pid in proposals(dclient)


def test_discovery_health_and_unknown_routes(dclient: httpx.Client) -> None:
    health = dclient.get("/healthz", headers={"Accept": "application/json"}).json()
    assert health["components"]["discovery"]["status"] == "healthy"
    assert dclient.get("/api/v1/discovery/rediscover").status_code == 405


def _catalog_enabled(client: httpx.Client) -> bool:
    return "/api/v1/routes" in client.get("/api/v1/openapi.json").json()["paths"]


def test_approval_creates_working_route(
    dserver: NekzusServer, dclient: httpx.Client, httpd: HttpdFactory
) -> None:
    if not _catalog_enabled(dclient):
        pytest.skip("needs the catalog/proxy feature (proxy branch) merged")
    _cid, port = httpd(
        "approve-me",
        labels={"nekzus.enable": "true", "nekzus.app.id": "approveme"},
    )
    pid = "proposal_docker_http_approve_me_80"
    wait_proposal(dclient, pid)
    approved = dclient.post(f"/api/v1/discovery/proposals/{pid}/approve", json={"port": port})
    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert body["status"] == "approved" and body["id"] == pid
    assert body["app"]["id"] == "approveme"
    assert body["route"]["to"] == f"http://127.0.0.1:{port}"
    assert body["portExposure"]["riskLevel"] == "none"
    assert pid not in proposals(dclient)
    page = poll(lambda: (r := dclient.get("/apps/approveme/")).status_code == 200 and r, what="proxied route")
    assert page.text.endswith("ok\n")  # the upstream's page, behind the proxy's HTML rewriting
    assert '<base href="/apps/approveme/">' in page.text
    routes = dclient.get("/api/v1/routes").json()
    assert any(r["appId"] == "approveme" and r["to"] == f"http://127.0.0.1:{port}" for r in routes)
    wait_http(f"http://127.0.0.1:{port}/")
    # the app is routed now: the container is no longer proposed, even after rediscover
    wait_full_scan(dclient, kick=True)
    assert pid not in proposals(dclient)
