"""WebSocket proxying for `websocket: true` routes: admission, the upstream handshake, then a byte tunnel.

The HTTP server hands such an upgrade request over together with the client connection itself (scope
extension `nekzus.tunnel`, see `nekzus.http.protocol`). The request goes through the same phases as HTTP
(`phases.py`, `ProxyApp.admit`): the same header strip list, upstream path, forwarding headers, cookie merge
and request-id rule. The upstream connection (TLS for https routes, verified unless the route says
otherwise) gets the rewritten handshake, with the client's own key, version and subprotocols, so the
upstream's answer is the client's answer:

- 101: the 101 head (accept, chosen subprotocol, cookies shaped by the route's policy) goes to the client
  and the connection becomes a byte tunnel (`tunnel.py`) until either side closes;
- any other status: that response goes to the client as the upstream sent it (headers shaped);
- no answer: 502 (unreachable, invalid handshake) or 504 (timed out), in the API's error shape.

Extensions (compression) are not negotiated, so frame lengths are message lengths: an upstream message over
`MAX_MESSAGE_BYTES`, or a client message over the server's WebSocket limit, closes the tunnel with 1009; a
frame whose header breaks RFC 6455 (unmasked from the client, reserved bits or opcodes, bad fragmentation)
with 1002, before any of it is passed on. Payloads are not inspected (text frames' UTF-8 is the endpoints'
to check).
The tunnel is registered by the credential that opened it: revocation, logout or expiry closes it (1008
with the reason), a server shutdown too (1012), each close frame at a frame boundary.

Upgrades to routes without `websocket: true` still reach this module through the server's own WebSocket
protocol, and are refused after admission (403).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import time
from typing import TYPE_CHECKING, cast

import httptools
from starlette.types import Receive, Scope, Send

from nekzus import API_VERSION
from nekzus.auth.connections import TooManyConnections
from nekzus.auth.principal import Principal
from nekzus.http.errors import error_body
from nekzus.http.protocol import TUNNEL_EXTENSION, HeldConnection
from nekzus.http.requestid import request_id_or_new
from nekzus.proxy.phases import (
    Headers,
    Refused,
    RequestHead,
    bad_path,
    forwarded_prefix,
    forwarding_headers,
    merge_cookies,
    parse_head,
    request_bytes,
    shape_response,
    upstream_path,
    with_query,
)
from nekzus.proxy.routes import CompiledRoute
from nekzus.proxy.tunnel import Tunnel
from nekzus.proxy.upstream import ConnectFailed, UpstreamTimeout

if TYPE_CHECKING:
    from nekzus.proxy.app import ProxyApp

log = logging.getLogger("nekzus.proxy.ws")

OPEN_TIMEOUT = 10.0  # connecting and the upstream's handshake answer, together
# The largest upstream message relayed (the server's own limit caps client messages).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_RESPONSE_HEAD = 64 * 1024
MAX_REFUSAL_BODY = 1024 * 1024  # a non-101 answer's body relayed to the client
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# Client handshake headers not copied as they are: extensions are never negotiated through the tunnel
# (frame lengths must be message lengths), and the subprotocol offer is rewritten as one clean line.
_NOT_COPIED = frozenset({b"sec-websocket-extensions", b"sec-websocket-protocol"})


async def _reject(scope: Scope, send: Send, status: int, code: str, message: str) -> None:
    if "websocket.http.response" in scope.get("extensions", {}):
        body = error_body(code, message)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-api-version", API_VERSION.encode()),
        ]
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})


def handshake_headers(head: RequestHead, subprotocols: list[str]) -> Headers:
    """The client's headers as copied to the upstream handshake (after the strip list), with the upgrade
    request fields Nekzus writes itself."""
    out: Headers = [(name, value) for name, value in head.forward if name not in _NOT_COPIED]
    out += [(b"upgrade", b"websocket"), (b"connection", b"Upgrade")]
    if subprotocols:
        out.append((b"sec-websocket-protocol", ", ".join(subprotocols).encode("latin-1")))
    return out


def accept_value(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key.strip() + _GUID, usedforsecurity=False).digest())


def _admit(
    proxy: ProxyApp, scope: Scope, head: RequestHead
) -> tuple[CompiledRoute, bool, Principal | None, str]:
    path: str = scope["path"]
    if bad_path(path) or b"\x00" in head.host:
        raise Refused(400, "INVALID_PATH", "Invalid request path")
    route, subdomain = proxy.lookup(scope, path)
    if route is None:
        raise Refused(404, "NOT_FOUND", "No route for this path")
    principal, client_ip = proxy.admit(route, scope, head.hop)
    if not route.spec.websocket:
        raise Refused(403, "WEBSOCKET_DISABLED", "WebSockets are not enabled for this route")
    return route, subdomain, principal, client_ip


async def _handshake_request(
    proxy: ProxyApp,
    scope: Scope,
    head: RequestHead,
    route: CompiledRoute,
    subdomain: bool,
    principal: Principal | None,
    client_ip: str,
) -> bytes:
    path = upstream_path(route, scope["path"], scope.get("raw_path"), subdomain)
    store = proxy.cookie_store_for(route, principal)
    if store is not None and principal is not None and principal.device_id:
        stored = await store.cookie_header(principal.device_id, route.spec.app_id)
        if stored:
            head.forward = merge_cookies(head.forward, stored)
    fwd = proxy.forwarding(scope, client_ip, request_id_or_new(head.request_id))
    extra = forwarding_headers(head, fwd, forwarded_prefix(route, subdomain))
    subprotocols = [p for p in scope.get("subprotocols", []) if p]
    target = with_query(path, scope.get("query_string", b""))
    return request_bytes("GET", target, route.upstream_host, handshake_headers(head, subprotocols), extra)


class UpstreamHandshake(asyncio.Protocol):
    """The upstream connection until its answer to the upgrade request is read (httptools)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.answered: asyncio.Future[None] = loop.create_future()
        self.status = 0
        self.headers: Headers = []
        self.body: list[bytes] = []
        self.early = b""  # frames the upstream sent right behind its 101
        self.upgraded = False
        self.error = ""
        self._size = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.upgraded:
            self.early += data
            if len(self.early) > MAX_RESPONSE_HEAD and self.transport is not None:
                self.transport.pause_reading()  # the tunnel resumes it once it takes over
            return
        if self.answered.done():
            return
        self._size += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            offset = int(exc.args[0]) if exc.args else len(data)
            self.upgraded = True
            self.early = data[offset:]
            self._answer()
        except httptools.HttpParserError:
            self._answer("invalid HTTP response")
        else:
            if self.status == 101:
                self._answer()  # a 101 the parser did not take as an upgrade: judged invalid by the caller
            elif self._size > MAX_RESPONSE_HEAD + MAX_REFUSAL_BODY:
                self._answer("response too large")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))
        if self._size > MAX_RESPONSE_HEAD and not self.status:
            raise ValueError("response head too large")

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.status != 101:
            self._answer()

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.status and self.status != 101:
            self._answer()  # a body delimited by the connection closing
        else:
            self._answer("upstream closed the connection")

    def _answer(self, error: str = "") -> None:
        if not self.answered.done():
            self.error = error
            self.answered.set_result(None)


