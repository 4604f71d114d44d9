"""Hot reload of the config file against the real server: routes merge, rejections, live settings, SIGHUP."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import yaml
from aiohttp import web

from tests.nekzus_server import NekzusServer, free_port
from tests.waiting import wait_until

ADMIN = {"username": "admin", "password": "correct horse battery staple"}
BOOTSTRAP = "reload-bootstrap-token-0123456789abcdef"


class Upstream:
    """An aiohttp server on 127.0.0.1 answering every path with its own name (background thread)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    async def _start(self) -> None:
        async def handle(request: web.Request) -> web.Response:
            return web.Response(text=f"{self.name}:{request.path}")

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def start(self) -> Upstream:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


@pytest.fixture
def upstreams() -> Iterator[dict[str, Upstream]]:
    ups = {name: Upstream(name).start() for name in ("alpha", "beta", "gamma")}
    yield ups
    for up in ups.values():
        up.stop()


def route(route_id: str, path: str, to: str) -> dict[str, Any]:
    return {"id": route_id, "app_id": route_id, "path_base": path, "to": to, "strip_prefix": True}


def write_config(srv: NekzusServer, *, atomic: bool = False) -> None:
    """Write `srv.config` in place, or like an editor that writes a new file and renames it."""
    text = yaml.safe_dump(srv.config)
    if atomic:
        tmp = srv.config_path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, srv.config_path)
    else:
        srv.config_path.write_text(text)


def write_raw(srv: NekzusServer, text: str) -> None:
    srv.config_path.write_text(text)


def count_in_log(srv: NekzusServer, needle: str) -> int:
    return srv.logs().count(needle)


