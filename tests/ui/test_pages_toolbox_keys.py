"""The toolbox catalog, the API keys page and the page chrome (notification bell, footer) in real headless
Chromium against one real Nekzus. The toolbox lists the bundled templates plus two of the test's own
(validated by the real compose binary, which needs no engine); nothing is deployed here (the docker tests
deploy through the page)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.nekzus_server import NekzusServer
from tests.ui.conftest import (
    admin_server,
    check_view,
    no_horizontal_scroll,
    real_errors,
    screenshot,
    settled,
    show,
    sign_in,
    signed_in_page,
)

pytestmark = [pytest.mark.browser]

JS_ERRORS: list[str] = []

DEMO = """\
services:
  app:
    image: local/busybox:latest
    command: ["httpd", "-f", "-p", "80"]
    environment:
      ADMIN_PASSWORD: ${ADMIN_PASSWORD}
      GREETING: ${GREETING:-hello there}
    ports:
      - "127.0.0.1:${APP_PORT:-18181}:80"
    labels:
      nekzus.toolbox.name: Tool Demo
      nekzus.toolbox.category: testing
      nekzus.toolbox.description: A demo template for the dashboard tests
      nekzus.toolbox.tags: "demo, dashboard"
      nekzus.toolbox.documentation: https://docs.example.org/demo
      nekzus.toolbox.repository_url: https://src.example.org/demo
      nekzus.toolbox.website: https://www.example.org/demo
"""
PROBE = """\
services:
  probe:
    image: local/busybox:latest
    command: ["sleep", "60"]
    labels:
      nekzus.toolbox.name: Second Probe
      nekzus.toolbox.category: testing
      nekzus.toolbox.description: Has no variables at all
      nekzus.toolbox.tags: probe
      nekzus.toolbox.documentation: "javascript:alert(1)"
"""

# Enough small templates (with the bundled ones) for the catalog to need a second page of cards.
FILLERS = 8
FILLER = """\
services:
  filler:
    image: local/busybox:latest
    labels:
      nekzus.toolbox.name: Filler {i}
      nekzus.toolbox.category: zz-fillers
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NekzusServer]:
    root = tmp_path_factory.mktemp("uitoolbox")
    fillers = [(f"filler-{i}", FILLER.format(i=i)) for i in range(FILLERS)]
    for sid, text in [("tool-demo", DEMO), ("second-probe", PROBE), *fillers]:
        (root / "catalog" / sid).mkdir(parents=True)
        (root / "catalog" / sid / "docker-compose.yml").write_text(text)
    config = {
        "toolbox": {
            "enabled": True,
            "catalog_dir": str(root / "catalog"),
            "data_dir": str(root / "deployments"),
        },
        # Nothing here reaches the engine: a socket that does not exist is enough.
        "runtimes": {"docker": {"enabled": False, "socket_path": f"unix://{root}/none.sock"}},
    }
    with admin_server(config, root / "srv", timeout=90) as srv:
        yield srv


@pytest.fixture(scope="module")
def page(browser: Any, server: NekzusServer) -> Iterator[Any]:
    with signed_in_page(browser, server, JS_ERRORS, permissions=["clipboard-read", "clipboard-write"]) as pg:
        yield pg


def cards(page: Any) -> list[str]:
    return list(page.eval_on_selector_all("#main [data-service]", "els => els.map(e => e.dataset.service)"))


