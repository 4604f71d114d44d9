"""The operations pages (backups, certificates, system resources, federation) in real headless Chromium
against real servers: instance A (TLS, scheduled backups, federation) peered on loopback with instance B.

Everything the page shows comes from the real services: backups are taken, downloaded and restored
through the page, certificates generated, renewed and replaced, the resource charts read psutil on the
server, and the federation page lists B as an online peer and the services B shares. The tests share
one signed-in page and run in order.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.certs.conftest import make_pair, pem
from tests.federation.conftest import add_route, fed_config, fed_server, peers, wait_for
from tests.nekzus_server import NekzusServer, deep_merge, free_port
from tests.ui.conftest import (
    PASSWORD,
    VIEWPORTS,
    check_view,
    real_errors,
    screenshot,
    settled,
    show,
    sign_in,
    signed_in_page,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

JS_ERRORS: list[str] = []


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NekzusServer, NekzusServer]]:
    port_a, port_b = free_port(), free_port()
    root = tmp_path_factory.mktemp("uiops")
    backup = {"enabled": True, "schedule": "1h", "retention": 5, "directory": str(root / "backups")}
    config = deep_merge(fed_config(port_a, [port_b]), {"backup": backup})
    a = NekzusServer(config, tls=True, data_dir=root / "a")
    b = fed_server(port_b, [port_a])
    try:
        a.start(wait=False)
        b.start(wait=False)
        a.wait_ready(60)
        b.wait_ready(60)
        with a.client() as c:
            r = c.post("/api/v1/auth/setup", json={"username": "admin", "password": PASSWORD})
            assert r.status_code == 201, r.text
        wait_for(lambda: any(p["status"] == "online" for p in peers(a).values()), 30, "A to see B online")
        yield a, b
    finally:
        a.stop()
        b.stop()


@pytest.fixture(scope="module")
def server(cluster: tuple[NekzusServer, NekzusServer]) -> NekzusServer:
    return cluster[0]


@pytest.fixture(scope="module")
def page(browser: Any, server: NekzusServer) -> Iterator[Any]:
    with signed_in_page(browser, server, JS_ERRORS, ignore_https_errors=True) as pg:
        yield pg


def js_bytes(n: int) -> str:
    """The page's byte formatting (1024-based, one decimal above bytes)."""
    units = ["B", "KB", "MB", "GB", "TB"]
    value, i = float(n), 0
    while value >= 1024 and i < len(units) - 1:
        value /= 1024
        i += 1
    return f"{value:.{1 if i else 0}f} {units[i]}"


def test_overview_resource_charts_read_the_servers_psutil(page: Any, server: NekzusServer) -> None:
    show(page, "overview")
    ram = page.locator('[data-resource="ram"]')
    ram.get_by_text(f"of {js_bytes(psutil.virtual_memory().total)}").wait_for()
    cpu = page.locator('[data-resource="cpu"]')
    cpu.get_by_text(f"{psutil.cpu_count()} cores").wait_for()
    disk_total = psutil.disk_usage(str(server.data_dir)).total
    page.locator('[data-resource="disk"]').get_by_text(f"of {js_bytes(disk_total)}").wait_for()
    for name in ("CPU", "RAM", "DISK"):
        heading = page.locator(f'[data-resource="{name.lower()}"] h3').inner_text()
        assert heading.startswith(name + " ") and 0.0 <= float(heading.split()[1].rstrip("%")) <= 100.0
    # The page polls every 5 s: the next sample extends each line (a second point appears).
    page.wait_for_function(
        "() => [...document.querySelectorAll('svg.chart polyline')]"
        ".every(l => l.getAttribute('points').trim().split(' ').length >= 2)",
        timeout=20000,
    )
    screenshot(page, "overview-1280-resources")


def test_backup_schedule_is_shown_and_edited(page: Any, server: NekzusServer) -> None:
    show(page, "backups")
    card = page.locator('[data-scheduler="on"]')
    card.get_by_text("1h0m0s").wait_for()
    assert "5 scheduled backups" in card.inner_text()
    card.get_by_text("Next run").wait_for()  # the start-up backup has run, so the next one is planned
    page.get_by_role("button", name="Edit schedule").click()
    dialog = page.locator("dialog[open]")
    dialog.get_by_label("Interval (e.g. 30m, 6h, 24h)").fill("whenever")
    dialog.get_by_role("button", name="Save").click()
    dialog.get_by_role("alert").get_by_text("invalid duration").wait_for()  # the API's error, as a message
    dialog.get_by_label("Interval (e.g. 30m, 6h, 24h)").fill("2h")
    dialog.get_by_label("Scheduled backups to keep").fill("3")
    dialog.get_by_role("button", name="Save").click()
    card.get_by_text("2h0m0s").wait_for()
    assert "3 scheduled backups" in card.inner_text() and "overrides the config" in card.inner_text()
    with server.client() as c:
        status = c.get("/api/v1/backups/scheduler/status").json()["status"]
    assert status["interval"] == "2h0m0s" and status["retention"] == 3 and status["source"] == "dashboard"


