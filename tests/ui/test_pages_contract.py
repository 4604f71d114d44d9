"""Pages whose back ends need more than one process (toolbox deployments without Docker), exercised
against the API reference's paths and shapes. Scripts run for real in test_pages_live.py, toolbox
deployments in test_dashboard_docker.py; backups, certificates, system resources and a federation with a
real peer in test_pages_ops.py.

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
from tests.ui.conftest import admin_server, screenshot, show, sign_in

pytestmark = [pytest.mark.browser]

SENT: list[tuple[str, str, Any, str]] = []  # (method, path, body, csrf header) of every stubbed call


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NekzusServer]:
    with admin_server(None, tmp_path_factory.mktemp("uicontract")) as srv:
        yield srv


STATE: dict[str, Any] = {
    "deployments": [],
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
    if path == "/api/v1/toolbox/services":
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
    else:
        reply, status = {"error": {"code": "NOT_FOUND", "message": "Resource not found"}}, 404
    route.fulfill(status=status, content_type="application/json", body=json.dumps(reply))


@pytest.fixture(scope="module")
def page(browser: Any, server: NekzusServer) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.route("**/api/v1/toolbox**", stub)
    pg = context.new_page()
    sign_in(pg, server)
    yield pg
    context.close()


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


def test_webhook_notification_shows_a_toast(page: Any, server: NekzusServer) -> None:
    with server.client() as c:
        res = c.post("/api/v1/webhooks/notify", json={"type": "build", "data": {"title": "Build complete"}})
        assert res.status_code == 200, res.text
    page.locator(".toast", has_text="Build complete").wait_for()


def test_offline_indicator_and_reconnect(page: Any, server: NekzusServer) -> None:
    """The live connection drops when Nekzus restarts; the page says so, then reconnects by itself.

    Sessions live in memory, so the restart ends this one: the page waits on a page that makes no
    background calls (the first API answer after the restart signs it out, as it should)."""
    show(page, "settings")
    page.locator("#conn.online").wait_for()
    server.stop()
    page.locator("#conn.offline").wait_for()
    assert page.locator("#conn").inner_text() == "offline"
    server.start(timeout=60)
    page.locator("#conn.online").wait_for(timeout=60000)  # backoff: 1 s, 2 s, 4 s, ...
    page.evaluate("() => { location.hash = '#/overview' }")
    page.get_by_role("heading", name="Sign in to Nekzus").wait_for()
