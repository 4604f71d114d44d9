"""Pages whose back ends need more than one process or are not merged yet (toolbox deployments without
Docker, backups, certificates, a federation with a peer, system resources), exercised against the API
reference's paths and shapes. Scripts run for real in test_pages_live.py, toolbox deployments in
test_dashboard_docker.py.

Only those endpoints are answered by the browser itself (Playwright request routing): a stand-in until
the real services merge, after which these flows belong against the real server. Sign-in, the session,
the CSRF header and the WebSocket (incl. a webhook toast) are real.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.nekzus_server import NekzusServer
from tests.ui.conftest import PASSWORD, screenshot, show, sign_in

pytestmark = [pytest.mark.browser]

SENT: list[tuple[str, str, Any, str]] = []  # (method, path, body, csrf header) of every stubbed call


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NekzusServer]:
    srv = NekzusServer(data_dir=tmp_path_factory.mktemp("uicontract"))
    srv.start(timeout=60)
    with srv.client() as c:
        assert (
            c.post("/api/v1/auth/setup", json={"username": "admin", "password": PASSWORD}).status_code == 201
        )
    yield srv
    srv.stop()


STATE: dict[str, Any] = {
    "deployments": [],
    "backups": [
        {
            "id": "backup_20261201_1",
            "description": "nightly",
            "timestamp": "2026-12-01T01:00:00Z",
            "size": 20480,
        }
    ],
}


def stub(route: Any) -> None:
    req = route.request
    path = req.url.split("://", 1)[1].split("/", 1)[1]
    path = "/" + path.split("?")[0]
    posted: dict[str, Any] | None = json.loads(req.post_data) if req.post_data else None
    SENT.append((req.method, path, posted, req.headers.get("x-csrf-token", "")))
    body = posted or {}
    reply: Any
    status = 200
    if path == "/api/v1/system/resources":
        reply = {"cpu": 12.5, "ram": 45.2, "disk": 68.3, "ram_used": 1, "ram_total": 2, "storage_size": 1}
    elif path == "/api/v1/toolbox/services":
        reply = {
            "services": [
                {
                    "id": "uptime-kuma",
                    "name": "Uptime Kuma",
                    "description": "Status monitoring",
                    "category": "monitoring",
                    "difficulty": "beginner",
                }
            ],
            "count": 1,
        }
    elif path == "/api/v1/toolbox/services/uptime-kuma":
        reply = {
            "id": "uptime-kuma",
            "name": "Uptime Kuma",
            "env_vars": [
                {"name": "TZ", "label": "Time zone", "type": "text", "required": True, "default": "UTC"}
            ],
        }
    elif path == "/api/v1/toolbox/deploy":
        STATE["deployments"] = [
            {
                "id": "deploy_1",
                "service_name": body["serviceName"],
                "status": "deploying",
                "phase": "pull",
                "progress": 40,
            }
        ]
        reply, status = (
            {"deployment_id": "deploy_1", "status": "pending", "message": "Deployment initiated"},
            202,
        )
    elif path == "/api/v1/toolbox/deployments":
        reply = {"deployments": STATE["deployments"], "count": len(STATE["deployments"])}
    elif path == "/api/v1/backups" and req.method == "POST":
        STATE["backups"].insert(0, {"id": "backup_new", "description": body["description"], "size": 1024})
        reply, status = {"id": "backup_new"}, 201
    elif path == "/api/v1/backups":
        reply = {"backups": STATE["backups"], "count": len(STATE["backups"])}
    elif path.endswith("/restore"):
        reply = {"message": "Restored 3 routes"}
    elif path == "/api/v1/certificates":
        reply = {
            "certificates": [
                {
                    "domain": "nekzus.local",
                    "issuer": "Nekzus Local CA",
                    "not_after": "2027-12-01T00:00:00Z",
                    "sans": ["nekzus.local", "127.0.0.1"],
                    "expires_in_days": 365,
                }
            ],
            "count": 1,
        }
    elif path == "/api/v1/federation/status":
        reply = {
            "enabled": True,
            "running": True,
            "local_peer_id": "peer_a",
            "local_peer_name": "home",
            "peer_count": 1,
            "peers_by_status": {"connected": 1},
        }
    elif path == "/api/v1/federation/peers":
        reply = [{"id": "peer_b", "name": "cabin", "address": "127.0.0.1:9443", "status": "connected"}]
    else:
        reply, status = {"error": {"code": "NOT_FOUND", "message": "Resource not found"}}, 404
    route.fulfill(status=status, content_type="application/json", body=json.dumps(reply))


@pytest.fixture(scope="module")
def page(browser: Any, server: NekzusServer) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    for prefix in (
        "toolbox",
        "backups",
        "certificates",
        "federation",
        "system",
    ):
        context.route(f"**/api/v1/{prefix}**", stub)
    pg = context.new_page()
    sign_in(pg, server)
    yield pg
    context.close()


def test_overview_charts_resources(page: Any) -> None:
    show(page, "overview")
    page.get_by_role("heading", name="CPU 12.5%").wait_for()
    assert page.locator("svg.chart polyline").count() == 3


def test_toolbox_deploy_form_from_template_variables(page: Any) -> None:
    show(page, "toolbox")
    page.get_by_role("button", name="Deploy Uptime Kuma").click()
    assert page.get_by_label("Time zone (required)").input_value() == "UTC"
    page.get_by_label("Time zone (required)").fill("Europe/Paris")
    page.get_by_label("Service name").fill("kuma")
    page.locator("dialog").get_by_role("button", name="Deploy").click()
    page.get_by_role("progressbar", name="Progress of kuma").wait_for()
    method, _path, body, csrf = next(s for s in SENT if s[1] == "/api/v1/toolbox/deploy")
    assert method == "POST" and csrf
    assert body == {
        "serviceId": "uptime-kuma",
        "serviceName": "kuma",
        "envVars": {"TZ": "Europe/Paris"},
        "autoStart": True,
    }
    screenshot(page, "toolbox-deploy-1280")


def test_backup_create_and_restore_with_options(page: Any) -> None:
    show(page, "backups")
    page.get_by_label("Description").fill("before upgrade")
    page.get_by_role("button", name="Create backup").click()
    page.locator("tr", has_text="before upgrade").wait_for()
    page.get_by_role("button", name="Restore backup backup_20261201_1").click()
    page.get_by_label("Restore Devices").uncheck()
    page.locator("dialog").get_by_role("button", name="Restore").click()
    page.get_by_text("Restored 3 routes").wait_for()
    _m, path, body, csrf = next(s for s in SENT if s[1].endswith("/restore"))
    assert path == "/api/v1/backups/backup_20261201_1/restore" and csrf
    assert body["restoreDevices"] is False and body["restoreRoutes"] is True
    screenshot(page, "backups-1280-data")


def test_certificates_and_federation_render(page: Any) -> None:
    show(page, "certificates")
    page.locator("td", has_text="nekzus.local").first.wait_for()
    screenshot(page, "certificates-1280-data")
    show(page, "federation")
    page.get_by_role("heading", name="Federation active").wait_for()
    page.locator("td", has_text="cabin").wait_for()
    screenshot(page, "federation-1280-data")


def test_webhook_notification_shows_a_toast(page: Any, server: NekzusServer) -> None:
    with server.client() as c:
        res = c.post("/api/v1/webhooks/notify", json={"type": "build", "data": {"title": "Build complete"}})
        assert res.status_code == 200, res.text
    page.locator(".toast", has_text="Build complete").wait_for()


def test_offline_indicator_and_reconnect(page: Any, server: NekzusServer) -> None:
    """The live connection drops when Nekzus restarts; the page says so, then reconnects by itself."""
    page.locator("#conn.online").wait_for()
    server.stop()
    page.locator("#conn.offline").wait_for()
    assert page.locator("#conn").inner_text() == "offline"
    server.start(timeout=60)
    page.locator("#conn.online").wait_for(timeout=60000)  # backoff: 1 s, 2 s, 4 s, ...
