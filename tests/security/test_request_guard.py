"""DNS rebinding and cross-site requests: a Host Nekzus does not serve is refused, and so are
state-changing requests and WebSocket upgrades from another site's pages."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import websockets
from websockets.typing import Origin

from nekzus.http.guard import ServedHosts, refusal
from tests.nekzus_server import NekzusServer


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NekzusServer]:
    config = {"server": {"allowed_hosts": ["nekzus.home.arpa"], "base_domain": "lab.test"}}
    with NekzusServer(config, data_dir=tmp_path_factory.mktemp("guard")) as server:
        yield server


def test_unknown_host_is_refused_even_from_a_trusted_network(srv: NekzusServer) -> None:
    with srv.client() as c:
        rebinding = c.post(
            "/api/v1/apikeys",
            json={"name": "x", "scopes": ["access:admin"]},
            headers={"Host": "attacker.example"},
        )
        assert rebinding.status_code == 421
        assert rebinding.json()["error"]["code"] == "HOST_NOT_SERVED"
        assert c.get("/apps/any/", headers={"Host": "attacker.example"}).status_code == 421
        for host in ("nekzus.home.arpa", "app.lab.test", "localhost", f"127.0.0.1:{srv.port}"):
            assert c.get("/livez", headers={"Host": host}).status_code == 200, host


def test_cross_site_mutations_are_refused(srv: NekzusServer) -> None:
    with srv.client() as c:
        for headers in (
            {"Origin": "https://evil.example"},
            {"Sec-Fetch-Site": "cross-site"},
            {"Origin": "null"},
        ):
            r = c.post("/api/v1/containers/stop-all", headers=headers)
            assert r.status_code == 403, (headers, r.text)
            assert r.json()["error"]["code"] == "CROSS_SITE_REQUEST"
        # Reads are not blocked, and same-site pages or non-browser clients pass.
        assert c.get("/livez", headers={"Origin": "https://evil.example"}).status_code == 200
        same = c.post(
            "/api/v1/apikeys",
            json={"name": "k", "scopes": ["read:catalog"]},
            headers={"Origin": srv.url, "Sec-Fetch-Site": "same-origin"},
        )
        assert same.status_code == 201, same.text
        assert c.post("/api/v1/apikeys", json={"name": "k2", "scopes": ["read:catalog"]}).status_code == 201


def test_cross_site_websocket_upgrades_are_refused(srv: NekzusServer) -> None:
    async def attempt(path: str, origin: str) -> int | None:
        try:
            async with websockets.connect(srv.ws_url + path, origin=Origin(origin), open_timeout=10):
                return None
        except websockets.InvalidStatus as exc:
            return exc.response.status_code

    assert asyncio.run(attempt("/api/v1/ws", "https://evil.example")) == 403
    assert asyncio.run(attempt("/apps/anything/ws", "https://evil.example")) == 403


def test_refusal_rules() -> None:
    hosts = ServedHosts({"localhost", "192.168.1.10", "nas"}, ["lab.test"])
    scope = {"type": "http", "method": "POST", "headers": [(b"host", b"nas:8443")]}
    assert refusal(scope, hosts) is None
    assert refusal({**scope, "headers": [(b"host", b"[::1]:8443")]}, hosts) is None
    assert refusal({**scope, "headers": [(b"host", b"127.0.0.2")]}, hosts) is None
    assert refusal({**scope, "headers": [(b"host", b"lab.test.evil")]}, hosts) is not None
    assert (
        refusal({**scope, "headers": [(b"host", b"nas"), (b"origin", b"http://x.lab.test")]}, hosts) is None
    )
    with_origin = {**scope, "headers": [(b"host", b"nas"), (b"origin", b"http://nas.evil")]}
    assert refusal(with_origin, hosts) == (
        403,
        "CROSS_SITE_REQUEST",
        "Requests from other sites are not allowed",
    )
