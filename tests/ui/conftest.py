"""Browser-test fixtures: one headless Debian Chromium per module (driven by Playwright, never downloaded),
pages signed in through the real sign-in form, and screenshot/accessibility helpers."""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.nekzus_server import ROOT, NekzusServer

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


@pytest.fixture
def until() -> Callable[..., Any]:
    def poll(check: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what or check}")

    return poll
