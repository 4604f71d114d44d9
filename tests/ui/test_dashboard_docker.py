"""Dashboard pages backed by the private test dockerd: approve a discovery proposal and open the app,
start/stop a container and watch its state change without reloading, follow its logs, deploy a toolbox
template (the local busybox image, the real compose binary) with live progress and remove it."""

from __future__ import annotations

import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.docker.conftest import docker_config, httpd, wait_http  # noqa: F401 - fixture
from tests.docker.engine import DockerEngine
from tests.nekzus_server import NekzusServer, free_port
from tests.ui.conftest import admin_server, screenshot, show, signed_in_page

pytestmark = [pytest.mark.xdist_group("docker"), pytest.mark.docker, pytest.mark.browser]


WEB_TEMPLATE = """\
services:
  web:
    image: local/busybox:latest
    init: true
    stop_grace_period: 1s
    command:
      - sh
      - -c
      - mkdir -p /www && echo "$${GREETING}" > /www/index.html && exec httpd -f -p 80 -h /www
    environment:
      GREETING: ${GREETING}
    ports:
      - "127.0.0.1:${WEB_PORT:-18080}:80"
    labels:
      nekzus.toolbox.name: UI Web
      nekzus.toolbox.category: testing
      nekzus.toolbox.description: A busybox web server showing a greeting
"""
# Every progress value any deployment bar shows, recorded as the page changes.
PROGRESS_RECORDER = """() => {
  window.__progress = [];
  const seen = () => document.querySelectorAll("#main [role=progressbar]").forEach(
    (b) => window.__progress.push(Number(b.getAttribute("aria-valuenow"))));
  new MutationObserver(seen).observe(document.querySelector("#main"),
    { subtree: true, childList: true, attributes: true, attributeFilter: ["aria-valuenow"] });
}"""


@pytest.fixture(scope="module")
def server(docker_engine: DockerEngine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NekzusServer]:
    root = tmp_path_factory.mktemp("uidocker")
    (root / "catalog" / "uiweb").mkdir(parents=True)
    (root / "catalog" / "uiweb" / "docker-compose.yml").write_text(WEB_TEMPLATE)
    toolbox = {
        "enabled": True,
        "include_bundled": False,
        "catalog_dir": str(root / "catalog"),
        "data_dir": str(root / "deployments"),
    }
    with admin_server(docker_config(docker_engine, toolbox=toolbox), root / "srv") as srv:
        yield srv


@pytest.fixture(scope="module")
def page(browser: Any, server: NekzusServer) -> Iterator[Any]:
    with signed_in_page(browser, server) as pg:
        yield pg


def test_approve_proposal_and_open_proxied_app(page: Any, server: NekzusServer, httpd: Any) -> None:  # noqa: F811
    with server.client() as c:
        if "/api/v1/routes" not in c.get("/api/v1/openapi.json").json()["paths"]:
            pytest.skip("needs the catalog/proxy feature")
    _cid, port = httpd("ui-approve", labels={"nekzus.enable": "true", "nekzus.app.id": "uiapp"})
    show(page, "discovery")
    card = page.locator("[data-proposal='proposal_docker_http_ui_approve_80']")
    card.wait_for(timeout=20000)  # appears live, from the discovery event
    assert "docker" in card.inner_text().lower()
    screenshot(page, "discovery-proposal-1280")
    card.get_by_role("button", name="Approve").click()
    card.wait_for(state="detached")
    show(page, "routes")
    link = page.get_by_role("link", name="/apps/uiapp/")
    link.wait_for()
    with page.context.expect_page() as opened:
        link.click()
    app = opened.value
    app.wait_for_load_state()
    deadline = time.monotonic() + 15
    while "ok" not in app.content() and time.monotonic() < deadline:
        app.reload()
    assert "ok" in app.content()
    app.close()
    assert port


def test_container_stop_start_live_and_logs_follow(
    page: Any,
    server: NekzusServer,
    docker_engine: DockerEngine,
) -> None:
    cid = docker_engine.run(
        "ui-ticker", ["sh", "-c", "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.3; done"]
    )
    try:
        show(page, "containers")
        page.get_by_label("Search").fill("ui-ticker")
        row = page.locator(f"tr[data-id^='{cid[:12]}']")
        row.wait_for()
        row.locator("[data-state='running']").wait_for()
        row.get_by_role("button", name="stop ui-ticker").click()
        row.locator("[data-state='exited']").wait_for(timeout=20000)  # no reload: the completion event
        row.get_by_role("button", name="start ui-ticker").click()
        row.locator("[data-state='running']").wait_for(timeout=20000)
        row.get_by_role("button", name="Logs of ui-ticker").click()
        logs = page.locator("dialog pre.logs")
        logs.get_by_text("tick-", exact=False).first.wait_for()
        first = logs.inner_text().count("tick-")
        page.wait_for_function(
            "n => document.querySelector('dialog pre.logs').textContent.split('tick-').length - 1 > n + 2",
            arg=first,
        )  # following: new lines keep arriving
        screenshot(page, "containers-logs-1280")
        page.locator("dialog").get_by_role("button", name="Close").click()
    finally:
        docker_engine.remove(cid)