def test_create_download_and_restore_a_backup(
    page: Any, server: NekzusServer, tmp_path: Path, until: Callable[..., Any]
) -> None:
    with server.client() as c:
        route = {"routeId": "r_keep", "appId": "keep", "pathBase": "/apps/keep/", "to": "http://127.0.0.1:9"}
        assert c.post("/api/v1/routes", json=route).status_code == 201
    show(page, "backups")
    page.get_by_label("Description").fill("before upgrade")
    page.get_by_role("button", name="Create backup").click()
    row = page.locator("tr", has_text="before upgrade")
    row.wait_for()
    with server.client() as c:
        made = [b for b in c.get("/api/v1/backups").json()["backups"] if b["description"] == "before upgrade"]
    assert len(made) == 1 and made[0]["trigger"] == "manual"
    backup_id = made[0]["id"]

    with page.expect_download() as info:
        page.get_by_role("button", name=f"Download backup {backup_id}").click()
    archive = tmp_path / "backup.tar.gz"
    info.value.save_as(archive)
    assert archive.read_bytes()[:2] == b"\x1f\x8b" and gzip.decompress(archive.read_bytes())

    page.get_by_role("button", name=f"Details of backup {backup_id}").click()
    details = page.locator("dialog[open]")
    details.get_by_role("table", name=f"Contents of {backup_id}").get_by_text("catalog_routes").wait_for()
    details.get_by_role("button", name="Close").click()

    # After the backup: the route is deleted and an API key created.
    with server.client() as c:
        assert c.delete("/api/v1/routes/r_keep").status_code in (200, 204)
        key = c.post("/api/v1/apikeys", json={"name": "after", "scopes": ["read:catalog"]})
        assert key.status_code == 201, key.text

    page.get_by_role("button", name=f"Restore backup {backup_id}").click()
    dialog = page.locator("dialog[open]")
    dialog.get_by_label("API keys").uncheck()
    dialog.get_by_label("Users").uncheck()
    dialog.get_by_role("button", name="Restore").click()
    dialog.locator(f'[data-restored="{backup_id}"]').get_by_text("Backup restored successfully").wait_for()
    assert "catalog_routes" in dialog.inner_text()
    screenshot(page, "backups-restore-1280")
    dialog.get_by_role("button", name="Close").click()
    with server.client() as c:
        routes = {r["routeId"] for r in c.get("/api/v1/routes").json()}
        keys = [k["name"] for k in c.get("/api/v1/apikeys").json()]
    assert "r_keep" in routes  # restored
    assert "after" in keys  # API keys were left out of the restore
    # The session survived the restore: the page still works.
    show(page, "backups")
    page.locator("tr", has_text="before upgrade").wait_for()


def test_certificates_generate_renew_replace_and_download_the_ca(
    page: Any, server: NekzusServer, tmp_path: Path
) -> None:
    show(page, "certificates")
    with page.expect_download() as info:
        page.get_by_role("button", name="Download local CA").click()
    ca = tmp_path / "ca.crt"
    info.value.save_as(ca)
    with server.client() as c:
        assert ca.read_bytes() == c.get("/api/v1/certificates/ca.pem").content
    assert b"BEGIN CERTIFICATE" in ca.read_bytes()

    page.get_by_role("button", name="Generate certificate").click()
    dialog = page.locator("dialog[open]")
    dialog.get_by_label("Domains (one per line)").fill("nas.example.com")
    dialog.get_by_role("button", name="Generate").click()
    dialog.get_by_role("alert").get_by_text("public domains are not allowed").wait_for()
    dialog.get_by_label("Domains (one per line)").fill("ui.nekzus.lan\nlocalhost")
    dialog.get_by_role("button", name="Generate").click()
    page.locator("tr", has_text="ui.nekzus.lan").wait_for()
    before = certificate(page, "ui.nekzus.lan")
    assert before["sans"] == ["ui.nekzus.lan", "localhost"]

    page.get_by_role("button", name="Renew ui.nekzus.lan").click()
    page.locator("dialog[open]").get_by_role("button", name="Renew").click()
    page.locator(".toast", has_text="Certificate for ui.nekzus.lan renewed").wait_for()
    renewed = certificate(page, "ui.nekzus.lan")
    assert renewed["fingerprint"] != before["fingerprint"] and renewed["sans"] == before["sans"]

    # Replace with an uploaded pair: a wrong key is refused with the API's message, the right one used.
    cert, key = make_pair("ui.nekzus.lan")
    _other, wrong_key = make_pair("ui.nekzus.lan")
    (tmp_path / "cert.pem").write_text(pem(cert))
    page.get_by_role("button", name="Replace ui.nekzus.lan").click()
    dialog = page.locator("dialog[open]")
    chooser = dialog.get_by_label("Certificate chain (PEM): read from a file")
    chooser.set_input_files(str(tmp_path / "cert.pem"))
    page.wait_for_function(
        "() => document.querySelector('dialog[open] textarea[name=certificate]').value.includes('BEGIN')"
    )
    dialog.get_by_label("Private key (PEM)", exact=True).fill(pem(wrong_key))
    dialog.get_by_role("button", name="Replace").click()
    dialog.get_by_role("alert").wait_for()
    dialog.get_by_label("Private key (PEM)", exact=True).fill(pem(key))
    dialog.get_by_role("button", name="Replace").click()
    page.locator(".toast", has_text="Certificate for ui.nekzus.lan installed").wait_for()
    replaced = certificate(page, "ui.nekzus.lan")
    assert replaced["issuer"] != before["issuer"] and replaced["fingerprint"] != renewed["fingerprint"]

    page.get_by_role("button", name="Details of ui.nekzus.lan").click()
    page.locator("dialog[open]").get_by_text(replaced["fingerprint"]).wait_for()
    screenshot(page, "certificates-details-1280")
    page.locator("dialog[open]").get_by_role("button", name="Close").click()


