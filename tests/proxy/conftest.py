"""Real upstream web servers on 127.0.0.1 (aiohttp, in a background thread) for the proxy tests."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from nekzus.auth.principal import ADMIN
from tests.auth.conftest import bearer, create_admin, login
from tests.nekzus_server import NekzusServer, free_port

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)

PAGE = """<!doctype html>
<html><head><title>Demo</title>
<link rel="stylesheet" href="/static/site.css">
<link rel="icon" href="/static/icon.png">
<script src="/static/app.js"></script>
<style>body { background: url(/static/bg.png); }</style>
</head><body>
<a href="/about">About</a> <a href="https://example.org/x">ext</a> <a href="/api/v1/thing">api</a>
<img src="/static/logo.png" srcset="/static/logo.png 1x, /static/logo@2x.png 2x">
<form action="/login" method="post"><button formaction="/login2">Go</button></form>
<div style="background-image: url('/static/tile.png')"></div>
<script>var cfg = {urlBase: ''}; fetch("/data.json");</script>
</body></html>"""


def pattern_bytes(size: int) -> bytes:
    return (bytes(range(251)) * (size // 251 + 1))[:size]


CSS = "@import '/static/base.css';\nbody { background: url(/static/bg.png) }\n"


class Upstream:
    """An aiohttp app with the endpoints the tests need; `url` is its base URL."""

    def __init__(self, *, favicon_ico: bool = True) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.health_status = 200
        self.favicon_ico = favicon_ico
        self.requests: list[dict[str, Any]] = []
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> Upstream:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _start(self) -> None:
        app = web.Application(client_max_size=200 * 1024 * 1024)
        r = app.router
        r.add_get("/health", self.health)
        r.add_get("/favicon.ico", self.favicon)
        r.add_get("/static/icon.png", self.icon)
        r.add_get("/", self.root)
        r.add_get("/page/", self.page)
        r.add_get("/static/site.css", self.css)
        r.add_get("/sse", self.sse)
        r.add_get("/sse-gated", self.sse_gated)
        r.add_get("/pattern", self.pattern)
        r.add_get("/big", self.big)
        r.add_get("/ws", self.ws)
        r.add_get("/ws/{tail:.*}", self.ws)
        r.add_get("/status/{code}", self.status)
        r.add_get("/redirect", self.redirect)
        r.add_get("/slow", self.slow)
        r.add_get("/setcookie", self.setcookie)
        r.add_get("/cached", self.cached)
        r.add_route("*", "/{tail:.*}", self.echo)
        self.hits: dict[str, int] = {}
        self.gate = asyncio.Event()
        self.gated_done = threading.Event()
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def echo(self, request: web.Request) -> web.Response:
        body = await request.read()
        info = {
            "method": request.method,
            "path": request.path,
            "raw_path": request.raw_path,
            "query": request.query_string,
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "body_len": len(body),
            "body": body[:1000].decode("latin-1"),
        }
        self.requests.append(info)
        return web.json_response(info, headers={"X-Upstream": "yes"})

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(status=self.health_status, text="health")

    async def favicon(self, request: web.Request) -> web.Response:
        if not self.favicon_ico:
            return web.Response(status=404)
        return web.Response(body=PNG, content_type="image/png")

    async def icon(self, request: web.Request) -> web.Response:
        return web.Response(body=PNG, content_type="image/png")

    async def root(self, request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(
            text=PAGE,
            content_type="text/html",
            headers={
                "Link": "</static/site.css>; rel=preload",
                "Content-Security-Policy": "script-src 'self' /static/",
            },
        )

    async def css(self, request: web.Request) -> web.Response:
        return web.Response(text=CSS, content_type="text/css")

    async def sse(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        for i in range(4):
            await resp.write(f"data: event {i}\n\n".encode())
            await asyncio.sleep(0.4)  # the behaviour under test: events spaced in time, streamed as they come
        await resp.write_eof()
        return resp

    async def sse_gated(self, request: web.Request) -> web.StreamResponse:
        """One event, then nothing until the test opens the gate: the first event can only reach the
        client while this response is still open if the proxy streams it on at once."""
        self.gate.clear()
        self.gated_done.clear()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        await resp.write(b"data: first\n\n")
        await asyncio.wait_for(self.gate.wait(), 30)
        await resp.write(b"data: second\n\n")
        await resp.write_eof()
        self.gated_done.set()
        return resp

    def open_gate(self) -> None:
        self._loop.call_soon_threadsafe(self.gate.set)

    async def pattern(self, request: web.Request) -> web.StreamResponse:
        """`kb` KiB of a position-dependent byte pattern written in pieces of uneven sizes, with or
        without a Content-Length: any lost, repeated or reordered piece changes the digest."""
        size = int(request.query.get("kb", "1024")) * 1024
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        if request.query.get("length", "1") == "1":
            resp.content_length = size
        await resp.prepare(request)
        body = pattern_bytes(size)
        sizes = (1, 700, 65536, 13, 300_000, 4096, 1 << 20)
        offset = i = 0
        while offset < size:
            step = sizes[i % len(sizes)]
            await resp.write(body[offset : offset + step])
            offset += step
            i += 1
        await resp.write_eof()
        return resp

    async def big(self, request: web.Request) -> web.StreamResponse:
        size = int(request.query.get("mb", "50")) * 1024 * 1024
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        resp.content_length = size
        await resp.prepare(request)
        chunk = b"z" * (256 * 1024)
        sent = 0
        while sent < size:
            await resp.write(chunk)
            sent += len(chunk)
        await resp.write_eof()
        return resp

    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=("chat.v2", "chat.v1"))
        ws.set_cookie("wscookie", "1")
        await ws.prepare(request)
        hello = {
            "cookie": request.headers.get("Cookie", ""),
            "path": request.path,
            "forwarded": {
                k: request.headers.get(k, "")
                for k in ("X-Forwarded-Proto", "X-Forwarded-Prefix", "X-Request-ID", "X-Real-IP")
            },
            "credentials": sorted(h for h in ("Authorization", "X-API-Key") if h in request.headers),
            "headers": [[k.lower(), v] for k, v in request.headers.items()],
        }
        await ws.send_str(json.dumps(hello))
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                if msg.data == "close-me":
                    await ws.close(code=4001, message=b"bye")
                    break
                if msg.data.startswith("send-bytes:"):
                    await ws.send_bytes(b"x" * int(msg.data.split(":", 1)[1]))
                    continue
                await ws.send_str("echo:" + msg.data)
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws

    async def status(self, request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        return web.Response(status=code, text=f"status {code}" if code not in (204, 304) else None)

    async def redirect(self, request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "/login?next=1"})

    async def slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("s", "3")))  # a slow upstream is the behaviour under test
        return web.Response(text="slow")

    async def setcookie(self, request: web.Request) -> web.Response:
        resp = web.json_response({"cookie": request.headers.get("Cookie", "")})
        resp.set_cookie("session", request.query.get("v", "abc"), path="/", max_age=3600)
        return resp

    async def cached(self, request: web.Request) -> web.Response:
        self.hits["cached"] = self.hits.get("cached", 0) + 1
        return web.Response(
            text=f"hit {self.hits['cached']}", headers={"Cache-Control": "public, max-age=60", "ETag": '"v1"'}
        )


_admin_credentials: dict[str, tuple[str, str]] = {}


def admin_credentials(srv: NekzusServer) -> tuple[str, str]:
    """(user token, admin API key) obtained like a client: first-run setup + login, then an API key.

    Setup works once per server, so the pair is remembered per server URL."""
    cached = _admin_credentials.get(srv.url)
    if cached is not None:
        return cached
    with srv.client() as c:
        create_admin(c, srv)  # with the one-time setup token from the log, trusted network or not
        token = login(c)
        r = c.post("/api/v1/apikeys", json={"name": "proxy tests", "scopes": [ADMIN]}, headers=bearer(token))
        assert r.status_code == 201, r.text
    _admin_credentials[srv.url] = (token, str(r.json()["key"]))
    return _admin_credentials[srv.url]


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    up = Upstream().start()
    yield up
    up.stop()


def routes_for(up: Upstream, dead_port: int) -> list[dict[str, Any]]:
    return [
        {"id": "echo", "app_id": "echo", "path_base": "/apps/echo/", "to": up.url, "strip_prefix": True},
        {"id": "raw", "app_id": "raw", "path_base": "/apps/raw", "to": up.url},
        {
            "id": "based",
            "app_id": "based",
            "path_base": "/apps/based/",
            "to": up.url + "/base",
            "strip_prefix": True,
        },
        {
            "id": "ws",
            "app_id": "wsapp",
            "path_base": "/apps/ws/",
            "to": up.url,
            "strip_prefix": True,
            "websockets": True,
        },
        {"id": "dead", "app_id": "dead", "path_base": "/apps/dead/", "to": f"http://127.0.0.1:{dead_port}"},
        {
            "id": "cache",
            "app_id": "cache",
            "path_base": "/apps/cache/",
            "to": up.url,
            "strip_prefix": True,
            "cache": True,
        },
    ]
