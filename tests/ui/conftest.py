"""Browser-test fixtures: one headless Debian Chromium per module (driven by Playwright, never downloaded),
pages signed in through the real sign-in form, and screenshot/accessibility helpers."""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.nekzus_server import ROOT, NekzusServer
from tests.waiting import wait_until

CHROMIUM = "/usr/bin/chromium"
# Without these Chromium keeps dialling out (updates, sync, QUIC probes) from a sandbox that forbids it.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
ARTIFACTS = ROOT / "test-artifacts" / "ui"
PASSWORD = "correct horse battery"
PAGES = [
    "overview",
    "routes",
    "discovery",
    "devices",
    "containers",
    "toolbox",
    "scripts",
    "jobs",
    "apikeys",
    "audit",
    "notifications",
    "metrics",
    "certificates",
    "backups",
    "federation",
    "settings",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: run scripts/install-system-deps.sh")
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="nekzus-chromium-")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
    shutil.rmtree(profile, ignore_errors=True)


def setup_token(server: NekzusServer, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(r"setup token \(header X-Setup-Token\): (\S+)", server.logs())
        if found:
            return found.group(1)
        time.sleep(0.05)
    raise AssertionError("no setup token in the server log")


def sign_in(page: Any, server: NekzusServer, username: str = "admin", password: str = PASSWORD) -> None:
    """Sign in through the login form (the account must exist)."""
    page.goto(server.url + "/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.locator("#nav").wait_for(state="visible")
    page.locator("#conn.online").wait_for()


def show(page: Any, name: str) -> None:
    """Open one dashboard page and wait until it finished loading."""
    page.evaluate("name => { location.hash = '#/' + name }", name)
    page.locator(f'#main[data-ready="{name}"]').wait_for(state="attached")


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


# A documentation range as the only local network: loopback is NOT trusted, so every request needs a token.
UNTRUSTED_LOOPBACK: dict[str, Any] = {"auth": {"local_networks": ["192.0.2.0/24"]}}
# The two sizes every page is checked at: a desktop window and a phone.
VIEWPORTS = ((1280, 900), (375, 812))


@contextmanager
def admin_server(
    config: dict[str, Any] | None, data_dir: Path, timeout: float = 60, *, token: bool = False
) -> Iterator[NekzusServer]:
    """A started server whose admin (admin / PASSWORD) was made by first-run setup, which needs no token
    on the trusted loopback (with `token`, for an untrusted one, the setup token from the log); stopped
    on exit."""
    srv = NekzusServer(config, data_dir=data_dir)
    srv.start(timeout=timeout)
    try:
        with srv.client() as c:
            headers = {"X-Setup-Token": setup_token(srv)} if token else {}
            body = {"username": "admin", "password": PASSWORD}
            got = c.post("/api/v1/auth/setup", json=body, headers=headers)
            assert got.status_code == 201, got.text
        yield srv
    finally:
        srv.stop()


def collect_errors(page: Any, errors: list[str], console: bool = True) -> None:
    """Record the page's uncaught exceptions (and console errors) into `errors`."""
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    if console:
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)


@contextmanager
def signed_in_page(
    browser: Any,
    server: NekzusServer,
    errors: list[str] | None = None,
    *,
    strict: bool = False,
    sign: bool = True,
    prepare: Callable[[Any], object] | None = None,
    permissions: list[str] | None = None,
    **options: Any,
) -> Iterator[Any]:
    """A desktop-sized page in a fresh browser context, signed in as the admin (unless `sign` is false,
    after `prepare(page)`); the context closes on exit. Page and console errors go to `errors`; with
    `strict` any uncaught page exception fails on exit instead."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, **options)
    uncaught: list[str] = []
    try:
        if permissions:
            context.grant_permissions(permissions, origin=server.url)
        pg = context.new_page()
        if errors is not None:
            collect_errors(pg, errors)
        if strict:
            collect_errors(pg, uncaught, console=False)
        if prepare is not None:
            prepare(pg)
        if sign:
            sign_in(pg, server)
        yield pg
    finally:
        context.close()
    assert not uncaught, uncaught


def settled(page: Any) -> None:
    """Wait until every region of the page finished its first load (pages that poll never go idle)."""
    page.wait_for_function("() => !document.querySelector('#main [aria-busy=\"true\"]')")


def axe_serious(page: Any) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate("src => (0, eval)(src)", AXE.read_text())  # via the debugger: not subject to the CSP
    result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['id']}: {v['help']} ({len(v['nodes'])})"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def no_horizontal_scroll(page: Any, what: str = "") -> None:
    """On a phone the page itself never scrolls sideways (wide tables scroll inside their own box)."""
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 375 + 1, what


def check_view(page: Any, shot: str, width: int, *, axe: bool = True) -> list[str]:
    """Screenshot the page as `shot`, return axe's serious violations (none looked for when `axe` is
    false) and, at phone width, assert that the page does not scroll sideways."""
    screenshot(page, shot)
    bad = axe_serious(page) if axe else []
    if width <= 375:
        no_horizontal_scroll(page, shot)
    return bad


def real_errors(errors: list[str]) -> list[str]:
    """The page errors that matter: a failed fetch the page handled (e.g. a 404 it shows) is not one."""
    return [e for e in errors if "Failed to load resource" not in e]


@pytest.fixture
def until() -> Callable[..., Any]:
    return wait_until