def wait_for(predicate: Callable[[], Any], what: str, srv: NekzusServer, timeout: float = 15.0) -> Any:
    try:
        return wait_until(predicate, timeout=timeout, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- server log ---\n{srv.logs()[-4000:]}") from None


def wait_log_count(srv: NekzusServer, needle: str, count: int) -> None:
    wait_for(lambda: count_in_log(srv, needle) >= count, f"{count}x {needle!r} in the log", srv)


RELOADED = "configuration reloaded ("


def rejected(status: str) -> str:
    return f"config reload rejected ({status})"


def reload_metric(client: httpx.Client, status: str) -> float:
    text = client.get("/metrics").text
    match = re.search(rf'^nekzus_config_reloads_total\{{status="{status}"\}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


@pytest.fixture
def srv(make_server: Callable[..., NekzusServer], upstreams: dict[str, Upstream]) -> NekzusServer:
    return make_server(
        {
            "routes": [route("old", "/apps/old/", upstreams["alpha"].url)],
            "health_checks": {"enabled": False},
        }
    )


def test_edit_adds_and_removes_config_routes_and_keeps_api_routes(
    srv: NekzusServer, upstreams: dict[str, Upstream]
) -> None:
    assert srv.proc is not None
    pid = srv.proc.pid
    with srv.client() as c:
        assert c.get("/apps/old/x").text == "alpha:/x"
        r = c.post(
            "/api/v1/routes",
            json={
                "routeId": "api1",
                "pathBase": "/apps/api1/",
                "to": upstreams["gamma"].url,
                "stripPrefix": True,
            },
        )
        assert r.status_code in (200, 201), r.text
        assert c.get("/apps/new/").status_code == 404

        srv.config["routes"].append(route("new", "/apps/new/", upstreams["beta"].url))
        write_config(srv, atomic=True)
        wait_for(lambda: c.get("/apps/new/hello").text == "beta:/hello", "the new config route", srv)
        assert c.get("/apps/old/x").text == "alpha:/x"
        assert c.get("/apps/api1/y").text == "gamma:/y"

        # Removing a config route takes it (and its app) away; the API route stays.
        srv.config["routes"] = [route("new", "/apps/new/", upstreams["beta"].url)]
        write_config(srv)

        def old_gone() -> bool:
            # The catalog drops the route before it tells the proxy (after its database writes): wait
            # for both, or a loaded machine sees the API and the proxy disagree for a moment.
            ids = {x["routeId"] for x in c.get("/api/v1/routes").json()}
            return "old" not in ids and c.get("/apps/old/x").status_code == 404

        wait_for(old_gone, "the removed config route to disappear", srv)
        ids = {x["routeId"] for x in c.get("/api/v1/routes").json()}
        assert {"new", "api1"} <= ids
        assert c.get("/apps/old/x").status_code == 404
        assert "old" not in {a["id"] for a in c.get("/api/v1/apps").json()}
        assert c.get("/apps/api1/y").text == "gamma:/y"
        assert c.get("/apps/new/z").text == "beta:/z"
        assert reload_metric(c, "success") >= 2
    assert srv.proc is not None and srv.proc.pid == pid  # never restarted

    # The merge survives a restart: the API route stays, the removed config route stays removed.
    srv.restart()
    with srv.client() as c:
        ids = {x["routeId"] for x in c.get("/api/v1/routes").json()}
        assert "api1" in ids and "new" in ids and "old" not in ids


def test_bad_edits_are_rejected_and_the_old_config_keeps_serving(
    srv: NekzusServer, upstreams: dict[str, Upstream]
) -> None:
    with srv.client() as c:
        # Not YAML at all.
        write_raw(srv, "routes: [unclosed\n  - {")
        wait_log_count(srv, rejected("error_load"), 1)
        assert c.get("/apps/old/a").text == "alpha:/a"
        assert reload_metric(c, "error_load") == 1

        # YAML, but an invalid value: the message names the key.
        bad = json.loads(json.dumps(srv.config))
        bad["routes"].append({"id": "broken", "path_base": "no-slash", "to": upstreams["beta"].url})
        write_raw(srv, yaml.safe_dump(bad))
        wait_log_count(srv, rejected("error_validation"), 1)
        line = next(x for x in srv.logs().splitlines() if rejected("error_validation") in x)
        assert "routes[1].path_base" in line
        assert c.get("/apps/old/a").text == "alpha:/a"
        assert c.get("/apps/broken/").status_code == 404
        assert reload_metric(c, "error_validation") == 1

        # A key that needs a restart: refused, named, nothing else applied.
        changed = json.loads(json.dumps(srv.config))
        changed["server"]["addr"] = f"127.0.0.1:{free_port()}"
        changed["routes"].append(route("later", "/apps/later/", upstreams["beta"].url))
        write_raw(srv, yaml.safe_dump(changed))
        wait_log_count(srv, rejected("error_restart_required"), 1)
        line = next(x for x in srv.logs().splitlines() if rejected("error_restart_required") in x)
        assert "server.addr" in line
        assert c.get("/apps/later/").status_code == 404
        assert reload_metric(c, "error_restart_required") == 1

        changed["server"]["addr"] = srv.config["server"]["addr"]
        changed["auth"] = {"issuer": "someone-else"}
        write_raw(srv, yaml.safe_dump(changed))
        wait_log_count(srv, rejected("error_restart_required"), 2)
        assert "auth.issuer" in srv.logs().split(rejected("error_restart_required"))[-1].splitlines()[0]
        assert c.get("/apps/later/").status_code == 404

        # A good edit afterwards is applied.
        srv.config["routes"].append(route("later", "/apps/later/", upstreams["beta"].url))
        write_config(srv)
        wait_for(lambda: c.get("/apps/later/q").text == "beta:/q", "the route from a good edit", srv)
        # The route goes live while the reload is applied; the outcome is counted just after that.
        wait_for(lambda: reload_metric(c, "success") == 1, "the good edit counted as a success", srv)
    # The rejected lines are single lines (no traceback) and the server is still healthy.
    assert "Traceback" not in srv.logs()


def test_live_settings_metrics_trust_bootstrap_rate_limits(srv: NekzusServer) -> None:
    with srv.client() as c:
        assert c.get("/metrics").status_code == 200
        pair = {"device": {"id": "reload-phone", "platform": "ios", "model": "Phone"}}
        headers = {"Authorization": f"Bearer {BOOTSTRAP}"}
        assert c.post("/api/v1/auth/pair", json=pair, headers=headers).status_code == 401

        srv.config["metrics"] = {"enabled": False}
        srv.config["bootstrap"] = {"tokens": [BOOTSTRAP]}
        write_config(srv)
        wait_for(lambda: c.get("/metrics").status_code == 404, "/metrics to be switched off", srv)
        assert c.get("/metrics").json()["error"]["code"] == "NOT_FOUND"
        r = c.post("/api/v1/auth/pair", json=pair, headers=headers)
        assert r.status_code == 200, r.text

        # Loopback stops being trusted; rate limits come on with a tiny general bucket.
        srv.config["auth"] = {"local_networks": []}
        srv.config["rate_limits"] = {"enabled": True, "general": {"rate": "1/min", "burst": 2}}
        srv.config["metrics"] = {"enabled": True}
        write_config(srv)
        wait_for(lambda: c.get("/metrics").status_code == 200, "/metrics to come back", srv)
        statuses = [c.get("/api/v1/routes").status_code for _ in range(4)]
        assert statuses[0] == 401, statuses  # no longer a trusted network
        assert 429 in statuses, statuses
        assert reload_metric(c, "success") == 2


def test_health_checks_switched_on_by_a_reload(srv: NekzusServer) -> None:
    def old_health() -> str:
        routes = {x["routeId"]: x for x in c.get("/api/v1/routes").json()}
        status: str = routes["old"]["healthInfo"]["status"]
        return status

    with srv.client() as c:
        assert old_health() == "unknown"  # checks are off at start
        srv.config["health_checks"] = {"enabled": True, "interval": "1s", "timeout": "2s"}
        write_config(srv)
        wait_for(lambda: old_health() == "healthy", "the first health check after the reload", srv)
        routes = {x["routeId"]: x for x in c.get("/api/v1/routes").json()}
        assert routes["old"]["healthInfo"]["effectiveInterval"] == "1s"


def test_reload_is_audited_and_announced(srv: NekzusServer, upstreams: dict[str, Upstream]) -> None:
    with srv.client() as c:
        r = c.post("/api/v1/auth/setup", json=ADMIN)
        assert r.status_code == 201, r.text
        token = c.post("/api/v1/auth/login", json=ADMIN).json()["token"]
        auth = {"Authorization": f"Bearer {token}"}

        srv.config["routes"].append(route("new", "/apps/new/", upstreams["beta"].url))
        write_config(srv)
        wait_log_count(srv, RELOADED, 1)

        def audited() -> list[dict[str, Any]]:
            resp = c.get("/api/v1/audit-logs", params={"action": "config.reloaded"}, headers=auth)
            assert resp.status_code == 200, resp.text
            logs: list[dict[str, Any]] = resp.json()["logs"]
            return logs

        entries = wait_for(audited, "the config.reloaded audit entry", srv)
        entry = entries[0]
        assert entry["actor"] == "system" and entry["success"] is True
        details = json.loads(entry["details"])
        assert details["trigger"] == "file"
        assert "new" in details["routesAdded"]

        activity = c.get("/api/v1/activity/recent", headers=auth)
        assert activity.status_code == 200, activity.text
        reloads = [a for a in activity.json() if a.get("type") == "config_reload"]
        assert reloads, activity.text
        assert reloads[0]["message"] == "Configuration reloaded"
        assert reloads[0]["icon"] == "RefreshCw"


def test_sighup_reloads_and_announces_on_the_websocket(srv: NekzusServer) -> None:
    import websockets

    assert srv.proc is not None
    proc = srv.proc

    async def scenario() -> dict[str, Any]:
        url = srv.ws_url + "/api/v1/ws"
        async with websockets.connect(url, open_timeout=5, close_timeout=2) as ws:
            await ws.send(json.dumps({"type": "auth", "data": {"token": ""}}))
            deadline = time.monotonic() + 10
            authed = False
            while time.monotonic() < deadline:
                message = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
                if message["type"] == "auth_success":
                    authed = True
                elif message["type"] == "hello" and authed:
                    proc.send_signal(signal.SIGHUP)
                elif message["type"] == "config_reload":
                    found: dict[str, Any] = message
                    return found
            raise AssertionError("no config_reload message after SIGHUP")

    with srv.client() as c:
        before = reload_metric(c, "success")
        message = asyncio.run(scenario())
        assert message["data"]["message"] == "Configuration reloaded"
        wait_log_count(srv, "configuration reloaded (sighup)", 1)
        # The counter moves once the whole reload (activity and audit included) has finished.
        wait_for(lambda: reload_metric(c, "success") == before + 1, "the success counter", srv)
        assert reload_metric(c, "success") == before + 1
        assert proc.poll() is None
        assert c.get("/apps/old/s").text == "alpha:/s"


def test_effective_config_keeps_restart_only_values() -> None:
    from nekzus.config import load_config
    from nekzus.config.reload import changed_keys, effective_config

    old = load_config(None, env={})
    new = load_config(None, env={})
    new.discovery.enabled = True
    new.metrics.enabled = False
    new.auth.default_scopes = ["read:catalog"]
    running = effective_config(old, new)
    assert running.discovery.enabled is False  # needs a restart: the running value stays
    assert running.metrics.enabled is False
    assert running.auth.default_scopes == ["read:catalog"]
    assert changed_keys(old, new) == ["auth.default_scopes", "discovery.enabled", "metrics.enabled"]