async def _open(
    proxy: ProxyApp, route: CompiledRoute, request: bytes, held: HeldConnection
) -> tuple[UpstreamHandshake | None, Refused | None]:
    """The upstream's answer to the handshake, or the refusal to give the client (502/504)."""
    loop = asyncio.get_running_loop()
    conn: UpstreamHandshake | None = None
    try:
        async with asyncio.timeout(OPEN_TIMEOUT):
            conn = await route.pool.dial(lambda: UpstreamHandshake(loop))
            assert conn.transport is not None
            conn.transport.write(request)
            await asyncio.wait({conn.answered, held.lost}, return_when=asyncio.FIRST_COMPLETED)
    except (TimeoutError, UpstreamTimeout):
        _abort(conn)
        return None, Refused(504, "GATEWAY_TIMEOUT", "Upstream WebSocket handshake timed out")
    except ConnectFailed as exc:
        log.info("websocket upstream for %s failed: %s", route.spec.route_id, exc)
        _abort(conn)
        return None, Refused(502, "BAD_GATEWAY", "Upstream unreachable")
    assert conn is not None
    if not conn.answered.done():  # the client left first
        _abort(conn)
        return None, None
    if conn.error:
        log.info("websocket upstream for %s failed: %s", route.spec.route_id, conn.error)
        _abort(conn)
        return None, Refused(502, "BAD_GATEWAY", "Upstream unreachable")
    return conn, None