def certificate(page: Any, domain: str) -> dict[str, Any]:
    """What the API says about a certificate, asked with the page's own session (admin JWT behind it)."""
    result: dict[str, Any] = page.evaluate(
        "async d => (await (await fetch('/api/v1/certificates/' + d)).json()).certificate", domain
    )
    return result


def test_federation_page_shows_the_real_peer_and_syncs(
    page: Any, cluster: tuple[NekzusServer, NekzusServer]
) -> None:
    _a, b = cluster
    with b.client() as c:
        b_status = c.get("/api/v1/federation/status").json()
    show(page, "federation")
    page.get_by_role("heading", name="Federation active").wait_for()
    table = page.get_by_role("table", name="Peers")
    row = table.locator("tr", has_text=b_status["local_peer_name"] or b_status["local_peer_id"])
    row.get_by_text("online").wait_for()
    page.get_by_role("button", name="Sync now").click()
    page.locator(".toast", has_text="Sync completed with 1 of 1 online peers").wait_for()
    # B shares an app: it shows up on A's page without a reload (federation events on the WebSocket).
    add_route(b, "shared-notes", "http://127.0.0.1:9")
    page.get_by_role("table", name="Services from peers").locator("tr", has_text="shared-notes").wait_for(
        timeout=30000
    )
    name = b_status["local_peer_name"] or b_status["local_peer_id"]
    page.get_by_role("button", name=f"Details of peer {name}").click()
    page.locator("dialog[open]").get_by_text(b_status["local_peer_id"]).first.wait_for()
    page.locator("dialog[open]").get_by_role("button", name="Close").click()
    screenshot(page, "federation-1280-peered")


def test_first_certificate_on_plain_http_moves_the_page_to_https(
    browser: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Generating the first certificate turns TLS on in place; the page follows to https, still signed in."""
    srv = NekzusServer(data_dir=tmp_path_factory.mktemp("uiops-plain")).start(timeout=60)
    context = browser.new_context(viewport={"width": 1280, "height": 900}, ignore_https_errors=True)
    try:
        with srv.client() as c:
            r = c.post("/api/v1/auth/setup", json={"username": "admin", "password": PASSWORD})
            assert r.status_code == 201, r.text
        pg = context.new_page()
        sign_in(pg, srv)
        show(pg, "certificates")
        pg.get_by_role("button", name="Generate certificate").click()
        dialog = pg.locator("dialog[open]")
        dialog.get_by_label("Domains (one per line)").fill("localhost\n127.0.0.1")
        dialog.get_by_role("button", name="Generate").click()
        for _ in range(300):  # bounded: 30 s; wait_for_timeout lets Playwright see the navigation
            if pg.url.startswith("https://"):
                break
            pg.wait_for_timeout(100)
        assert pg.url.startswith("https://"), pg.url
        pg.locator('#main[data-ready="certificates"]').wait_for(state="attached")
        pg.locator("tr", has_text="localhost").first.wait_for()
        pg.locator("#conn.online").wait_for()  # the live connection came back over wss
    finally:
        context.close()
        srv.stop()


def test_ops_controls_work_from_the_keyboard(page: Any) -> None:
    """Tab reaches the page's controls with a visible focus ring; Enter opens a dialog, Escape closes it."""
    show(page, "backups")
    page.locator('[data-scheduler="on"]').wait_for()
    page.locator("#main").focus()
    for _ in range(60):  # bounded: the button is among the first controls of the page
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Edit schedule":
            break
    else:
        raise AssertionError("Tab never reached the Edit schedule button")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"
    page.keyboard.press("Enter")
    dialog = page.locator("dialog[open]")
    dialog.get_by_label("Interval (e.g. 30m, 6h, 24h)").wait_for()
    page.keyboard.press("Escape")
    dialog.wait_for(state="detached")


def test_ops_pages_accessible_and_readable_on_a_phone(page: Any) -> None:
    violations: dict[str, list[str]] = {}
    for width, height in VIEWPORTS:
        page.set_viewport_size({"width": width, "height": height})
        for name in ("overview", "certificates", "backups", "federation"):
            show(page, name)
            settled(page)
            if bad := check_view(page, f"{name}-{width}-ops", width):
                violations[f"{name}@{width}"] = bad
    page.set_viewport_size({"width": 1280, "height": 900})
    assert not violations, violations
    assert not real_errors(JS_ERRORS), JS_ERRORS
