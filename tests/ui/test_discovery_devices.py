"""The discovery and devices pages in real headless Chromium against one real Nekzus: an auto-approval
threshold set in the page approves a new proposal (announced over real mDNS on loopback only), dismissing
asks first and can be cancelled, and a device's details show its online state and a requests-today count
that rises as a scripted client uses its token. Both pages pass axe and fit 375 px."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from zeroconf import IPVersion, ServiceInfo, Zeroconf

from tests.nekzus_server import NekzusServer
from tests.ui.conftest import AXE, PASSWORD, screenshot, show, sign_in

pytestmark = [pytest.mark.browser]

LOOPBACK = ["127.0.0.1"]
BOOTSTRAP = "ui-discovery-devices-bootstrap-token-0123456789"
JS_ERRORS: list[str] = []


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NekzusServer]:
    config = {
        "bootstrap": {"tokens": [BOOTSTRAP]},
        "discovery": {
            "enabled": True,
            "mdns": {
                "enabled": True,
                "interfaces": LOOPBACK,
                "services": ["_http._tcp"],
                "scan_interval": "30s",
                "advertise": False,
            },
        },
    }
    srv = NekzusServer(config, data_dir=tmp_path_factory.mktemp("uidisc"))
    srv.start(timeout=90)
    with srv.client() as c:  # loopback is trusted here: first-run setup needs no token
        assert (
            c.post("/api/v1/auth/setup", json={"username": "admin", "password": PASSWORD}).status_code == 201
        )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def page(browser: Any, server: NekzusServer) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.on("pageerror", lambda exc: JS_ERRORS.append(str(exc)))
    pg.on("console", lambda msg: JS_ERRORS.append(msg.text) if msg.type == "error" else None)
    sign_in(pg, server)
    yield pg
    context.close()


class Announcer:
    """Zeroconf on a thread of its own: Playwright's sync API keeps an event loop on the test thread,
    which zeroconf would otherwise adopt (and find blocked)."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=1)
        started = self.pool.submit(Zeroconf, interfaces=LOOPBACK, ip_version=IPVersion.V4Only)
        self.zc: Zeroconf = started.result(timeout=30)

    def announce(self, name: str, port: int, props: dict[str, str]) -> None:
        info = ServiceInfo(
            "_http._tcp.local.",
            f"{name}._http._tcp.local.",
            port=port,
            addresses=[socket.inet_aton("127.0.0.1")],
            server="ui-discovery-box.local.",
            properties=props,
        )
        self.pool.submit(self.zc.register_service, info).result(timeout=30)

    def close(self) -> None:
        self.pool.submit(self.zc.unregister_all_services).result(timeout=30)
        self.pool.submit(self.zc.close).result(timeout=30)
        self.pool.shutdown()


@pytest.fixture(scope="module")
def zc() -> Iterator[Announcer]:
    announcer = Announcer()
    yield announcer
    announcer.close()


def test_threshold_set_in_the_page_auto_approves_a_new_proposal(
    page: Any, server: NekzusServer, zc: Announcer
) -> None:
    show(page, "discovery")
    panel = page.locator("[data-discovery-settings]")
    threshold = panel.get_by_label("Auto-approve at confidence (%)")
    assert threshold.input_value() == "0"  # off by default
    threshold.fill("150")
    panel.get_by_role("button", name="Save").click()
    panel.get_by_text("whole number from 0 to 100").wait_for()  # checked before it is sent
    threshold.fill("95")
    panel.get_by_role("button", name="Save").click()
    panel.get_by_text("Set here").wait_for()
    with server.client() as c:
        assert c.get("/api/v1/discovery/settings").json()["autoApproveConfidence"] == 95
    # 0.95 (nekzus_enable=true) reaches it: approved by the server, its card never stays.
    zc.announce("UI Auto App", 3100, {"nekzus_enable": "true", "app_id": "uiautoapp"})
    # 0.85 (an app id only) does not: it waits for a decision.
    zc.announce("UI Manual App", 3101, {"app_id": "uimanualapp"})
    page.locator("[data-proposal='proposal_mdns_http_UI_Manual_App_3101']").wait_for(timeout=20000)
    assert page.locator(
        "[data-proposal='proposal_mdns_http_UI_Manual_App_3101'] [data-confidence]"
    ).inner_text() == ("Confidence 85%")
    show(page, "routes")
    page.get_by_role("link", name="/apps/uiautoapp/").wait_for(timeout=20000)
    assert page.get_by_role("link", name="/apps/uimanualapp/").count() == 0
    show(page, "discovery")
    assert page.locator("[data-proposal='proposal_mdns_http_UI_Auto_App_3100']").count() == 0
    screenshot(page, "discovery-settings-1280")