def test_catalog_grouped_and_narrowed_by_category_and_search(page: Any, server: NekzusServer) -> None:
    with server.client() as c:
        catalog = c.get("/api/v1/toolbox/services").json()["services"]
    assert {"tool-demo", "second-probe", "portainer"} <= {s["id"] for s in catalog}
    show(page, "toolbox")
    # grouped: one section per category (in order), each holding only its own cards
    category = {s["id"]: s["category"] for s in catalog}
    groups = page.eval_on_selector_all(
        "#main [data-category]",
        "els => els.map(e => [e.dataset.category, [...e.querySelectorAll('[data-service]')]"
        ".map(c => c.dataset.service)])",
    )
    assert [g for g, _ in groups] == sorted({category[sid] for _, ids in groups for sid in ids})
    assert all(category[sid] == g for g, ids in groups for sid in ids)
    assert sum(len(ids) for _, ids in groups) == 24  # the first page

    page.get_by_label("Category").select_option("testing")
    assert sorted(cards(page)) == ["second-probe", "tool-demo"]
    assert page.locator("[data-catalog-summary]").inner_text() == f"2 of {len(catalog)} services"
    page.get_by_label("Search the catalog").fill("probe")  # a tag, within the category
    assert cards(page) == ["second-probe"]
    page.get_by_label("Category").select_option("")
    page.get_by_label("Search the catalog").fill("uptime")
    assert cards(page) == ["uptime-kuma"]
    page.get_by_label("Search the catalog").fill("no such service at all")
    assert cards(page) == []
    page.get_by_text("No service matches the filter.").wait_for()
    page.get_by_label("Search the catalog").fill("demo")

    demo = page.locator('[data-service="tool-demo"]')
    assert demo.locator(".tags li").all_inner_texts() == ["demo", "dashboard"]
    assert demo.locator(".tb-icon").inner_text() == "TD"
    links = demo.locator("a").evaluate_all("as => as.map(a => [a.textContent, a.getAttribute('href')])")
    assert links == [
        ["Documentation of Tool Demo", "https://docs.example.org/demo"],
        ["Source of Tool Demo", "https://src.example.org/demo"],
        ["Website of Tool Demo", "https://www.example.org/demo"],
    ]
    page.get_by_label("Search the catalog").fill("second probe")
    # a template's link that is not http(s) is not made a link
    assert page.locator('[data-service="second-probe"] a').count() == 0
    page.get_by_label("Search the catalog").fill("")


def test_long_catalog_is_paged(page: Any, server: NekzusServer) -> None:
    with server.client() as c:
        total = c.get("/api/v1/toolbox/services").json()["count"]
    assert total > 24
    show(page, "toolbox")
    pager = page.get_by_role("navigation", name="Catalog pages")
    assert len(cards(page)) == 24
    assert pager.locator("[data-page-info]").inner_text() == f"1\u201324 of {total} (page 1 of 2)"
    first = set(cards(page))
    pager.get_by_role("button", name="Next").click()
    second = set(cards(page))
    assert len(second) == total - 24 and not first & second
    # the last page holds the last category; its group continues from the first page
    assert "filler-7" in second
    page.get_by_label("Category").select_option("zz-fillers")  # a filter starts again at page one
    assert len(cards(page)) == FILLERS and pager.count() == 0


@pytest.mark.parametrize("service_id", ["tool-demo", "second-probe", "grafana"])
def test_deploy_dialog_fields_match_template_variables(
    page: Any, server: NekzusServer, service_id: str
) -> None:
    with server.client() as c:
        template = c.get(f"/api/v1/toolbox/services/{service_id}").json()
    show(page, "toolbox")
    page.get_by_label("Category").select_option("")
    page.get_by_label("Search the catalog").fill(template["name"])  # it may be on another page
    page.get_by_role("button", name=f"Deploy {template['name']}", exact=True).click()
    dialog = page.locator("dialog[open]")
    dialog.get_by_label("Service name").wait_for()  # the form is built once the template's details arrived
    fields = dialog.locator("[data-variables] input, [data-variables] select").evaluate_all(
        "els => els.map(e => ({name: e.name, type: e.type, required: e.required, value: e.value,"
        " label: e.labels[0] && e.labels[0].textContent}))"
    )
    expected = template["env_vars"]
    assert [f["name"] for f in fields] == [v["name"] for v in expected]
    for got, var in zip(fields, expected, strict=True):
        assert got["type"] == var["type"], (got, var)
        assert got["required"] == var["required"], (got, var)
        assert got["value"] == var.get("default", ""), (got, var)
        assert got["label"] == var["label"] + (" (required)" if var["required"] else ""), (got, var)
    if not expected:
        dialog.get_by_text("This template has no settings.").wait_for()
    # the deployment's own options beside the template's variables
    assert dialog.get_by_label("Service name").input_value() == service_id
    port = dialog.get_by_label("Custom port")
    assert port.get_attribute("type") == "number"
    assert port.get_attribute("placeholder") == str(template.get("default_port", ""))
    assert dialog.get_by_label("Custom image").get_attribute("placeholder") == template["image"]
    assert dialog.get_by_label("Start after deploying").is_checked()
    if service_id == "tool-demo":
        screenshot(page, "toolbox-deploy-dialog-1280")
    dialog.get_by_role("button", name="Close").click()
    dialog.wait_for(state="detached")


