"""The containers page with the Kubernetes runtime on (the API emulator on loopback, Docker configured but
unreachable): pods listed with their namespace, stopped and started through their Deployment with the
row changing live, a bare pod's refusal shown as a message, a pod's logs in the viewer, each running pod's
CPU/RAM from the metrics API (and one quiet "metrics not available" note, with its reason, without it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kube import objects
from tests.kube.conftest import emulator, kubeconfig  # noqa: F401 - fixtures
from tests.kube.emulator import KubeEmulator
from tests.nekzus_server import NekzusServer, free_port
from tests.ui.conftest import admin_server, axe_serious, screenshot, show, signed_in_page

pytestmark = [pytest.mark.browser]


@pytest.fixture(scope="module")
def server(
    emulator: KubeEmulator,  # noqa: F811
    kubeconfig: Path,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[NekzusServer]:
    for obj in objects.all_objects():
        emulator.apply(obj)
    config = {
        "runtimes": {
            "primary": "kubernetes",
            "docker": {"enabled": True, "socket_path": f"tcp://127.0.0.1:{free_port()}"},
            "kubernetes": {"enabled": True, "kubeconfig": str(kubeconfig), "metrics_cache_ttl": "1s"},
        }
    }
    with admin_server(config, tmp_path_factory.mktemp("uikube"), timeout=90) as srv:
        yield srv


@pytest.fixture(scope="module")
def page(browser: Any, server: NekzusServer) -> Iterator[Any]:
    with signed_in_page(browser, server) as pg:
        yield pg


def grafana(server: NekzusServer) -> dict[str, Any]:
    with server.client() as c:
        pods = c.get("/api/v1/containers", params={"runtime": "kubernetes", "namespace": "monitoring"}).json()
    return next(p for p in pods if p["name"].startswith("grafana"))


def test_pods_listed_stopped_and_started_live(page: Any, server: NekzusServer) -> None:
    pod = grafana(server)
    assert pod["state"] == "running"
    show(page, "containers")
    page.get_by_label("Runtime").select_option("kubernetes")
    table = page.get_by_role("table", name="Containers")
    row = table.locator(f"tr[data-id='monitoring/{pod['id']}']")
    row.locator("[data-state='running']").wait_for()
    assert "monitoring" in row.inner_text()
    assert table.get_by_role("columnheader", name="Namespace").count() == 1
    screenshot(page, "containers-kubernetes-1280")

    # Stop: the Deployment scales to zero, the page shows it stopped without a reload.
    row.get_by_role("button", name=f"stop monitoring/{pod['name']}").click()
    stopped = table.locator("tr[data-id='monitoring/grafana']")
    stopped.locator("[data-state='stopped']").wait_for(timeout=20000)
    stopped.get_by_role("button", name="start monitoring/grafana").click()
    # The new pod (another name): while the stop was being applied, one listing may still have shown the
    # old pod beside the stopped Deployment (pods and Deployments are listed by separate calls).
    started = f"tr[data-id^='monitoring/grafana-']:not([data-id='monitoring/{pod['id']}'])"
    table.locator(f"{started} [data-state='running']").wait_for(timeout=20000)
    assert grafana(server)["state"] == "running"


def test_bare_pod_refusal_is_shown(page: Any, server: NekzusServer) -> None:
    show(page, "overview")
    show(page, "containers")
    page.get_by_label("Search").fill("debug")
    row = page.locator("tr[data-id='default/debug']")
    row.get_by_role("button", name="restart default/debug").click()
    page.locator(".toast.error").filter(has_text="Deployment or StatefulSet").wait_for()


def test_pod_logs_in_the_viewer(page: Any, server: NekzusServer, emulator: KubeEmulator) -> None:  # noqa: F811
    lines = ["LOG:  database system is ready", "LOG:  checkpoint starting"]
    emulator.set_logs("default", "postgres-0", lines)
    show(page, "overview")
    show(page, "containers")
    page.get_by_label("Search").fill("postgres")
    page.locator("tr[data-id='default/postgres-0']").get_by_role(
        "button", name="Logs of default/postgres-0"
    ).click()
    logs = page.locator("dialog pre.logs")
    logs.get_by_text("database system is ready").wait_for()
    assert "checkpoint starting" in logs.inner_text()
    page.locator("dialog").get_by_role("button", name="Close").click()


def test_pod_usage_shown_per_pod(page: Any, server: NekzusServer, emulator: KubeEmulator) -> None:  # noqa: F811
    # No metrics-server: one note saying why, no error toasts, the pods still listed.
    emulator.metrics_enabled = False
    show(page, "overview")
    show(page, "containers")
    page.get_by_label("Runtime").select_option("kubernetes")
    note = page.locator("[data-pod-metrics='unavailable']")
    note.filter(has_text="is metrics-server installed").wait_for()
    assert "metrics not available" in note.inner_text()
    row = page.locator("tr[data-id='default/postgres-0']")
    assert "metrics not available" in row.inner_text()
    # (the previous test's refusal toast may still be up: only toasts about metrics count here)
    assert not [t for t in page.locator(".toast.error").all_inner_texts() if "metric" in t.lower()]

    # With metrics-server: each running pod's usage, parsed from its own units.
    container = emulator.objects[("Pod", "default", "postgres-0")]["spec"]["containers"][0]["name"]
    emulator.pod_usage[("default", "postgres-0")] = {container: {"cpu": "125000000n", "memory": "131072Ki"}}
    emulator.metrics_enabled = True
    for _ in range(40):  # the runtime remembers a missing API for a second (metrics_cache_ttl)
        show(page, "overview")
        show(page, "containers")
        page.get_by_label("Runtime").select_option("kubernetes")
        page.locator("tr[data-id='default/postgres-0'] [data-state='running']").wait_for()
        if page.locator("tr[data-id='default/postgres-0'] [data-usage]").count():
            break
        page.wait_for_timeout(250)
    usage = page.locator("tr[data-id='default/postgres-0'] [data-usage]")
    assert usage.inner_text() == "125m CPU (25% of limit) / 128.0 MB"
    assert page.locator("[data-pod-metrics]").count() == 0
    assert page.locator("tbody [data-usage]").count() == page.locator("tbody [data-state='running']").count()
    assert not axe_serious(page)
    screenshot(page, "containers-kubernetes-usage-1280")
