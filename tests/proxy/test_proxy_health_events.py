"""Health transitions of a real upstream reach WebSocket clients as `health_change`, and proxied requests
move `nekzus_proxy_requests_total` in `/metrics`."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiohttp import web

from tests.auth.conftest import PERMANENT_BOOTSTRAP, pair
from tests.events.conftest import WS
from tests.events.test_metrics import scrape, value
from tests.nekzus_server import NekzusServer, free_port
from tests.proxy.conftest import Upstream
from tests.waiting import until


class RestartableUpstream:
    """An aiohttp app on a fixed loopback port that can go away and come back (a container restart)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._runner: web.AppRunner | None = None

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _start(self) -> None:
        async def health(request: web.Request) -> web.Response:
            return web.Response(text="ok")

        async def echo(request: web.Request) -> web.Response:
            return web.json_response({"path": request.path})

        app = web.Application()
        app.router.add_get("/health", health)
        app.router.add_get("/{tail:.*}", echo)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start(self) -> None:
        self._call(self._start())

    def stop(self) -> None:
        self._call(self._stop())

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


@pytest.fixture(scope="module")
def flaky() -> Iterator[RestartableUpstream]:
    up = RestartableUpstream()
    up.start()
    yield up
    up.close()


@pytest.fixture(scope="module")
def srv(
    flaky: RestartableUpstream, upstream: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NekzusServer]:
    server = NekzusServer(
        {
            "routes": [
                {"id": "flaky", "app_id": "flaky", "path_base": "/apps/flaky/", "to": flaky.url},
                {
                    "id": "counted",
                    "app_id": "counted",
                    "path_base": "/apps/counted/",
                    "to": upstream.url,
                    "strip_prefix": True,
                    "skip_health_check": True,
                },
            ],
            "health_checks": {
                "interval": "250ms",
                "timeout": "1s",
                "unhealthy_threshold": 1,
                "path": "/health",
            },
            "auth": {"local_networks": []},
            "bootstrap": {"tokens": [PERMANENT_BOOTSTRAP]},
        },
        data_dir=tmp_path_factory.mktemp("proxy-health"),
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def device_token(srv: NekzusServer) -> str:
    """A paired phone's token (default scopes: read:catalog, read:events)."""
    with srv.client() as c:
        token: str = pair(c, f"health-phone-{time.monotonic_ns()}")["accessToken"]
        return token


def route_status(c: httpx.Client, token: str, route_id: str) -> str:
    r = c.get(f"/api/v1/routes/{route_id}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    status: str = r.json()["healthInfo"]["status"]
    return status


def successful_checks(c: httpx.Client, app_id: str) -> float:
    samples = scrape(c)
    return value(samples, "nekzus_service_health_checks_total", app_id=app_id, status="success")


async def next_health_change(ws: WS, app_id: str, status: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        message = await ws.recv_type("health_change", max(0.05, deadline - time.monotonic()))
        data: dict[str, Any] = message["data"]
        if data["appId"] == app_id and data["status"] == status:
            return data


def test_health_change_events_over_the_websocket_hub(
    srv: NekzusServer, flaky: RestartableUpstream, device_token: str
) -> None:
    auth = {"Authorization": f"Bearer {device_token}"}

    async def scenario() -> None:
        with srv.client() as c:
            deadline = time.monotonic() + 10
            while route_status(c, device_token, "flaky") != "healthy":
                assert time.monotonic() < deadline, "route never became healthy"
                await asyncio.sleep(0.05)
            assert c.get("/apps/flaky/x", headers=auth).json() == {"path": "/apps/flaky/x"}
            ws = await WS.open(srv.ws_url, device_token)
            try:
                # healthy → unhealthy: the upstream goes away.
                flaky.stop()
                down = await next_health_change(ws, "flaky", "unhealthy")
                assert down["previousStatus"] == "healthy"
                assert down["proxyPath"] == "/apps/flaky/"
                assert down["message"] and down["timestamp"].endswith("Z")
                assert route_status(c, device_token, "flaky") == "unhealthy"
                r = c.get("/apps/flaky/x", headers=auth)
                assert r.status_code == 503 and r.json()["error"]["code"] == "SERVICE_UNHEALTHY"
                svc = c.get("/api/v1/services/flaky/health", headers=auth)
                assert svc.status_code == 503
                # unhealthy → healthy: it comes back on the same port.
                flaky.start()
                up = await next_health_change(ws, "flaky", "healthy")
                checked = successful_checks(c, "flaky")
                assert up["previousStatus"] == "unhealthy"
                assert c.get("/apps/flaky/y", headers=auth).json() == {"path": "/apps/flaky/y"}
                assert c.get("/api/v1/services/flaky/health", headers=auth).status_code == 200
                # One event per transition: no repeats while the status holds (two more checks).
                await until(
                    lambda: successful_checks(c, "flaky") >= checked + 2,
                    timeout=10,
                    interval=0.1,
                    what="two more health checks",
                )
                repeats = [m for m in await ws.barrier() if m["type"] == "health_change"]
                assert repeats == []
            finally:
                await ws.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_metrics_count_proxied_requests_per_app(srv: NekzusServer, device_token: str) -> None:
    auth = {"Authorization": f"Bearer {device_token}"}
    with srv.client() as c:
        before = scrape(c)
        for i in range(7):
            assert c.get(f"/apps/counted/n{i}", headers=auth).status_code == 200
        for _ in range(3):
            assert c.get("/apps/counted/status/404", headers=auth).status_code == 404
        assert c.get("/apps/counted/x").status_code == 401  # refused before the proxy: not an app request
        after = scrape(c)
    name = "nekzus_proxy_requests_total"
    assert (
        value(after, name, app_id="counted", status="200")
        - value(before, name, app_id="counted", status="200")
        == 7
    )
    assert (
        value(after, name, app_id="counted", status="404")
        - value(before, name, app_id="counted", status="404")
        == 3
    )
    # The request-duration histogram moved too, and bytes were counted for the app.
    hist = "nekzus_proxy_request_duration_seconds_count"
    assert value(after, hist, app_id="counted") >= value(before, hist, app_id="counted") + 10
    moved = "nekzus_proxy_bytes_transferred_total"
    assert value(after, moved, app_id="counted", direction="out") > value(
        before, moved, app_id="counted", direction="out"
    )
