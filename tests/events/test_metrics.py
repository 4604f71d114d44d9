"""`GET /metrics`: Prometheus exposition, parsed with prometheus-client's own parser."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.events.conftest import WS, run
from tests.nekzus_server import NekzusServer


def scrape(
    client: httpx.Client, path: str = "/metrics"
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    reply = client.get(path)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_exposition_and_counters_move(server: NekzusServer) -> None:
    with server.client() as http:
        before = scrape(http)
        assert value(before, "nekzus_uptime_seconds") > 0
        assert any(name == "nekzus_build_info" for name, _ in before)

        async def scenario() -> None:
            ws = await WS.open(server.ws_url, "")
            await ws.send({"type": "ping"})
            await ws.recv_type("pong")
            await ws.send("garbage")
            await ws.recv_type("error")
            http.post("/api/v1/webhooks/notify", json={"data": {"x": 1}})
            await ws.recv_type("webhook")
            await ws.close()

        run(scenario())
        after = scrape(http)
    out = "nekzus_websocket_messages_total"
    assert (
        value(after, out, app_id="hub", direction="out")
        >= value(before, out, app_id="hub", direction="out") + 4
    )
    assert (
        value(after, out, app_id="hub", direction="in")
        >= value(before, out, app_id="hub", direction="in") + 3
    )
    assert value(after, out, app_id="hub", direction="invalid") >= 1
    accepted = "nekzus_websocket_connections_total"
    assert value(after, accepted, app_id="hub", status="accepted") >= 1 + value(
        before, accepted, app_id="hub", status="accepted"
    )
    hooks = "nekzus_webhook_requests_total"
    assert value(after, hooks, endpoint="notify", status="success") >= 1
    assert value(after, "nekzus_webhook_request_duration_seconds_count", endpoint="notify") >= 1
    # Route templates, never raw paths, in the HTTP labels.
    paths = {dict(labels).get("path") for name, labels in after if name == "nekzus_http_requests_total"}
    assert "/metrics" in paths and "/api/v1/webhooks/notify" in paths
    assert value(after, "nekzus_notification_queue_depth") == 0


def test_metrics_disabled_is_404(make_server: Callable[..., NekzusServer]) -> None:
    srv = make_server({"metrics": {"enabled": False}})
    with srv.client() as http:
        reply = http.get("/metrics")
        assert reply.status_code == 404
        assert reply.json()["error"]["code"] == "NOT_FOUND"


def test_metrics_custom_path(make_server: Callable[..., NekzusServer]) -> None:
    srv = make_server({"metrics": {"path": "/internal/prom"}})
    with srv.client() as http:
        assert value(scrape(http, "/internal/prom"), "nekzus_uptime_seconds") > 0
        assert http.get("/metrics").status_code == 404
