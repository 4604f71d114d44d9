"""Page weight and time to interactive of the dashboard overview, in headless Debian Chromium.

Starts a Nekzus on loopback, creates the admin, signs in through the form, then loads the overview
RUNS times with a cold cache (fresh browser context) and RUNS times warm (same context, reload).
"Interactive" = the overview's data has loaded and its controls are wired (`#main[data-ready]`),
measured from navigation start. Usage: python bench/ui_overview.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from playwright.sync_api import sync_playwright
from tests.nekzus_server import NekzusServer
from tests.ui.conftest import CHROMIUM, CHROMIUM_ARGS, PASSWORD, sign_in

RUNS = 5


def measure(page: Any, url: str, reload: bool = False) -> tuple[float, int, int, float]:
    """(ms to interactive, bytes transferred (headers + bodies), responses, ms to DOMContentLoaded)."""
    sizes: list[int] = []

    def on_finished(request: Any) -> None:
        try:
            s = request.sizes()
            sizes.append(int(s["responseBodySize"]) + int(s["responseHeadersSize"]))
        except Exception:
            sizes.append(0)

    page.on("requestfinished", on_finished)
    start = time.perf_counter()
    if reload:
        page.reload()
    else:
        page.goto(url + "/#/overview")
    page.locator('#main[data-ready="overview"]').wait_for(state="attached")
    elapsed = (time.perf_counter() - start) * 1000
    page.remove_listener("requestfinished", on_finished)
    dcl = page.evaluate("performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd")
    return elapsed, sum(sizes), len(sizes), float(dcl)


def main() -> None:
    with NekzusServer() as srv, sync_playwright() as pw:
        with srv.client() as c:
            c.post("/api/v1/auth/setup", json={"username": "admin", "password": PASSWORD}).raise_for_status()
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        cold: list[tuple[float, int, int, float]] = []
        for _ in range(RUNS):
            ctx = browser.new_context()
            page = ctx.new_page()
            sign_in(page, srv)
            cookies = ctx.cookies()
            ctx.close()
            ctx = browser.new_context()
            ctx.add_cookies(cookies)
            page = ctx.new_page()
            cold.append(measure(page, srv.url))
            ctx.close()
        ctx = browser.new_context()
        page = ctx.new_page()
        sign_in(page, srv)
        measure(page, srv.url)
        warm = [measure(page, srv.url, reload=True) for _ in range(RUNS)]
        browser.close()
    for label, runs in (("cold cache", cold), ("warm cache", warm)):
        ms = statistics.median(r[0] for r in runs)
        kb = statistics.median(r[1] for r in runs) / 1024
        n = statistics.median(r[2] for r in runs)
        dcl = statistics.median(r[3] for r in runs)
        print(
            f"{label}: time to interactive {ms:.0f} ms (median of {RUNS}), "
            f"{kb:.1f} KiB over {n:.0f} responses, DOMContentLoaded {dcl:.0f} ms"
        )


if __name__ == "__main__":
    main()
