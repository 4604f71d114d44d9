"""The dashboard in real headless Chromium against a real Nekzus, reached from an UNtrusted address
(loopback is removed from `auth.local_networks`), so every page works only through the session cookie.

The tests share one browser page and run in order: setup, sign-in, pairing, revocation, CSRF, the
pages (screenshots and accessibility), sign-out.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.nekzus_server import NekzusServer
from tests.ui.conftest import (
    PAGES,
    PASSWORD,
    UNTRUSTED_LOOPBACK,
    VIEWPORTS,
    check_view,
    real_errors,
    screenshot,
    settled,
    setup_token,
    show,
    sign_in,
    signed_in_page,
)

pytestmark = [pytest.mark.browser]

SHARED: dict[str, Any] = {}
JS_ERRORS: list[str] = []


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NekzusServer]:
    srv = NekzusServer(UNTRUSTED_LOOPBACK, data_dir=tmp_path_factory.mktemp("ui"))
    srv.start(timeout=60)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def page(browser: Any, server: NekzusServer) -> Iterator[Any]:
    with signed_in_page(browser, server, JS_ERRORS, sign=False) as pg:  # the tests sign in themselves
        yield pg


def session_cookie(page: Any) -> dict[str, Any]:
    cookies = {c["name"]: c for c in page.context.cookies()}
    cookie: dict[str, Any] = cookies["nekzus_session"]
    return cookie


def test_first_run_setup_explains_token_then_login(page: Any, server: NekzusServer) -> None:
    page.goto(server.url + "/")
    page.get_by_role("heading", name="Welcome to Nekzus").wait_for()
    assert "setup token" in page.locator("form").inner_text().lower()
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password (at least 8 characters)").fill(PASSWORD)
    page.get_by_label("Confirm password").fill(PASSWORD)
    page.get_by_label("Setup token").fill("wrong-token")
    page.get_by_role("button", name="Create account").click()
    page.get_by_role("alert").filter(has_text="trusted network").wait_for()  # the API's error, shown
    page.get_by_label("Setup token").fill(setup_token(server))
    page.get_by_role("button", name="Create account").click()
    page.get_by_role("heading", name="Sign in to Nekzus").wait_for()

    page.get_by_label("Password", exact=True).fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("alert").filter(has_text="Invalid username or password").wait_for()
    sign_in(page, server)
    show(page, "overview")
    assert page.locator(".stat").count() == 4

    cookie = session_cookie(page)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/api/"  # never sent to proxied apps under /apps/
    assert not cookie["secure"]  # plain HTTP test server; Secure is set over TLS
    # the page's scripts cannot see the credential
    assert "nekzus_session" not in page.evaluate("document.cookie")


def test_shell_headers_csp_and_hashed_assets(server: NekzusServer) -> None:
    with server.client() as c:
        shell = c.get("/")
        assert shell.status_code == 200
        csp = shell.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert shell.headers["cache-control"] == "no-store"
        assets = [part.split('"')[0] for part in shell.text.split('"/ui/assets/')[1:]]
        assert {a.split(".")[0] for a in assets} >= {"app", "style", "theme", "favicon"}
        for name in assets:
            res = c.get("/ui/assets/" + name)
            assert res.status_code == 200
            assert (
                "immutable" in res.headers["cache-control"]
                and "max-age=31536000" in res.headers["cache-control"]
            )
        assert c.get("/ui/assets/app.000000000000.js").status_code == 404
        # untrusted and without a session: the API refuses
        assert c.get("/api/v1/devices").status_code == 401


def test_pair_device_through_qr_page_appears_live(page: Any, server: NekzusServer) -> None:
    import zxingcpp
    from PIL import Image

    show(page, "devices")
    page.get_by_role("button", name="Pair a device").click()
    code_el = page.locator("[data-pair-code]")
    page.wait_for_function(
        "() => /^[A-Z0-9]{8}$/.test(document.querySelector('[data-pair-code]').textContent)"
    )
    code = code_el.inner_text().strip()
    assert (
        "Code valid for 4:" in page.get_by_role("timer").inner_text()
        or "5:00" in page.get_by_role("timer").inner_text()
    )
    # the QR on screen encodes this server and this code
    page.wait_for_function("() => document.querySelector('img.qr').naturalWidth > 0")
    screenshot(page, "devices-pair-1280")
    png = page.locator("img.qr").screenshot()
    decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert decoded, "QR code not readable"
    payload = json.loads(decoded[0].text)
    assert payload["c"] == code and payload["u"].endswith(str(server.port))

    # a scripted phone redeems the code and pairs
    with httpx.Client(base_url=server.url, timeout=10) as phone:
        redeemed = phone.post("/api/v1/pair", json={"code": code}, headers={"X-Pairing-Request": "true"})
        assert redeemed.status_code == 200, redeemed.text
        paired = phone.post(
            "/api/v1/auth/pair",
            headers={"Authorization": f"Bearer {redeemed.json()['bootstrapToken']}"},
            json={"device": {"id": "ui-phone-1", "name": "Kitchen Phone", "platform": "android"}},
        )
        assert paired.status_code == 200, paired.text
        SHARED["phone_token"] = paired.json()["accessToken"]
    page.locator("dialog").get_by_text("paired.").wait_for()
    page.locator("dialog").get_by_role("button", name="Close").click()
    page.locator("tr[data-id='ui-phone-1']").wait_for()  # live, no reload
    assert "Kitchen Phone" in page.locator("tr[data-id='ui-phone-1']").inner_text()


def test_revoke_device_disappears_and_token_dies(page: Any, server: NekzusServer) -> None:
    show(page, "devices")
    row = page.locator("tr[data-id='ui-phone-1']")
    row.get_by_role("button", name="Revoke Kitchen Phone").click()
    page.locator("dialog").get_by_role("button", name="Revoke").click()
    row.wait_for(state="detached")
    with server.client() as c:
        res = c.get("/api/v1/apps", headers={"Authorization": f"Bearer {SHARED['phone_token']}"})
        assert res.status_code == 401


def test_mutation_without_csrf_token_is_refused(page: Any, server: NekzusServer) -> None:
    body = {"name": "csrf probe", "scopes": ["read:catalog"]}
    # from the page itself (same origin, cookie sent) but without the header
    status = page.evaluate(
        """async (body) => {
            const r = await fetch('/api/v1/apikeys', {method: 'POST', credentials: 'same-origin',
                headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)});
            return [r.status, (await r.json()).error.code];
        }""",
        body,
    )
    assert status == [403, "CSRF_TOKEN_INVALID"]
    cookie = session_cookie(page)["value"]
    with server.client(cookies={"nekzus_session": cookie}) as c:
        assert c.get("/api/v1/apikeys").status_code == 200  # reads need no CSRF token
        wrong = c.post("/api/v1/apikeys", json=body, headers={"X-CSRF-Token": "guess"})
        assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "CSRF_TOKEN_INVALID"
        assert c.delete("/api/v1/devices/ui-phone-1").status_code == 403
        assert c.post("/api/v1/ui/logout").status_code == 403
    # the dashboard's own mutations carry the token
    show(page, "apikeys")
    page.get_by_role("button", name="New API key").click()
    page.get_by_label("Name").fill("ci")
    page.locator("dialog").get_by_role("button", name="Create").click()
    key = page.locator("[data-api-key]").inner_text()
    assert key.startswith("nekzus_")
    page.locator("dialog").last.get_by_role("button", name="Close").click()
    page.locator("tr", has_text="ci").first.wait_for()


PROBES = {
    "toolbox": "/api/v1/toolbox/services",
    "scripts": "/api/v1/scripts",
    "backups": "/api/v1/backups",
    "federation": "/api/v1/federation/status",
    "certificates": "/api/v1/certificates",
}


def test_pages_without_backend_show_not_available(page: Any) -> None:
    """A page whose endpoints answer 404/503 says "not available" instead of breaking."""
    for name, probe in PROBES.items():
        status = page.evaluate("async p => (await fetch(p, {credentials: 'same-origin'})).status", probe)
        show(page, name)
        unavailable = page.locator("#main [data-unavailable]")
        if status in (404, 503):
            unavailable.first.wait_for()
            assert "not available" in unavailable.first.inner_text()
        else:  # the feature has been merged: its page must render without that notice
            assert unavailable.count() == 0, name


def test_every_page_accessible_and_screenshotted(browser: Any, page: Any, server: NekzusServer) -> None:
    violations: dict[str, list[str]] = {}
    for width, height in VIEWPORTS:
        page.set_viewport_size({"width": width, "height": height})
        for name in PAGES:
            show(page, name)
            settled(page)
            axe = width == 1280 or name in ("overview", "devices", "routes")
            if bad := check_view(page, f"{name}-{width}", width, axe=axe):
                violations[f"{name}@{width}"] = bad
    assert not violations, violations
    assert not real_errors(JS_ERRORS), JS_ERRORS


CLS_OBSERVER = """
window.__shifts = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    if (e.hadRecentInput) continue;
    const moved = (e.sources || []).map((x) => `${x.node && x.node.nodeName}#${x.node && x.node.id}`
      + ` ${JSON.stringify(x.previousRect)} -> ${JSON.stringify(x.currentRect)}`);
    window.__shifts.push([e.value, moved]);
  }
}).observe({ type: "layout-shift", buffered: true });
"""


def test_overview_does_not_shift_while_data_loads(page: Any, server: NekzusServer) -> None:
    """Cumulative layout shift of a fresh overview load (placeholders keep the space the data takes)."""
    context = page.context
    fresh = context.new_page()
    try:
        fresh.add_init_script(CLS_OBSERVER)
        fresh.goto(server.url + "/#/overview")
        fresh.locator('#main[data-ready="overview"]').wait_for(state="attached")
        fresh.locator("#conn.online").wait_for()
        fresh.wait_for_function("document.querySelectorAll('[aria-busy=true]').length === 0")
        fresh.wait_for_timeout(300)  # one more frame pair for any late shift to be reported
        shifts = fresh.evaluate("window.__shifts")
        assert sum(v for v, *_ in shifts) < 0.02, shifts
    finally:
        fresh.close()


def test_theme_is_remembered(page: Any, server: NekzusServer) -> None:
    page.set_viewport_size({"width": 1280, "height": 900})
    show(page, "settings")
    page.get_by_label("Theme").select_option("dark")
    page.reload()
    page.locator("#nav").wait_for(state="visible")
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    show(page, "overview")
    screenshot(page, "overview-1280-dark")


def test_sign_out_ends_the_session(page: Any, server: NekzusServer) -> None:
    cookie = session_cookie(page)["value"]
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("heading", name="Sign in to Nekzus").wait_for()
    with server.client(cookies={"nekzus_session": cookie}) as c:
        res = c.get("/api/v1/devices")
        assert res.status_code == 401 and res.json()["error"]["code"] == "SESSION_EXPIRED"
        assert c.get("/api/v1/ui/session").json()["authenticated"] is False