def _abort(conn: UpstreamHandshake | None) -> None:
    if conn is not None and conn.transport is not None:
        conn.transport.abort()


def _handshake_problem(conn: UpstreamHandshake, key: bytes, offered: list[str]) -> str | None:
    """Why the upstream's 101 cannot be passed on to the client as it is, or None."""
    if not conn.upgraded:
        return "no upgrade"
    values: dict[bytes, list[bytes]] = {}
    for name, value in conn.headers:
        values.setdefault(name, []).append(value)
    if [v.strip().lower() for v in values.get(b"upgrade", [])] != [b"websocket"]:
        return "not a WebSocket upgrade"
    if values.get(b"sec-websocket-accept") != [accept_value(key)]:
        return "wrong Sec-WebSocket-Accept"
    if values.get(b"sec-websocket-extensions"):
        return "extension not offered"
    chosen = values.get(b"sec-websocket-protocol", [])
    if len(chosen) > 1 or (chosen and chosen[0].strip().decode("latin-1") not in offered):
        return "subprotocol not offered"
    return None


def _switching_head(
    proxy: ProxyApp, route: CompiledRoute, principal: Principal | None, conn: UpstreamHandshake, key: bytes
) -> bytes:
    """The 101 the client gets: the handshake fields, the upstream's cookies shaped by the same policy as
    HTTP responses (and kept for the device on `persistCookies` routes), Nekzus' API version."""
    parts = [
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n",
        b"sec-websocket-accept: %s\r\n" % accept_value(key),
        b"x-api-version: %s\r\n" % API_VERSION.encode(),
    ]
    for name, value in conn.headers:
        if name == b"sec-websocket-protocol":
            parts.append(b"sec-websocket-protocol: %s\r\n" % value.strip())
    cookies = [(k, v) for k, v in conn.headers if k == b"set-cookie"]
    if cookies:
        shape = shape_response(cookies, route.spec, route.rewriter)
        parts += [b"%s: %s\r\n" % (k, v) for k, v in shape.headers]
        store = proxy.cookie_store_for(route, principal)
        device_id = principal.device_id if principal is not None else None
        if store is not None and device_id and shape.set_cookies:
            store.capture(device_id, route.spec.app_id, [v for _, v in shape.set_cookies])
    parts.append(b"\r\n")
    return b"".join(parts)


def _key_of(scope: Scope) -> bytes:
    for name, value in scope["headers"]:
        if name == b"sec-websocket-key":
            return bytes(value).strip()
    return b""


