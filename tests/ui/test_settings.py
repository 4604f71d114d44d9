"""The settings page in real headless Chromium against a real Nekzus reached from an UNtrusted address (so
the webhook tester's API key is what authenticates its calls): preferences take effect across the
dashboard, survive export/import and reload, and the client-side idle sign-out fires (driven by
Playwright's clock instead of waiting)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.nekzus_server import NekzusServer
from tests.ui.conftest import (
    UNTRUSTED_LOOPBACK,
    VIEWPORTS,
    admin_server,
    check_view,
    real_errors,
    screenshot,
    settled,
    show,
    sign_in,
    signed_in_page,
)

pytestmark = [pytest.mark.browser]

JS_ERRORS: list[str] = []
ZONE = "Asia/Kathmandu"  # UTC+5:45: no other zone renders the same wall-clock time


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NekzusServer]:
    with admin_server(UNTRUSTED_LOOPBACK, tmp_path_factory.mktemp("uisettings"), token=True) as srv:
        yield srv


@pytest.fixture(scope="module")
def page(browser: Any, server: NekzusServer) -> Iterator[Any]:
    # Time flows normally until a test fast-forwards it.
    with signed_in_page(browser, server, JS_ERRORS, prepare=lambda pg: pg.clock.install()) as pg:
        yield pg


def prefs(page: Any) -> dict[str, Any]:
    stored: dict[str, Any] = json.loads(page.evaluate("localStorage.getItem('nekzus.prefs') || '{}'"))
    return stored


def test_webhook_tester_creates_a_key_and_the_toast_arrives_over_the_websocket(page: Any) -> None:
    show(page, "settings")
    page.get_by_label("Log live WebSocket events to an on-page panel").check()
    log = page.get_by_role("region", name="WebSocket events")
    log.wait_for()

    out = page.get_by_label("Webhook response")
    page.get_by_label("API key for the test").fill("nekzus_not_a_real_key")
    page.get_by_role("button", name="Send test activity").click()
    out.filter(has_text="HTTP 401").wait_for()  # the key, not the browser's address, is what is checked

    page.get_by_role("button", name="Create a webhook key").click()
    key = page.locator("[data-api-key]").inner_text()
    assert key.startswith("nekzus_")
    assert page.get_by_label("API key for the test").input_value() == key
    page.locator("#main li", has_text="Webhook tester").wait_for()  # listed among the keys with the scope

    page.get_by_label("Test message").fill("Backup finished 42")
    page.get_by_role("button", name="Send test activity").click()
    out.filter(has_text="HTTP 200").wait_for()
    assert '"eventId"' in out.inner_text()
    page.locator(".toast", has_text="Backup finished 42").wait_for()
    log.locator('li[data-type^="webhook"]', has_text="Backup finished 42").wait_for()

    page.get_by_label("Test message").fill("Build complete 7")
    page.get_by_role("button", name="Send test notify").click()
    out.filter(has_text="/api/v1/webhooks/notify → HTTP 200").wait_for()
    page.locator(".toast", has_text="Build complete 7").wait_for()
    screenshot(page, "settings-webhooks-1280")
    page.get_by_role("button", name="Stop logging").click()
    log.wait_for(state="detached")


def test_refresh_interval_and_time_zone_take_effect(page: Any) -> None:
    show(page, "settings")
    page.get_by_label("Refresh interval (seconds)").fill("3")
    page.get_by_label("Refresh interval (seconds)").press("Tab")
    page.get_by_label("Time zone").fill("Mars/Olympus")  # not a zone: refused, explained
    page.get_by_label("Time zone").press("Tab")
    page.get_by_role("alert").filter(has_text="IANA time zone").wait_for()
    page.get_by_label("Time zone").fill(ZONE)
    page.get_by_label("Time zone").press("Tab")
    page.get_by_label("Timestamps").select_option("absolute")
    assert prefs(page)["refreshInterval"] == 3 and prefs(page)["timezone"] == ZONE

    page.get_by_label("Refresh interval (seconds)").fill("1")  # below the minimum: refused, explained
    page.get_by_label("Refresh interval (seconds)").press("Tab")
    page.get_by_role("alert").filter(has_text="between 2 and 3600").wait_for()
    assert prefs(page)["refreshInterval"] == 3
    assert page.get_by_label("Refresh interval (seconds)").input_value() == "3"

    # The activity the webhook test recorded, rendered in the chosen zone.
    items = page.evaluate("fetch('/api/v1/activity/recent').then((r) => r.json())")
    stamp = next(a["timestamp"] for a in items if a["message"] == "Backup finished 42")
    moment = (
        datetime.fromtimestamp(stamp / 1000 if stamp > 1e12 else stamp, UTC)
        if isinstance(stamp, int | float)
        else datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    )
    expected = moment.astimezone(ZoneInfo(ZONE)).strftime("%Y-%m-%d %H:%M:%S")

    show(page, "overview")
    entry = page.locator("#main li", has_text="Backup finished 42")
    entry.filter(has_text=expected).wait_for()
    assert "GMT+5:45" in entry.inner_text()

    # The audit log's exact times too.
    show(page, "audit")
    first = page.get_by_role("table", name="Audit log").locator("tbody tr td").first
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d GMT\+5:45", first.inner_text()), first.inner_text()
    show(page, "overview")

    # The overview polls at the chosen interval (the default is 10 s): 3 s of fake time bring a poll.
    with page.expect_request(lambda r: "/api/v1/system/resources" in r.url, timeout=10000):
        page.clock.fast_forward(3100)

    show(page, "settings")
    page.get_by_label("Timestamps").select_option("relative")
    page.get_by_label("Time zone").fill("")
    page.get_by_label("Time zone").press("Tab")


def test_export_then_import_restores_preferences(page: Any, tmp_path: Path) -> None:
    show(page, "settings")
    page.get_by_label("Font size").select_option("large")
    page.get_by_label("Compact density").check()
    page.get_by_label("Refresh interval (seconds)").fill("7")
    page.get_by_label("Refresh interval (seconds)").press("Tab")
    page.get_by_label("Ask for confirmation before deleting, revoking or restoring").uncheck()
    before = prefs(page)
    assert before["fontSize"] == "large" and before["compact"] is True
    assert before["confirmDestructive"] is False

    with page.expect_download() as info:
        page.get_by_role("button", name="Export preferences").click()
    exported = tmp_path / "prefs.json"
    info.value.save_as(exported)
    assert json.loads(exported.read_text()) == before

    page.get_by_role("button", name="Reset preferences").click()  # confirmations are off: no dialog
    page.wait_for_function("() => JSON.parse(localStorage.getItem('nekzus.prefs')).fontSize === 'medium'")
    assert page.get_by_label("Font size").input_value() == "medium"
    assert page.evaluate("document.documentElement.dataset.fontSize") == "medium"
    assert page.get_by_label("Ask for confirmation before deleting, revoking or restoring").is_checked()

    page.get_by_label("Import preferences from a file").set_input_files(str(exported))
    page.get_by_text("Preferences imported from prefs.json").wait_for()
    assert prefs(page) == before
    assert page.get_by_label("Font size").input_value() == "large"
    assert page.get_by_label("Refresh interval (seconds)").input_value() == "7"
    assert page.evaluate("document.documentElement.hasAttribute('data-compact')")

    page.get_by_role("button", name="Reset preferences").click()
    page.wait_for_function("() => JSON.parse(localStorage.getItem('nekzus.prefs')).compact === false")

    # Confirmations are back on (the default): clearing local data asks first.
    page.evaluate("sessionStorage.setItem('nekzus.healthCards', '6')")
    page.evaluate("localStorage.setItem('nekzus.other', 'x')")
    page.get_by_role("button", name="Clear local data").click()
    page.locator("dialog[open]").get_by_role("button", name="Clear").click()
    page.locator(".toast", has_text="Local data cleared").wait_for()
    assert page.evaluate("localStorage.getItem('nekzus.other') === null")
    assert page.evaluate("sessionStorage.getItem('nekzus.healthCards') === null")
    assert prefs(page)["fontSize"] == "medium"


def test_system_information(page: Any, server: NekzusServer) -> None:
    show(page, "settings")
    with server.client() as c:
        shell = c.get("/").text
    version = re.search(r'name="nekzus-ui-version" content="([0-9a-f]{12})"', shell)
    assert version and page.locator("[data-ui-version]").inner_text() == version.group(1)
    assert page.locator("[data-server-version]").inner_text().strip()
    assert page.locator("[data-ws-status]").inner_text() == "connected"
    assert page.locator("[data-storage]").inner_text().endswith("B")


def test_import_of_a_bad_file_is_refused_with_a_message(page: Any) -> None:
    show(page, "settings")
    before = prefs(page)
    page.get_by_label("Import preferences from a file").set_input_files(
        files=[
            {
                "name": "bad.json",
                "mimeType": "application/json",
                "buffer": b'{"refreshInterval": "fast", "colour": "red", "theme": "dark"}',
            }
        ]
    )
    alert = page.get_by_role("alert").filter(has_text="Settings refused")
    alert.wait_for()
    assert "Unknown setting “colour”" in alert.inner_text()
    assert "“refreshInterval” must be a number" in alert.inner_text()
    assert prefs(page) == before  # nothing of a refused file is kept

    page.get_by_label("Import preferences from a file").set_input_files(
        files=[{"name": "notjson.json", "mimeType": "application/json", "buffer": b"{nope"}]
    )
    page.get_by_role("alert").filter(has_text="notjson.json is not a JSON file").wait_for()


ERROR_OF_MISSING_KEY = """async () => {
  // the page's own module instance
  const m = await import(document.querySelector('script[type=module][src*="/app."]').src);
  try { await m.api("GET", "/api/v1/apikeys/key_does_not_exist"); return ""; } catch (e) { return e.message; }
}"""


def test_error_details_developer_option(page: Any) -> None:
    show(page, "settings")
    plain = page.evaluate(ERROR_OF_MISSING_KEY)
    assert plain and "request" not in plain
    page.get_by_label("Show error details (error code and request id) in error messages").check()
    detailed = page.evaluate(ERROR_OF_MISSING_KEY)
    assert re.fullmatch(re.escape(plain) + r" \[[A-Z_]+, request [\w.-]+\]", detailed), detailed
    page.get_by_label("Show error details (error code and request id) in error messages").uncheck()


def test_appearance_survives_reload_and_applies_before_the_app_runs(page: Any, server: NekzusServer) -> None:
    show(page, "settings")
    page.get_by_label("Theme").select_option("dark")
    page.get_by_label("Font size").select_option("x-large")
    page.get_by_label("Compact density").check()
    page.reload()
    page.locator('#main[data-ready="settings"]').wait_for(state="attached")
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    assert page.get_by_label("Theme").input_value() == "dark"
    assert page.evaluate("getComputedStyle(document.documentElement).fontSize") == "19px"
    assert page.evaluate("document.documentElement.hasAttribute('data-compact')")

    # theme.js alone (the app's modules blocked) already applies them: nothing flashes the defaults.
    bare = page.context.new_page()
    try:
        bare.route(
            "**/ui/assets/*.js",
            lambda route: route.continue_() if "/theme." in route.request.url else route.abort(),
        )
        bare.goto(server.url + "/")
        assert bare.evaluate("document.documentElement.dataset.theme") == "dark"
        assert bare.evaluate("document.documentElement.dataset.fontSize") == "x-large"
        assert bare.evaluate("document.documentElement.hasAttribute('data-compact')")
    finally:
        bare.close()
    show(page, "overview")
    screenshot(page, "overview-1280-dark-xl-compact")


def test_settings_page_accessible_and_readable_on_a_phone(page: Any) -> None:
    violations: dict[str, list[str]] = {}
    for theme in ("light", "dark"):
        for width, height in VIEWPORTS:
            page.set_viewport_size({"width": width, "height": height})
            show(page, "settings")
            page.get_by_label("Theme").select_option(theme)
            settled(page)
            if bad := check_view(page, f"settings-{theme}-{width}", width):
                violations[f"settings-{theme}@{width}"] = bad
    page.set_viewport_size({"width": 1280, "height": 900})
    assert not violations, violations
    assert not real_errors(JS_ERRORS), JS_ERRORS


def test_shorter_inactivity_sign_out_signs_the_page_out(browser: Any, server: NekzusServer) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        pg = context.new_page()
        pg.clock.install()
        sign_in(pg, server)
        show(pg, "settings")
        idle = pg.get_by_label("Sign out after inactivity (minutes, 0 = the server's limit)")
        idle.fill("30")  # the server's own limit: not shorter, refused
        idle.press("Tab")
        pg.get_by_role("alert").filter(has_text="shorter than the server's limit of 30 minutes").wait_for()
        idle.fill("2")
        idle.press("Tab")
        pg.get_by_text("This page signs out after 2 minutes").wait_for()

        pg.clock.fast_forward("01:00")  # not yet
        assert pg.locator("#nav").is_visible()
        pg.clock.fast_forward("01:05")
        pg.get_by_role("heading", name="Sign in to Nekzus").wait_for()
        pg.locator(".toast", has_text="Signed out after inactivity").wait_for()
        # The session itself ended on the server, not only on the page.
        assert pg.evaluate("fetch('/api/v1/ui/session').then((r) => r.json())")["authenticated"] is False
    finally:
        context.close()
