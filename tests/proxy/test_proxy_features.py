"""WebSocket tunnelling, HTML/header rewriting and per-route auth through the proxy."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from nekzus.proxy.websocket import MAX_MESSAGE_BYTES
from tests.nekzus_server import NekzusServer, free_port
from tests.proxy.conftest import Upstream, admin_credentials, routes_for


@pytest.fixture(scope="module")
def nekzus(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NekzusServer]:
    routes = routes_for(upstream, free_port())
    routes.append(
        {
            "id": "site",
            "app_id": "site",
            "path_base": "/apps/site/",
            "to": upstream.url,
            "strip_prefix": True,
            "rewrite_cookie_paths": True,
        }
    )
    routes.append(
        {
            "id": "site-excl",
            "app_id": "siteexcl",
            "path_base": "/apps/excl/",
            "to": upstream.url,
            "strip_prefix": True,
            "exclude_paths": ["/api/v1/", "/page/"],
        }
    )
    srv = NekzusServer(
        {"routes": routes, "health_checks": {"enabled": False}},
        data_dir=tmp_path_factory.mktemp("proxy-features"),
    )
    srv.start()
    yield srv
    srv.stop()


def test_websocket_echo_with_subprotocol_and_cookie(nekzus: NekzusServer) -> None:
    # A real user token: a presented credential is judged by itself, even from a trusted network.
    token, _key = admin_credentials(nekzus)

    async def run() -> None:
        url = nekzus.ws_url + "/apps/ws/ws/room?x=1"
        async with connect(
            url,
            subprotocols=[Subprotocol("chat.v1")],
            additional_headers={"Cookie": "sid=42", "Authorization": f"Bearer {token}"},
        ) as ws:
            assert ws.subprotocol == "chat.v1"
            assert ws.response is not None
            assert "wscookie=1" in (ws.response.headers.get("Set-Cookie") or "")
            hello = json.loads(await ws.recv())
            assert hello["cookie"] == "sid=42"
            assert hello["path"] == "/ws/room"
            assert hello["credentials"] == []  # the credential is Nekzus's, not the upstream's
            for i in range(20):
                await ws.send(f"m{i}")
                assert await ws.recv() == f"echo:m{i}"
            await ws.send(b"\x00\x01binary")
            assert await ws.recv() == b"\x00\x01binary"
            await ws.send("close-me")
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 4001
        # A bogus token is refused before any tunnel is opened.
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url, additional_headers={"Authorization": "Bearer t"}):
                pass
        assert refused.value.response.status_code == 401

    asyncio.run(run())


def test_websocket_forwarding_headers_and_message_cap(nekzus: NekzusServer) -> None:
    """The tunnel sends the same forwarding headers as HTTP, and an upstream message over the cap closes
    the tunnel with 1009 (message too big) instead of being buffered without limit."""
    token, _key = admin_credentials(nekzus)

    async def run() -> None:
        headers = {"Authorization": f"Bearer {token}", "X-Request-ID": "trace-ws.1"}
        async with connect(nekzus.ws_url + "/apps/ws/ws", additional_headers=headers, max_size=None) as ws:
            forwarded = json.loads(await ws.recv())["forwarded"]
            assert forwarded == {
                "X-Forwarded-Proto": "http",
                "X-Forwarded-Prefix": "/apps/ws",
                "X-Request-ID": "trace-ws.1",
                "X-Real-IP": "127.0.0.1",
            }
            await ws.send(f"send-bytes:{MAX_MESSAGE_BYTES}")
            assert len(await ws.recv()) == MAX_MESSAGE_BYTES  # at the cap: relayed
            await ws.send(f"send-bytes:{MAX_MESSAGE_BYTES + 1}")
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 1009

    asyncio.run(run())


def test_websocket_refused_when_route_disallows(nekzus: NekzusServer) -> None:
    async def run() -> None:
        with pytest.raises(InvalidStatus) as info:
            async with connect(nekzus.ws_url + "/apps/echo/ws"):
                pass
        assert info.value.response.status_code == 403

    asyncio.run(run())


def test_html_page_rewritten_under_prefix(nekzus: NekzusServer) -> None:
    with nekzus.client() as c:
        r = c.get("/apps/site/page/", headers={"Accept-Encoding": "gzip"})
    html = r.text
    assert r.status_code == 200
    assert 'href="/apps/site/static/site.css"' in html
    assert 'src="/apps/site/static/app.js"' in html
    assert 'href="/apps/site/about"' in html
    assert 'action="/apps/site/login"' in html
    assert 'formaction="/apps/site/login2"' in html
    assert "/apps/site/static/logo.png 1x, /apps/site/static/logo@2x.png 2x" in html
    assert "url(/apps/site/static/bg.png)" in html
    assert "url('/apps/site/static/tile.png')" in html
    assert 'href="https://example.org/x"' in html  # external untouched
    assert 'href="/api/v1/thing"' in html  # excluded path untouched
    assert "urlBase: '/apps/site'" in html
    assert '<base href="/apps/site/page/">' in html
    assert int(r.headers["content-length"]) == len(r.content)
    assert "</static/site.css>" not in r.headers["link"]
    assert "/apps/site/static/site.css" in r.headers["link"]
    assert "/apps/site/static/" in r.headers["content-security-policy"]
    # The assets the page refers to are reachable through the proxy, rewritten too.
    with nekzus.client() as c:
        css = c.get("/apps/site/static/site.css").text
        assert "@import '/apps/site/static/base.css'" in css
        assert "url(/apps/site/static/bg.png)" in css
        assert c.get("/apps/site/static/icon.png").content[:4] == b"\x89PNG"


def test_redirect_location_and_cookie_path_rewritten(nekzus: NekzusServer) -> None:
    with nekzus.client() as c:
        r = c.get("/apps/site/redirect", follow_redirects=False)
        assert r.status_code == 302
        assert r.headers["location"] == "/apps/site/login?next=1"
        r = c.get("/apps/site/setcookie")
        assert "Path=/apps/site/" in r.headers["set-cookie"]


def test_exclude_paths_are_passed_through(nekzus: NekzusServer) -> None:
    with nekzus.client() as c:
        html = c.get("/apps/excl/page/").text
    assert 'href="/static/site.css"' in html
    assert "<base" not in html


@pytest.fixture(scope="module")
def locked(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NekzusServer]:
    """A server that trusts no network: every non-public route needs a credential."""
    routes = [
        {"id": "pub", "app_id": "pub", "path_base": "/apps/pub/", "to": upstream.url, "public_access": True},
        {"id": "priv", "app_id": "priv", "path_base": "/apps/priv/", "to": upstream.url},
        {
            "id": "scoped",
            "app_id": "scoped",
            "path_base": "/apps/scoped/",
            "to": upstream.url,
            "scopes": ["access:scoped"],
        },
        {
            "id": "pubws",
            "app_id": "pubws",
            "path_base": "/apps/pubws/",
            "to": upstream.url,
            "websockets": True,
        },
    ]
    srv = NekzusServer(
        {"routes": routes, "auth": {"local_networks": []}, "health_checks": {"enabled": False}},
        data_dir=tmp_path_factory.mktemp("proxy-locked"),
    )
    srv.start()
    yield srv
    srv.stop()


def test_auth_public_route_needs_nothing(locked: NekzusServer) -> None:
    with locked.client() as c:
        assert c.get("/apps/pub/x").status_code == 200


def test_auth_private_and_scoped_routes_refuse_anonymous(locked: NekzusServer) -> None:
    with locked.client() as c:
        for path in ("/apps/priv/x", "/apps/scoped/x"):
            r = c.get(path)
            assert r.status_code == 401
            assert r.json()["error"]["code"] == "UNAUTHORIZED"
            assert r.headers["x-api-version"] == "v1"


def test_auth_websocket_refuses_anonymous(locked: NekzusServer) -> None:
    async def run() -> None:
        with pytest.raises(InvalidStatus) as info:
            async with connect(locked.ws_url + "/apps/pubws/ws"):
                pass
        assert info.value.response.status_code == 401

    asyncio.run(run())


def test_auth_trusted_network_passes(nekzus: NekzusServer) -> None:
    # The module server trusts loopback (the default): no credential needed.
    with nekzus.client() as c:
        assert c.get("/apps/echo/x").status_code == 200


def test_subdomain_routing_is_authenticated(
    upstream: Upstream, make_server: Callable[..., NekzusServer]
) -> None:
    srv = make_server(
        {
            "server": {"base_domain": "lab.test"},
            "auth": {"local_networks": []},
            "health_checks": {"enabled": False},
            "routes": [
                {
                    "id": "sub",
                    "path_base": "/apps/sub/",
                    "to": upstream.url,
                    "routing_mode": "subdomain",
                    "subdomain": "grafana",
                },
                {
                    "id": "subpub",
                    "path_base": "/apps/subpub/",
                    "to": upstream.url,
                    "routing_mode": "subdomain",
                    "subdomain": "open",
                    "public_access": True,
                },
            ],
        }
    )
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        assert c.get("/x", headers={"Host": "grafana.lab.test"}).status_code == 401
        r = c.get("/some/path", headers={"Host": "open.lab.test"})
        assert r.status_code == 200
        assert r.json()["path"] == "/some/path"
        # Unknown subdomains fall through to the API (404 JSON from the framework).
        assert c.get("/x", headers={"Host": "nope.lab.test"}).status_code == 404