async def tunnel(proxy: ProxyApp, scope: Scope, receive: Receive, send: Send) -> None:
    head = parse_head(scope["headers"], proxy.settings.strip)
    try:
        route, subdomain, principal, client_ip = _admit(proxy, scope, head)
    except Refused as refused:
        await _reject(scope, send, refused.status, refused.code, refused.message)
        return
    held = scope.get("extensions", {}).get(TUNNEL_EXTENSION, {}).get("connection")
    if not isinstance(held, HeldConnection):
        # The route became a WebSocket route after the server chose how to serve this upgrade.
        await _reject(scope, send, 503, "SERVICE_UNAVAILABLE", "Route changed, try again")
        return
    request = await _handshake_request(proxy, scope, head, route, subdomain, principal, client_ip)
    metrics = proxy.metrics
    app_id = route.spec.app_id
    conn, failure = await _open(proxy, route, request, held)
    if conn is None:
        metrics.websocket_connections_total.labels(app_id, "error").inc()
        if failure is not None:
            await _reject(scope, send, failure.status, failure.code, failure.message)
        return
    if conn.status != 101:
        metrics.websocket_connections_total.labels(app_id, "error").inc()
        _abort(conn)
        await _relay_refusal(route, conn, send)
        return
    key = _key_of(scope)
    problem = _handshake_problem(conn, key, list(scope.get("subprotocols", [])))
    if problem is not None:
        metrics.websocket_connections_total.labels(app_id, "error").inc()
        log.info("websocket upstream for %s: invalid handshake (%s)", route.spec.route_id, problem)
        _abort(conn)
        await _reject(scope, send, 502, "BAD_GATEWAY", "Upstream sent an invalid WebSocket handshake")
        return
    await _splice(proxy, route, principal, conn, held, key, scope, send)


async def _relay_refusal(route: CompiledRoute, conn: UpstreamHandshake, send: Send) -> None:
    """The upstream's non-101 answer, as an HTTP proxy would pass it on."""
    shape = shape_response(conn.headers, route.spec, route.rewriter)
    headers = [*shape.headers, (b"x-api-version", API_VERSION.encode())]
    await send({"type": "websocket.http.response.start", "status": conn.status, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": b"".join(conn.body)})


async def _splice(
    proxy: ProxyApp,
    route: CompiledRoute,
    principal: Principal | None,
    conn: UpstreamHandshake,
    held: HeldConnection,
    key: bytes,
    scope: Scope,
    send: Send,
) -> None:
    loop = asyncio.get_running_loop()
    tunnel = Tunnel(loop, client_limit=held.max_message, upstream_limit=MAX_MESSAGE_BYTES)
    handle = None
    if principal is not None:
        # Registered by the credential it was opened with: revocation, logout or expiry closes the tunnel.
        def credential_gone(reason: str) -> None:
            tunnel.close(1008, reason)

        try:
            handle = proxy.connections.register(principal, credential_gone)
        except TooManyConnections as exc:
            _abort(conn)
            await _reject(scope, send, exc.status, exc.code, exc.message)
            return
    metrics = proxy.metrics
    app_id = route.spec.app_id
    tunnel.client.counter = metrics.websocket_messages_total.labels(app_id, "in")
    tunnel.upstream.counter = metrics.websocket_messages_total.labels(app_id, "out")
    held.upgraded = True
    held.on_shutdown = lambda: tunnel.close(1012, "", upstream_code=1012)
    assert conn.transport is not None
    held.transport.write(_switching_head(proxy, route, principal, conn, key))
    metrics.websocket_connections_total.labels(app_id, "connected").inc()
    metrics.websocket_connections_active.inc()
    opened = time.monotonic()
    try:
        tunnel.start(held.transport, held.attach, conn.transport, conn.early)
        await asyncio.shield(tunnel.done)
    finally:
        if not tunnel.done.done():  # cancelled (forced shutdown): drop both connections
            tunnel.client.abort()
            tunnel.upstream.abort()
        if handle is not None:
            handle.release()
        held.on_shutdown = None
        with contextlib.suppress(Exception):
            metrics.websocket_bytes_transferred_total.labels(app_id, "in").inc(tunnel.client.forwarded)
            metrics.websocket_bytes_transferred_total.labels(app_id, "out").inc(tunnel.upstream.forwarded)
        metrics.websocket_connections_active.dec()
        metrics.websocket_connection_duration_seconds.observe(time.monotonic() - opened)
