"""Notification and script pages in headless Chromium against a real Nekzus: the failed/stale panel with
bulk retry and dismiss, the queue paged by the API; editing a registered script's metadata and
parameters, building a workflow (ordered steps, on-failure), creating and editing schedules for a script
and a workflow, executions paged by the API."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from tests.nekzus_server import NekzusServer
from tests.scripts.conftest import scripts_config, write_scripts
from tests.ui.conftest import admin_server, axe_serious, screenshot, show, signed_in_page

pytestmark = [pytest.mark.browser]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NekzusServer]:
    root: Path = tmp_path_factory.mktemp("uiauto")
    (root / "scripts").mkdir()
    write_scripts(root / "scripts")
    config = scripts_config(root / "scripts")
    # Unacknowledged notifications are re-sent every 0.3 s and fail after one retry.
    config["notifications"] = {"enabled": True, "queue": {"retry_interval": "0.3s", "max_retries": 1}}
    with admin_server(config, root / "data") as srv:
        yield srv


@pytest.fixture(scope="module")
def page(browser: Any, server: NekzusServer) -> Iterator[Any]:
    with signed_in_page(browser, server, strict=True) as pg:
        yield pg


def reopen(page: Any, name: str) -> None:
    """Open a page afresh (opening the page already shown would not reload it)."""
    show(page, "overview")
    show(page, name)


def rows(server: NekzusServer, **params: Any) -> list[dict[str, Any]]:
    with server.client() as c:
        reply = c.get("/api/v1/notifications", params={"limit": 200, **params})
        assert reply.status_code == 200, reply.text
        found: list[dict[str, Any]] = reply.json()["notifications"]
        return found


def make_failed(server: NekzusServer, count: int) -> None:
    """Queue notifications for the trusted-network client ("local") and let them fail for real: a
    WebSocket that receives them but never acknowledges, until the retry limit marks them failed."""
    with server.client() as c:
        for n in range(count):
            reply = c.post("/api/v1/webhooks/notify", json={"data": {"n": n}, "deviceIds": ["local"]})
            assert reply.status_code == 200, reply.text
    with connect(server.ws_url + "/api/v1/ws", open_timeout=5) as ws:
        ws.send(json.dumps({"type": "auth", "data": {"token": ""}}))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if len(rows(server, status="failed", deviceId="local")) >= count:
                return
            with contextlib.suppress(TimeoutError):
                ws.recv(timeout=0.2)  # drain (pings are not answered either: the test is done by then)
    raise AssertionError(f"notifications did not fail: {rows(server, deviceId='local')}")


def make_stale(server: NekzusServer, device: str, count: int) -> None:
    """Pending notifications for an absent device, aged past the 24 h threshold in the database (the
    only input the test cannot produce by waiting)."""
    with server.client() as c:
        for n in range(count):
            c.post("/api/v1/webhooks/notify", json={"data": {"n": n}, "deviceIds": [device]})
    db = sqlite3.connect(server.data_dir / "nexus.db")
    try:
        db.execute(
            "UPDATE notifications SET created_at = datetime(created_at, '-2 days') WHERE device_id = ?",
            (device,),
        )
        db.commit()
    finally:
        db.close()


def test_failed_panel_bulk_retry_and_dismiss(page: Any, server: NekzusServer) -> None:
    make_failed(server, 3)
    failed = rows(server, status="failed")
    assert len(failed) == 3
    reopen(page, "notifications")
    panel = page.locator("[data-panel='failed']")
    table = panel.get_by_role("table", name="Failed notifications")
    table.wait_for()
    assert table.locator("tbody tr").count() == 3
    assert page.locator("[data-stat='totalFailed'] .value").inner_text() == "3"
    screenshot(page, "notifications-attention-1280")
    assert not axe_serious(page)

    # Retry two of them: they go back to the queue as pending; the panel shows the one left.
    ids = sorted(n["id"] for n in failed)
    panel.get_by_label(f"Select failed notification {ids[0]}").check()
    panel.get_by_label(f"Select failed notification {ids[1]}").check()
    panel.get_by_role("button", name="Retry selected").click()
    page.wait_for_function("() => document.querySelectorAll(\"[data-panel='failed'] tbody tr\").length === 1")
    by_id = {n["id"]: n for n in rows(server)}
    assert by_id[ids[0]]["status"] != "failed" and by_id[ids[1]]["status"] != "failed"

    # Dismiss the last one from the panel.
    panel.get_by_label(f"Select failed notification {ids[2]}").check()
    panel.get_by_role("button", name="Dismiss selected").click()
    page.locator("[data-panel='failed'] [data-empty='failed']").wait_for()
    assert {n["id"]: n for n in rows(server)}[ids[2]]["status"] == "dismissed"


def test_stale_devices_retry_all_and_dismiss_all(page: Any, server: NekzusServer) -> None:
    make_stale(server, "away-phone", 2)
    make_stale(server, "away-tablet", 1)
    reopen(page, "notifications")
    stale = page.get_by_role("table", name="Devices with stale notifications")
    stale.wait_for()
    assert stale.locator("tbody tr").count() == 2
    assert page.locator("[data-stat='staleCount'] .value").inner_text() == "3"
    stale.get_by_role("button", name="Retry all for away-phone").click()
    page.get_by_text("2 notification(s) for away-phone queued for retry").wait_for()
    stale.get_by_role("button", name="Dismiss all for away-tablet").click()
    page.locator("dialog[open]").get_by_role("button", name="Dismiss").click()
    page.locator("tr[data-id='away-tablet']").wait_for(state="detached")
    assert [n["status"] for n in rows(server, deviceId="away-tablet")] == ["dismissed"]


def test_queue_is_paged_by_the_api_and_filtered(page: Any, server: NekzusServer) -> None:
    with server.client() as c:
        for n in range(55):
            c.post("/api/v1/webhooks/notify", json={"data": {"n": n}, "deviceIds": ["many"]})
    reopen(page, "notifications")
    page.get_by_label("Device", exact=True).fill("many")
    page.get_by_role("button", name="Filter", exact=True).click()
    info = page.get_by_role("navigation", name="Notifications pages").locator("[data-page-info]")
    info.get_by_text("1\u201350 of 55").wait_for()
    assert page.get_by_role("table", name="Notifications", exact=True).locator("tbody tr").count() == 50
    page.get_by_role("navigation", name="Notifications pages").get_by_role("button", name="Next").click()
    info.get_by_text("51\u201355 of 55").wait_for()
    assert page.get_by_role("table", name="Notifications", exact=True).locator("tbody tr").count() == 5


def test_edit_a_registered_script(page: Any, server: NekzusServer) -> None:
    with server.client() as c:
        made = c.post("/api/v1/scripts", json={"name": "Hello", "scriptPath": "hello.sh"})
        assert made.status_code == 201, made.text
        c.post("/api/v1/scripts", json={"name": "Fail", "scriptPath": "fail.sh"})
    sid = made.json()["id"]
    reopen(page, "scripts")
    page.get_by_role("button", name="Edit Hello").click()
    dialog = page.locator("dialog[open]")
    dialog.get_by_label("Name", exact=True).fill("Greeter")
    dialog.get_by_label("Category").fill("demo")
    dialog.get_by_label("Timeout (s)").fill("42")
    dialog.get_by_role("button", name="Add parameter").click()
    dialog.get_by_label("Parameter 1 name").fill("NAME")
    dialog.get_by_label("Parameter 1 label").fill("Who")
    dialog.get_by_label("Parameter 1 default").fill("world")
    dialog.get_by_label("Parameter 1 required").check()
    dialog.get_by_role("button", name="Add parameter").click()
    dialog.get_by_label("Parameter 2 name").fill("MODE")
    dialog.get_by_label("Parameter 2 choices (comma separated)").fill("fast, slow")
    screenshot(page, "scripts-edit-1280")
    dialog.get_by_role("button", name="Save").click()
    page.get_by_role("button", name="Run Greeter", exact=True).wait_for()
    with server.client() as c:
        script = c.get(f"/api/v1/scripts/{sid}").json()
    assert script["name"] == "Greeter" and script["category"] == "demo" and script["timeoutSeconds"] == 42
    assert script["parameters"] == [
        {"name": "NAME", "type": "string", "required": True, "label": "Who", "default": "world"},
        {"name": "MODE", "label": "MODE", "type": "string", "required": False, "options": ["fast", "slow"]},
    ]
    # The run form follows the new parameters.
    page.get_by_role("button", name="Run Greeter", exact=True).click()
    run = page.locator("dialog[open]")
    assert run.get_by_label("Who (required)").input_value() == "world"
    run.get_by_label("MODE").select_option("slow")
    run.get_by_role("button", name="Run", exact=True).click()
    run.get_by_label("Script output").get_by_text("hello world mode=slow").wait_for()
    run.get_by_role("button", name="Close").click()

    # An API error is shown in the form, not swallowed.
    page.get_by_role("button", name="Edit Greeter").click()
    dialog = page.locator("dialog[open]")
    dialog.get_by_label("Timeout (s)").fill("0")
    dialog.locator("input[name=timeoutSeconds]").evaluate("el => el.removeAttribute('min')")
    dialog.get_by_role("button", name="Save").click()
    dialog.get_by_role("alert").wait_for()
    dialog.get_by_role("button", name="Close").click()


def test_create_a_workflow_with_ordered_steps(page: Any, server: NekzusServer) -> None:
    reopen(page, "scripts")
    page.get_by_role("tab", name="Workflows").click()
    page.get_by_role("button", name="New workflow").click()
    dialog = page.locator("dialog[open]")
    dialog.get_by_label("Workflow name").fill("Nightly")
    dialog.get_by_label("Step 1 script").select_option(label="Fail")
    dialog.get_by_label("Step 1 on failure").select_option("continue")
    dialog.get_by_role("button", name="Add step").click()
    dialog.get_by_label("Step 2 script").select_option(label="Greeter")
    dialog.get_by_label("Step 2 parameters").fill("NAME=night\nMODE=fast")
    # Greeter first: move step 2 up (its labels follow the new order).
    dialog.get_by_role("button", name="Move step 2 up").click()
    assert dialog.get_by_label("Step 1 parameters").input_value() == "NAME=night\nMODE=fast"
    assert dialog.get_by_label("Step 2 on failure").input_value() == "continue"
    assert not axe_serious(page)
    screenshot(page, "scripts-workflow-1280")
    dialog.get_by_role("button", name="Create workflow").click()
    table = page.get_by_role("table", name="Workflows")
    table.get_by_text("1. Greeter → 2. Fail (continue on failure)").wait_for()
    with server.client() as c:
        flows = c.get("/api/v1/workflows").json()["workflows"]
        scripts = {s["name"]: s["id"] for s in c.get("/api/v1/scripts").json()["scripts"]}
    assert [(s["scriptId"], s["onFailure"], s["parameters"]) for s in flows[0]["steps"]] == [
        (scripts["Greeter"], "stop", {"NAME": "night", "MODE": "fast"}),
        (scripts["Fail"], "continue", {}),
    ]
    # Running it: both steps run (the failing one continues), the runs dialog shows it.
    table.get_by_role("button", name="Run workflow Nightly").click()
    run = page.locator("dialog[open]")
    run.locator("[data-run-status='failed']").wait_for(timeout=20000)
    assert run.locator("[data-run-steps] li").evaluate_all("li => li.map(x => x.dataset.status)") == [
        "succeeded",
        "failed",
    ]
    run.get_by_role("button", name="Close").click()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with server.client() as c:
            runs = c.get(f"/api/v1/workflows/{flows[0]['id']}/executions").json()["executions"]
        if runs and runs[0]["status"] not in ("pending", "running"):
            break
        time.sleep(0.2)
    assert runs[0]["status"] == "failed" and len(runs[0]["steps"]) == 2
    table.get_by_role("button", name="Runs of workflow Nightly").click()
    page.locator("dialog[open]").get_by_role("table", name="Runs of Nightly").get_by_text(
        "1: Greeter completed; 2: Fail failed"
    ).wait_for()
    page.locator("dialog[open]").get_by_role("button", name="Close").click()


def test_schedules_for_script_and_workflow_created_and_edited(page: Any, server: NekzusServer) -> None:
    reopen(page, "scripts")
    page.get_by_role("tab", name="Schedules").click()
    page.get_by_role("button", name="New schedule").click()
    dialog = page.locator("dialog[open]")
    dialog.get_by_label("Script or workflow").select_option(label="Greeter")
    dialog.get_by_label("Cron expression (minute hour day month weekday)").fill("0 2 * * *")
    dialog.get_by_label("Parameters").fill("NAME=cron")
    dialog.get_by_role("button", name="Create schedule").click()
    table = page.get_by_role("table", name="Schedules")
    table.get_by_text("Script Greeter").wait_for()

    page.get_by_role("button", name="New schedule").click()
    dialog = page.locator("dialog[open]")
    dialog.get_by_label("Runs a").select_option("workflow")
    dialog.get_by_label("Script or workflow").select_option(label="Nightly")
    dialog.get_by_label("Cron expression (minute hour day month weekday)").fill("not a cron")
    dialog.get_by_role("button", name="Create schedule").click()
    dialog.get_by_role("alert").wait_for()  # the API's validation error, in the form
    dialog.get_by_label("Cron expression (minute hour day month weekday)").fill("30 3 * * 1")
    dialog.get_by_label("Enabled").uncheck()
    dialog.get_by_role("button", name="Create schedule").click()
    table.get_by_text("Workflow Nightly").wait_for()

    table.get_by_role("button", name="Edit schedule of Script Greeter").click()
    dialog = page.locator("dialog[open]")
    dialog.get_by_label("Cron expression (minute hour day month weekday)").fill("15 4 * * *")
    dialog.get_by_label("Parameters").fill("NAME=dawn")
    dialog.get_by_role("button", name="Save").click()
    table.get_by_text("15 4 * * *").wait_for()
    table.get_by_role("button", name="Enable schedule of Workflow Nightly").click()
    table.get_by_role("button", name="Disable schedule of Workflow Nightly").wait_for()
    screenshot(page, "scripts-schedules-1280")
    with server.client() as c:
        schedules = c.get("/api/v1/schedules").json()["schedules"]
    by_kind = {("workflow" if s["workflowId"] else "script"): s for s in schedules}
    assert by_kind["script"]["cronExpression"] == "15 4 * * *"
    assert by_kind["script"]["parameters"] == {"NAME": "dawn"}
    assert by_kind["workflow"]["cronExpression"] == "30 3 * * 1" and by_kind["workflow"]["enabled"] is True


def test_executions_paged_by_the_api(page: Any, server: NekzusServer) -> None:
    with server.client() as c:
        sid = next(s["id"] for s in c.get("/api/v1/scripts").json()["scripts"] if s["name"] == "Greeter")
        for _ in range(52):
            assert c.post(f"/api/v1/scripts/{sid}/execute", json={"dryRun": True}).status_code == 200
        total = c.get("/api/v1/executions", params={"limit": 1}).json()["total"]
    assert total > 50
    reopen(page, "scripts")
    page.get_by_role("tab", name="Executions").click()
    pager = page.get_by_role("navigation", name="Executions pages")
    pager.get_by_text(f"1\u201350 of {total}").wait_for()
    pager.get_by_role("button", name="Next").click()
    pager.get_by_text(f"51\u2013{min(100, total)} of {total}").wait_for()
    table = page.get_by_role("table", name="Executions", exact=True)
    assert table.locator("tbody tr").count() == min(50, total - 50)


def test_audit_log_and_devices_paged_by_the_api(page: Any, server: NekzusServer) -> None:
    # The audit log needs a user's credential (not the trusted network): read it as the page does.
    total = page.evaluate("async () => (await (await fetch('/api/v1/audit-logs?limit=1')).json()).total")
    with server.client() as c:
        devices = c.get("/api/v1/devices", params={"limit": 1}).json()["total"]
    assert total > 50  # the runs and changes above were audited
    reopen(page, "audit")
    pager = page.get_by_role("navigation", name="Audit log pages")
    pager.get_by_text(f"1\u201350 of {total}").wait_for()
    pager.get_by_role("button", name="Next").click()
    pager.get_by_text(f"51\u2013{min(100, total)} of {total}").wait_for()
    pager.get_by_role("button", name="Previous").click()
    pager.get_by_text(f"1\u201350 of {total}").wait_for()
    reopen(page, "devices")
    pager = page.get_by_role("navigation", name="Devices pages")
    pager.wait_for()
    assert pager.get_by_role("button", name="Next").is_disabled() and devices < 50


def test_metrics_page_shows_the_dashboard_figures(page: Any, server: NekzusServer) -> None:
    reopen(page, "metrics")
    total = page.locator("[data-metric='http.totalRequests'] .value")
    total.wait_for()
    assert int(total.inner_text().replace(",", "")) > 0
    for heading in ("HTTP", "Proxy", "WebSocket", "Authentication", "Discovery", "Health", "System"):
        assert page.get_by_role("heading", name=heading, exact=True).count() == 1
    page.get_by_role("table", name="http Top paths").wait_for()
    assert not axe_serious(page)
    screenshot(page, "metrics-dashboard-1280")
