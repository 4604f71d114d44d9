"""The discovery and devices pages in real headless Chromium against one real Nekzus: an auto-approval
threshold set in the page approves a new proposal (announced over real mDNS on loopback only), dismissing
asks first and can be cancelled, and a device's details show its online state and a requests-today count
that rises as a scripted client uses its token. Both pages pass axe and fit 375 px."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from zeroconf import Zeroconf

from tests.mdns_helpers import loopback_service, loopback_zeroconf, mdns_discovery
from tests.nekzus_server import NekzusServer
from tests.ui.conftest import (
    VIEWPORTS,
    admin_server,
    check_view,
    real_errors,
    screenshot,
    settled,
    show,
    signed_in_page,
)

pytestmark = [pytest.mark.browser]

BOOTSTRAP = "ui-discovery-devices-bootstrap-token-0123456789"
JS_ERRORS: list[str] = []


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NekzusServer]:
    config = {
        "bootstrap": {"tokens": [BOOTSTRAP]},
        "discovery": mdns_discovery(advertise=False),
    }
    with admin_server(config, tmp_path_factory.mktemp("uidisc"), timeout=90) as srv:
        yield srv


@pytest.fixture(scope="module")
def page(browser: Any, server: NekzusServer) -> Iterator[Any]:
    with signed_in_page(browser, server, JS_ERRORS) as pg:
        yield pg


class Announcer:
    """Zeroconf on a thread of its own: Playwright's sync API keeps an event loop on the test thread,
    which zeroconf would otherwise adopt (and find blocked)."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=1)
        started = self.pool.submit(loopback_zeroconf)
        self.zc: Zeroconf = started.result(timeout=30)

    def announce(self, name: str, port: int, props: dict[str, str]) -> None:
        info = loopback_service(name, port, props, "ui-discovery-box.local.")
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
    violations: dict[str, list[str]] = {}
    for width, height in VIEWPORTS:
        page.set_viewport_size({"width": width, "height": height})
        for name in ("discovery", "devices"):
            show(page, name)
            settled(page)
            if name == "devices":
                page.get_by_role("button", name="Details of Hallway Tablet").click()
                page.locator("[data-device-details]").wait_for()
            if bad := check_view(page, f"{name}-detail-{width}", width):
                violations[f"{name}@{width}"] = bad
            if name == "devices":
                page.locator("dialog[open]").get_by_role("button", name="Close").click()
    page.set_viewport_size({"width": 1280, "height": 900})
    assert not violations, violations
    assert not real_errors(JS_ERRORS), JS_ERRORS