def test_toolbox_deploy_with_live_progress_then_remove(page: Any, server: NekzusServer) -> None:
    port = free_port()
    show(page, "toolbox")
    page.get_by_role("button", name="Deploy UI Web").click()
    dialog = page.locator("dialog[open]")
    dialog.get_by_label("Service name").fill("uiweb")
    dialog.get_by_label("Greeting (required)").fill("hello from the toolbox")
    dialog.get_by_label("Web Port").fill(str(port))
    page.evaluate(PROGRESS_RECORDER)
    dialog.get_by_role("button", name="Deploy", exact=True).click()
    row = page.locator("tr", has_text="uiweb")
    row.locator("[data-status='deployed']").wait_for(timeout=120000)
    assert row.get_by_role("progressbar").get_attribute("aria-valuenow") == "100"
    shown = page.evaluate("window.__progress")
    assert any(v < 100 for v in shown) and shown[-1] == 100, shown  # it moved while the page watched
    assert "hello from the toolbox" in wait_http(f"http://127.0.0.1:{port}/", timeout=30).text
    screenshot(page, "toolbox-deployed-1280")

    row.get_by_role("button", name="Remove uiweb").click()
    page.locator("dialog[open]").get_by_label("Also remove its volumes (its data)").check()
    page.locator("dialog[open]").get_by_role("button", name="Remove").click()
    row.wait_for(state="detached", timeout=60000)
    with server.client() as c:
        assert c.get("/api/v1/toolbox/deployments").json()["count"] == 0


def test_batch_stop_start_live_and_export_downloads(
    page: Any, server: NekzusServer, docker_engine: DockerEngine
) -> None:
    names = ["ui-batch-a", "ui-batch-b"]
    cids = [
        docker_engine.run(n, env={"API_TOKEN": "s3cret-value", "MODE": "demo"}, labels={"tier": "web"})
        for n in names
    ]
    try:
        show(page, "overview")
        show(page, "containers")
        page.get_by_label("Search").fill("ui-batch")
        rows = [page.locator(f"tr[data-id^='{cid[:12]}']") for cid in cids]
        for row in rows:
            row.locator("[data-state='running']").wait_for()
        for n in names:
            page.get_by_label(f"Select {n}").check()
        assert page.locator("[data-selected-count]").inner_text() == "2 selected"

        # Stop both: each row completes on its own WebSocket event, no reload.
        page.get_by_role("button", name="Stop selected", exact=True).click()
        status = page.locator("[data-batch-status]")
        status.get_by_text("Stop finished: 2 succeeded, 0 failed.").wait_for(timeout=30000)
        for row in rows:
            row.locator("[data-state='exited']").wait_for(timeout=20000)
        assert all(docker_engine.state(c) == "exited" for c in cids)
        screenshot(page, "containers-batch-1280")
        page.get_by_role("button", name="Start selected", exact=True).click()
        status.get_by_text("Start finished: 2 succeeded, 0 failed.").wait_for(timeout=30000)
        for row in rows:
            row.locator("[data-state='running']").wait_for(timeout=20000)

        # One container through POST /containers/{id}/export: secrets hidden by default.
        rows[0].get_by_role("button", name="Export ui-batch-a").click()
        dialog = page.locator("dialog[open]")
        dialog.get_by_role("button", name="Preview").click()
        assert "ui-batch-a" in dialog.locator("[data-export-preview]").inner_text()
        with page.expect_download() as got:
            dialog.get_by_role("button", name="Download").click()
        single = got.value
        assert single.suggested_filename == "ui-batch-a-compose.yml"
        text = Path(single.path()).read_text()
        assert "image: local/busybox" in text and "s3cret-value" not in text
        dialog.get_by_role("button", name="Close").click()

        # Both as a zip through POST /containers/batch/export?format=zip.
        page.get_by_role("button", name="Export selected").click()
        dialog = page.locator("dialog[open]")
        dialog.get_by_label("Stack name").fill("ui-pair")
        dialog.get_by_label("Format").select_option("zip")
        with page.expect_download() as got:
            dialog.get_by_role("button", name="Download").click()
        archive = got.value
        assert archive.suggested_filename == "ui-pair.zip"
        with zipfile.ZipFile(archive.path()) as z:
            compose = z.read("docker-compose.yml").decode()
            assert "ui-batch-a" in compose and "ui-batch-b" in compose and "s3cret-value" not in compose
            assert "API_TOKEN" in z.read(".env.example").decode()
        # The API's error is shown in the dialog: one compose file for a container that is gone.
        docker_engine.remove(cids[1])
        dialog.get_by_label("Format").select_option("json")
        with page.expect_download() as got:
            dialog.get_by_role("button", name="Download").click()
        # a partial export (206): the missing one is named in a warning, the rest still exported
        assert f"{cids[1][:12]}: container not found" in dialog.inner_text()
        assert "ui-batch-a" in Path(got.value.path()).read_text()
        dialog.get_by_role("button", name="Close").click()
    finally:
        for cid in cids:
            docker_engine.remove(cid)