def test_api_key_shown_once_revoked_then_deleted(page: Any, server: NekzusServer) -> None:
    show(page, "apikeys")
    page.get_by_role("button", name="New API key").click()
    page.locator("dialog[open]").get_by_label("Name").fill("ui lifecycle")
    page.locator("dialog[open]").get_by_role("button", name="Create").click()
    shown = page.locator("dialog[open] [data-api-key]")
    key = shown.inner_text()
    assert key.startswith("nekzus_")
    page.locator("dialog[open]").get_by_role("button", name="Copy key").click()
    page.locator("dialog[open]").get_by_text("Copied to the clipboard.").wait_for()
    assert page.evaluate("() => navigator.clipboard.readText()") == key
    page.locator("dialog[open]").get_by_role("button", name="Close").click()
    page.locator("[data-api-key]").wait_for(state="detached")  # gone once closed: never shown again
    with server.client() as c:
        keys = {k["name"]: k for k in c.get("/api/v1/apikeys").json()}
        assert "key" not in keys["ui lifecycle"]
        key_id = keys["ui lifecycle"]["id"]
        assert c.get("/api/v1/apps", headers={"X-API-Key": key}).status_code != 401  # the key works

    row = page.locator(f'tr[data-id="{key_id}"]')
    row.locator('[data-key-status="active"]').wait_for()
    row.get_by_role("button", name="Revoke key ui lifecycle").click()
    page.locator("dialog[open]").get_by_role("button", name="Revoke").click()
    row.locator('[data-key-status="revoked"]').wait_for()
    assert row.locator("[data-revoked]").count() == 1
    # shown distinctly: struck through
    assert "line-through" in row.locator(".key-name").evaluate("e => getComputedStyle(e).textDecorationLine")
    assert row.get_by_role("button", name="Revoke key ui lifecycle").count() == 0
    with server.client() as c:
        assert c.get(f"/api/v1/apikeys/{key_id}").json()["revokedAt"]
        assert c.get("/api/v1/apps", headers={"X-API-Key": key}).status_code == 401
    # the revoked key hides behind the filter and comes back
    page.get_by_label("Show revoked keys").uncheck()
    row.wait_for(state="detached")
    page.get_by_label("Show revoked keys").check()
    row.wait_for()

    row.get_by_role("button", name="Delete key ui lifecycle permanently").click()
    confirm = page.locator("dialog[open]")
    assert "permanently" in confirm.inner_text()
    confirm.get_by_role("button", name="Cancel").click()  # nothing happens without the confirmation
    confirm.wait_for(state="detached")
    with server.client() as c:
        assert c.get(f"/api/v1/apikeys/{key_id}").status_code == 200
    row.get_by_role("button", name="Delete key ui lifecycle permanently").click()
    page.locator("dialog[open]").get_by_role("button", name="Delete permanently").click()
    row.wait_for(state="detached")
    with server.client() as c:
        gone = c.get(f"/api/v1/apikeys/{key_id}")
        assert gone.status_code == 404, gone.text