def test_dismiss_asks_first_and_can_be_cancelled(page: Any) -> None:
    show(page, "discovery")
    card = page.locator("[data-proposal='proposal_mdns_http_UI_Manual_App_3101']")
    card.wait_for()
    assert page.get_by_label("Ask before dismissing (this browser)").is_checked()  # on by default
    card.get_by_role("button", name="Dismiss").click()
    dialog = page.locator("dialog[open]")
    dialog.get_by_text("Dismiss UI Manual App?").wait_for()
    dialog.get_by_role("button", name="Cancel").click()
    dialog.wait_for(state="detached")
    assert card.is_visible()  # nothing was dismissed
    # Bulk dismissing asks too.
    card.get_by_label("Select UI Manual App").check()
    page.get_by_role("button", name="Dismiss selected").click()
    page.locator("dialog[open]").get_by_text("Dismiss 1 selected proposal").wait_for()
    page.locator("dialog[open]").get_by_role("button", name="Cancel").click()
    assert card.is_visible()
    # The preference is remembered by this browser; with it off, dismissing is immediate.
    page.get_by_label("Ask before dismissing (this browser)").uncheck()
    page.reload()
    page.locator('#main[data-ready="discovery"]').wait_for(state="attached")
    assert not page.get_by_label("Ask before dismissing (this browser)").is_checked()
    card.get_by_role("button", name="Dismiss").click()
    card.wait_for(state="detached")
    assert page.locator("dialog[open]").count() == 0
    page.get_by_label("Ask before dismissing (this browser)").check()


def test_device_details_show_online_state_and_requests_today(page: Any, server: NekzusServer) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as phone:
        paired = phone.post(
            "/api/v1/auth/pair",
            headers={"Authorization": f"Bearer {BOOTSTRAP}"},
            json={"device": {"id": "ui-usage-phone", "name": "Hall Tablet", "platform": "android"}},
        )
        assert paired.status_code == 200, paired.text
        token = {"Authorization": f"Bearer {paired.json()['accessToken']}"}
        for _ in range(3):
            assert phone.get("/api/v1/devices/ui-usage-phone", headers=token).status_code == 200
        show(page, "devices")
        row = page.locator("tr[data-id='ui-usage-phone']")
        row.wait_for()
        assert "online" in row.inner_text()
        row.get_by_role("button", name="Details of Hall Tablet").click()
        details = page.locator("[data-device-details='ui-usage-phone']")
        details.wait_for()
        assert details.locator("[data-field='Status']").inner_text() == "online"
        assert details.locator("[data-field='Requests today']").inner_text() == "3"
        for field in ("Device id", "Name", "Platform", "Scopes", "Paired", "Last seen", "Pinned certificate"):
            assert details.locator(f"[data-field='{field}']").inner_text().strip()
        assert details.locator("[data-field='Device id']").inner_text() == "ui-usage-phone"
        screenshot(page, "devices-details-1280")
        # A rename elsewhere reaches the open dialog live (device_updated event).
        with server.client() as admin:
            renamed = admin.patch("/api/v1/devices/ui-usage-phone", json={"deviceName": "Hallway Tablet"})
            assert renamed.status_code == 200, renamed.text
        details.locator("[data-field='Name']").get_by_text("Hallway Tablet").wait_for()
        for _ in range(4):
            assert phone.get("/api/v1/devices/ui-usage-phone", headers=token).status_code == 200
    page.locator("dialog[open]").get_by_role("button", name="Refresh").click()
    page.wait_for_function(
        """() => document.querySelector(
            "[data-device-details='ui-usage-phone'] [data-field='Requests today']")?.textContent === '7'"""
    )
    page.locator("dialog[open]").get_by_role("button", name="Close").click()


def test_pages_are_accessible_and_fit_a_phone(page: Any) -> None:
    axe = AXE.read_text()
    violations: dict[str, list[str]] = {}
    for width, height in ((1280, 900), (375, 812)):
        page.set_viewport_size({"width": width, "height": height})
        for name in ("discovery", "devices"):
            show(page, name)
            page.wait_for_function("() => !document.querySelector('#main [aria-busy=\"true\"]')")
            if name == "devices":
                page.get_by_role("button", name="Details of Hallway Tablet").click()
                page.locator("[data-device-details]").wait_for()
            screenshot(page, f"{name}-detail-{width}")
            if not page.evaluate("() => typeof window.axe !== 'undefined'"):
                page.evaluate("src => (0, eval)(src)", axe)  # via the debugger: not subject to the CSP
            result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
            bad = [
                f"{v['id']}: {v['help']} ({len(v['nodes'])})"
                for v in result["violations"]
                if v["impact"] in ("serious", "critical")
            ]
            if bad:
                violations[f"{name}@{width}"] = bad
            if width == 375:
                assert page.evaluate("() => document.documentElement.scrollWidth") <= 375 + 1
            if name == "devices":
                page.locator("dialog[open]").get_by_role("button", name="Close").click()
    page.set_viewport_size({"width": 1280, "height": 900})
    assert not violations, violations
    assert not [e for e in JS_ERRORS if "Failed to load resource" not in e], JS_ERRORS
