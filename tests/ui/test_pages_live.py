"""Pages of the features that run without Docker, against the real server: register a script from the
dashboard, run it with its parameter form and read its output (delivered live), dry-run it, see the
execution listed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.nekzus_server import NekzusServer
from tests.scripts.conftest import scripts_config, write_scripts
from tests.ui.conftest import admin_server, screenshot, show, signed_in_page

pytestmark = [pytest.mark.browser]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NekzusServer]:
    root: Path = tmp_path_factory.mktemp("uilive")
    (root / "scripts").mkdir()
    write_scripts(root / "scripts")
    with admin_server(scripts_config(root / "scripts"), root / "data") as srv:
        yield srv


@pytest.fixture(scope="module")
def page(browser: Any, server: NekzusServer) -> Iterator[Any]:
    with signed_in_page(browser, server) as pg:
        yield pg


def test_register_run_and_dry_run_a_script(page: Any, server: NekzusServer) -> None:
    show(page, "scripts")
    page.get_by_label("Name", exact=True).fill("Hello")
    page.get_by_label("Script file").fill("hello.sh")
    page.get_by_label("Parameters (JSON list, optional)").fill(
        '[{"name": "NAME", "label": "Who", "required": true, "default": "world"},'
        ' {"name": "MODE", "options": ["fast", "slow"], "default": "fast"}]'
    )
    page.get_by_role("button", name="Register").click()
    page.get_by_role("button", name="Run Hello", exact=True).wait_for()

    page.get_by_role("button", name="Run Hello", exact=True).click()
    dialog = page.locator("dialog[open]")
    assert dialog.get_by_label("Who (required)").input_value() == "world"
    dialog.get_by_label("Who (required)").fill("nekzus")
    dialog.get_by_label("MODE").select_option("slow")
    dialog.get_by_role("button", name="Run", exact=True).click()
    out = dialog.get_by_label("Script output")
    out.get_by_text("hello nekzus mode=slow").wait_for()
    assert out.inner_text().startswith("completed (exit 0)")
    assert "dry=false" in out.inner_text()
    screenshot(page, "scripts-run-1280")
    dialog.get_by_role("button", name="Close").click()

    page.get_by_role("button", name="Dry run Hello").click()
    dialog = page.locator("dialog[open]")
    dialog.get_by_role("button", name="Dry run").click()
    dialog.get_by_label("Script output").get_by_text("dry=true").wait_for()
    dialog.get_by_role("button", name="Close").click()

    page.get_by_role("tab", name="Executions").click()
    table = page.get_by_role("table", name="Executions")
    table.wait_for()
    assert table.locator("tbody tr").count() == 2
    with server.client() as c:
        runs = c.get("/api/v1/executions").json()["executions"]
    assert sorted(r["isDryRun"] for r in runs) == [False, True]


def test_failing_script_shows_its_exit_code(page: Any) -> None:
    show(page, "overview")
    show(page, "scripts")
    page.get_by_label("Name", exact=True).fill("Fail")
    page.get_by_label("Script file").fill("fail.sh")
    page.get_by_role("button", name="Register").click()
    page.get_by_role("button", name="Run Fail", exact=True).click()
    dialog = page.locator("dialog[open]")
    dialog.get_by_role("button", name="Run", exact=True).click()
    dialog.get_by_label("Script output").get_by_text("about to fail").wait_for()
    assert dialog.get_by_label("Script output").inner_text().startswith("failed (exit 3)")
    dialog.get_by_role("button", name="Close").click()


OVERLAPPING_LOADS = """async () => {
  // the page's own module instance
  const m = await import(document.querySelector('script[type=module][src*="/app."]').src);
  const answers = [];  // one pending answer per load, settled below in the opposite order
  const table = m.region("Overlap", () => new Promise((resolve) => answers.push(resolve)));
  const older = table.load();
  const newer = table.load();
  answers[1](m.h("p", {}, "state after the stop"));
  await newer;
  answers[0](m.h("p", {}, "state before the stop"));
  await older;
  return table.el.textContent;
}"""


def test_a_slow_earlier_load_never_paints_over_a_newer_one(page: Any) -> None:
    """A click reloads a table and the event that follows reloads it again: the older answer, arriving
    last, must not bring back the state the newer answer already replaced."""
    show(page, "scripts")
    assert page.evaluate(OVERLAPPING_LOADS) == "state after the stop"