def test_bell_counts_webhook_activity_and_lists_it(page: Any, server: NekzusServer) -> None:
    show(page, "settings")
    bell = page.locator("#bell")
    count = bell.locator(".bell-count")
    if count.is_visible():  # earlier tests' toasts: start from zero unread
        bell.click()
        page.locator("#bell-panel").get_by_role("button", name="Mark all read").click()
        bell.click()
    assert not count.is_visible()
    with server.client() as c:
        res = c.post(
            "/api/v1/webhooks/activity",
            json={
                "message": "Nightly backup finished",
                "details": "3 volumes, 1.2 GB",
                "iconClass": "success",
            },
        )
        assert res.status_code == 200, res.text
    page.locator(".toast", has_text="Nightly backup finished").wait_for()
    count.wait_for(state="visible")
    assert count.inner_text() == "1"
    assert count.get_attribute("aria-live") == "polite"
    assert bell.get_attribute("aria-expanded") == "false"
    bell.click()
    assert bell.get_attribute("aria-expanded") == "true"
    panel = page.locator("#bell-panel")
    item = panel.locator("li.unread", has_text="Nightly backup finished")
    assert "3 volumes, 1.2 GB" in item.inner_text()
    assert "webhook" in item.inner_text()
    assert item.locator("time").get_attribute("datetime")
    screenshot(page, "bell-panel-1280")

    # kept for this tab across a reload
    page.reload()
    page.locator("#conn.online").wait_for()
    assert count.inner_text() == "1"
    bell.click()
    panel.get_by_role("button", name="Mark all read").click()
    count.wait_for(state="hidden")
    assert panel.locator("li.unread").count() == 0
    assert panel.locator("li", has_text="Nightly backup finished").count() == 1
    panel.get_by_role("button", name="Clear").click()
    panel.get_by_text("No notifications yet.").wait_for()
    page.keyboard.press("Escape")
    panel.wait_for(state="hidden")

    # bounded: the oldest notices make way
    kept = page.evaluate(
        """() => {
            for (let i = 0; i < 80; i++) {
                const detail = {message: "n" + i, kind: "info"};
                window.dispatchEvent(new CustomEvent("nekzus:toast", {detail}));
            }
            return JSON.parse(sessionStorage.getItem("nekzus.notices")).map((n) => n.message);
        }"""
    )
    assert len(kept) == 50 and kept[0] == "n79" and kept[-1] == "n30"
    assert count.inner_text() == "50"


def test_webhook_popups_follow_the_notifications_setting(page: Any, server: NekzusServer) -> None:
    show(page, "settings")
    setting = page.get_by_label("Pop up webhook activity")
    setting.uncheck()
    with server.client() as c:
        res = c.post("/api/v1/webhooks/activity", json={"message": "Quiet webhook"})
        assert res.status_code == 200, res.text
    # The bell records it (so the event did arrive) while no pop-up was shown.
    page.wait_for_function(
        """() => (JSON.parse(sessionStorage.getItem("nekzus.notices") || "[]"))
                 .some((n) => n.message === "Quiet webhook")"""
    )
    assert page.locator(".toast", has_text="Quiet webhook").count() == 0
    setting.check()
    with server.client() as c:
        assert c.post("/api/v1/webhooks/activity", json={"message": "Loud webhook"}).status_code == 200
    page.locator(".toast", has_text="Loud webhook").wait_for()


def test_footer_shows_server_version_and_api_docs(page: Any, server: NekzusServer) -> None:
    with server.client() as c:
        version = c.get("/api/v1/admin/info").json()["version"]
    footer = page.locator("footer.foot")
    footer.locator("[data-version]", has_text=version).wait_for()
    assert f"Nekzus version {version}" in footer.inner_text()
    assert footer.get_by_role("link", name="API documentation").get_attribute("href") == "/api/docs"
    with server.client() as c:
        assert c.get("/api/docs").status_code == 200


@pytest.mark.parametrize("width", [1280, 375])
def test_changed_pages_accessible_and_readable(page: Any, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 900 if width > 400 else 812})
    violations: dict[str, list[str]] = {}
    for name in ("toolbox", "apikeys"):
        show(page, name)
        settled(page)
        if width == 375:
            page.locator("#menu-toggle").wait_for()
        page.locator("#bell").click()  # the open notification centre is checked too
        page.locator("#bell-panel").wait_for()
        if bad := check_view(page, f"{name}-bell-{width}", width):
            violations[f"{name}@{width}"] = bad
        page.keyboard.press("Escape")
        page.locator("#bell-panel").wait_for(state="hidden")
        if width == 375:
            no_horizontal_scroll(page, name)
    assert not violations, violations
    assert not real_errors(JS_ERRORS), JS_ERRORS


def test_sign_out_clears_the_notices(page: Any, server: NekzusServer) -> None:
    page.set_viewport_size({"width": 1280, "height": 900})
    page.evaluate("""() => window.dispatchEvent(new CustomEvent("nekzus:toast", {detail: {message: "x"}}))""")
    assert page.locator("#bell .bell-count").inner_text() != ""
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("heading", name="Sign in to Nekzus").wait_for()
    assert not page.locator("#bell").is_visible() and not page.locator("footer.foot").is_visible()
    sign_in(page, server)
    assert not page.locator("#bell .bell-count").is_visible()
    assert page.evaluate("() => sessionStorage.getItem('nekzus.notices')") == "[]"
