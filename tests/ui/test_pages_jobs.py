"""The jobs page and live workflow runs in headless Chromium against a real Nekzus running real scripts:
jobs listed with status, kind, progress and times, paged and filtered by the API, a new job appearing and
a cancelled one changing state without a reload, a failed job's details; a workflow's steps going
pending → running → succeeded/failed (or skipped after a failing `stop` step) live in the run dialog."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.nekzus_server import NekzusServer
from tests.scripts.conftest import scripts_config, write_scripts
from tests.ui.conftest import admin_server, axe_serious, screenshot, show, signed_in_page

pytestmark = [pytest.mark.browser]

DASH = "\u2013"  # the pager writes ranges with an en dash


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NekzusServer]:
    root: Path = tmp_path_factory.mktemp("uijobs")
    (root / "scripts").mkdir()
    write_scripts(root / "scripts")
    with admin_server(scripts_config(root / "scripts"), root / "data") as srv:
        with srv.client() as c:
            for body in (
                {
                    "name": "Greeter",
                    "scriptPath": "hello.sh",
                    "parameters": [{"name": "NAME", "default": "x"}],
                },
                {"name": "Failer", "scriptPath": "fail.sh"},
                {
                    "name": "Sleeper",
                    "scriptPath": "slow.sh",
                    "parameters": [{"name": "SECONDS_TO_SLEEP", "type": "number", "default": 1}],
                },
            ):
                assert c.post("/api/v1/scripts", json=body).status_code == 201
        yield srv


@pytest.fixture(scope="module")
def page(browser: Any, server: NekzusServer) -> Iterator[Any]:
    with signed_in_page(browser, server, strict=True) as pg:
        yield pg


def run(c: httpx.Client, script: str, **params: Any) -> dict[str, Any]:
    reply = c.post(f"/api/v1/scripts/{script}/execute", json={"parameters": params})
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def wait_job(c: httpx.Client, job_id: str, state: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = c.get(f"/api/v1/jobs/{job_id}").json()
        if job.get("state") == state:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {state}")


def test_jobs_listed_paged_filtered_cancelled_live(page: Any, server: NekzusServer) -> None:
    with server.client() as c:
        failed = run(c, "failer")
        for _ in range(26):  # more than one page (25 a page)
            run(c, "greeter")
        wait_job(c, failed["id"], "failed")
        total = c.get("/api/v1/jobs").json()["total"]
    assert total >= 27
    show(page, "jobs")
    table = page.get_by_role("table", name="Jobs")
    table.locator("tbody tr[data-state='succeeded']").first.wait_for()
    assert table.locator("tbody tr").count() == 25
    pages = page.get_by_role("navigation", name="Jobs pages")
    assert f"1{DASH}25 of {total}" in pages.inner_text()
    screenshot(page, "jobs-1280")
    assert not axe_serious(page)

    # A job started now appears without a reload, runs, and is cancelled from the page.
    with server.client() as c:
        accepted = c.post(
            "/api/v1/scripts/sleeper/execute",
            params={"async": "true"},
            json={"parameters": {"SECONDS_TO_SLEEP": 60}},
        ).json()
        job_id = accepted["executionId"]
        wait_job(c, job_id, "running")
    row = table.locator(f"tr[data-id='{job_id}']")
    table.locator(f"tr[data-id='{job_id}'][data-state='running']").wait_for()
    assert "script" in row.inner_text()
    row.get_by_role("button", name=f"Cancel job {job_id}").click()
    page.locator("dialog").get_by_role("button", name="Cancel job").click()
    table.locator(f"tr[data-id='{job_id}'][data-state='cancelled']").wait_for()
    assert row.get_by_role("button", name=f"Cancel job {job_id}").count() == 0
    with server.client() as c:
        assert wait_job(c, job_id, "cancelled")["state"] == "cancelled"

    # Next page, then only the failed ones, through the API's paging and filter.
    pages.get_by_role("button", name="Next").click()
    page.get_by_role("navigation", name="Jobs pages").get_by_text(f"26{DASH}").wait_for()
    page.get_by_label("Status").select_option("failed")
    page.get_by_role("navigation", name="Jobs pages").get_by_text(f"1{DASH}1 of 1").wait_for()
    states = table.locator("tbody tr").evaluate_all("rows => rows.map(r => r.dataset.state)")
    assert states == ["failed"]

    # The details of the failed job: its error and output.
    table.get_by_role("button", name=f"Details of job {failed['id']}").click()
    dialog = page.locator("dialog")
    dialog.locator("[data-job-error]").filter(has_text="exit code 3").wait_for()
    assert "about to fail" in dialog.locator("[data-job-output]").inner_text()
    assert not axe_serious(page)
    dialog.get_by_role("button", name="Close").click()
    # By kind: nothing of an unknown kind, every script run of the right one.
    page.get_by_label("Status").select_option("")
    page.get_by_label("Kind").fill("no-such-kind")
    page.get_by_role("button", name="Filter", exact=True).click()
    table.get_by_text("No jobs match.").wait_for()
    page.get_by_label("Kind").fill("script")
    page.get_by_role("button", name="Filter", exact=True).click()
    table.locator("tbody tr[data-state]").first.wait_for()
    kinds = table.locator("tbody tr").evaluate_all("rows => rows.map(r => r.cells[1].textContent)")
    assert kinds and set(kinds) == {"script"}
    page.get_by_label("Status").select_option("succeeded")
    page.wait_for_function(
        """() => { const rows = [...document.querySelectorAll('table tbody tr')];
                  return rows.length && rows.every((r) => r.dataset.state === 'succeeded'); }"""
    )
    ok_id = table.locator("tbody tr").first.get_attribute("data-id")
    table.get_by_role("button", name=f"Details of job {ok_id}").click()
    assert page.locator("dialog").get_by_label(f"Result of job {ok_id}").inner_text() == "completed"
    page.locator("dialog").get_by_role("button", name="Close").click()

    page.set_viewport_size({"width": 375, "height": 800})
    try:
        show(page, "overview")
        show(page, "jobs")
        table.locator("tbody tr").first.wait_for()
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 380
        screenshot(page, "jobs-375")
    finally:
        page.set_viewport_size({"width": 1280, "height": 900})


# Records every step's status as the run dialog shows it, in order, without duplicates.
RECORD_STEPS = """() => {
  window.__steps = [];
  const seen = (s) => { if (window.__steps[window.__steps.length - 1] !== s) window.__steps.push(s); };
  new MutationObserver(() => {
    const items = document.querySelectorAll('[data-run-steps] li');
    if (items.length) seen([...items].map((li) => li.dataset.status).join(','));
  }).observe(document.body, { subtree: true, childList: true, attributes: true });
}"""


def test_workflow_steps_change_live(page: Any, server: NekzusServer) -> None:
    with server.client() as c:
        for name, steps in (
            # The failing first step continues: the second still runs (and takes a moment).
            (
                "Carry On",
                [
                    {"scriptId": "failer", "onFailure": "continue"},
                    {"scriptId": "sleeper", "parameters": {"SECONDS_TO_SLEEP": 1}},
                ],
            ),
            # The failing first step stops the run: the second is skipped.
            ("Halt", [{"scriptId": "failer", "onFailure": "stop"}, {"scriptId": "greeter"}]),
        ):
            assert c.post("/api/v1/workflows", json={"name": name, "steps": steps}).status_code == 201
    show(page, "overview")
    show(page, "scripts")
    page.get_by_role("tab", name="Workflows").click()
    table = page.get_by_role("table", name="Workflows")
    table.get_by_role("button", name="Run workflow Carry On").wait_for()
    page.evaluate(RECORD_STEPS)

    table.get_by_role("button", name="Run workflow Carry On").click()
    dialog = page.locator("dialog")
    dialog.locator("[data-run-status='failed']").wait_for(timeout=20000)
    steps = dialog.locator("[data-run-steps] li")
    assert steps.nth(0).get_attribute("data-status") == "failed"
    assert steps.nth(1).get_attribute("data-status") == "succeeded"
    assert "about to fail" in dialog.get_by_label("Output of step 1").inner_text()
    assert "exit 3" in steps.nth(0).inner_text()
    assert "slept" in dialog.get_by_label("Output of step 2").inner_text()
    history: list[str] = page.evaluate("() => window.__steps")
    # Seen live, in order: both pending, the first ended failed while the second (a second's sleep) was
    # still running, then the second done. (The first step's own running state may be too short to see:
    # events that arrive before the run's id is known are replayed at once.)
    assert history[0] == "pending,pending" and history[-1] == "failed,succeeded", history
    assert "failed,running" in history, history
    assert history.index("failed,running") < history.index("failed,succeeded"), history
    screenshot(page, "scripts-workflow-run-1280")
    assert not axe_serious(page)
    dialog.get_by_role("button", name="Close").click()

    page.evaluate(RECORD_STEPS)
    table.get_by_role("button", name="Run workflow Halt").click()
    dialog = page.locator("dialog")
    dialog.locator("[data-run-status='failed']").wait_for(timeout=20000)
    steps = dialog.locator("[data-run-steps] li")
    assert [steps.nth(i).get_attribute("data-status") for i in range(2)] == ["failed", "skipped"]
    history = page.evaluate("() => window.__steps")
    assert history[0] == "pending,pending" and history[-1] == "failed,skipped", history
    assert "stops on failure" in steps.nth(0).inner_text()
    dialog.get_by_role("button", name="Close").click()
