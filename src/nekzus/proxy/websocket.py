"""WebSocket tunnelling for routes with `websocket: true`.

The client side is the ASGI WebSocket; the upstream side is a `websockets` client connection opened
first, so the subprotocol the upstream picks is the one the client is accepted with. Messages are
relayed both ways until either side closes; close codes are propagated and there is no time limit.

The request goes through the same phases as HTTP (`phases.py`, `ProxyApp.admit`): the same header strip
list, upstream path, forwarding headers, cookie merge and request-id rule. Upstream messages are capped at
`MAX_MESSAGE_BYTES` (the client side is capped by the server's own WebSocket limit); a bigger one closes
the tunnel with 1009 (message too big).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.types import Receive, Scope, Send

from nekzus import API_VERSION
from nekzus.auth.connections import TooManyConnections
from nekzus.auth.principal import Principal
from nekzus.http.errors import error_body
from nekzus.http.requestid import request_id_or_new
from nekzus.proxy.phases import (
    WEBSOCKET_HANDSHAKE_HEADERS,
    Headers,
    Refused,
    RequestHead,
    bad_path,
    forwarded_prefix,
    forwarding_headers,
    merge_cookies,
    parse_head,
    shape_response,
    upstream_path,
    with_query,
)
from nekzus.proxy.routes import CompiledRoute

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

    from nekzus.proxy.app import ProxyApp

log = logging.getLogger("nekzus.proxy.ws")

OPEN_TIMEOUT = 10.0
CLOSE_TIMEOUT = 5.0
# Same as the server's default limit on client messages (uvicorn's ws_max_size).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


@dataclass(slots=True)
class UpstreamHandshake:
    """What to open upstream: URI, copied and forwarding headers, and the handshake's own fields."""

    uri: str
    headers: list[tuple[str, str]]
    subprotocols: list[str]
    origin: str | None
    user_agent: str | None


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


def upstream_uri(route: CompiledRoute, path: bytes, query: bytes) -> str:
    scheme, host, port, _verify = route.pool_key
    if ":" in host:
        host = f"[{host}]"
    ws_scheme = "wss" if scheme == "https" else "ws"
    return f"{ws_scheme}://{host}:{port}{with_query(path, query).decode('latin-1')}"


def handshake_headers(
    head: RequestHead, extra: Headers
) -> tuple[list[tuple[str, str]], str | None, str | None]:
    """The copied headers (without those the WebSocket library writes itself) plus `extra`, as text;
    and the client's Origin and User-Agent, which the library takes as arguments."""
    origin = user_agent = None
    out: list[tuple[str, str]] = []
    for name, value in head.forward:
        if name in WEBSOCKET_HANDSHAKE_HEADERS:
            if name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"user-agent":
                user_agent = value.decode("latin-1")
            continue
        out.append((name.decode("latin-1"), value.decode("latin-1")))
    out += [(n.decode("latin-1"), v.decode("latin-1")) for n, v in extra]
    return out, origin, user_agent


async def _prepare(
    proxy: ProxyApp,
    scope: Scope,
    head: RequestHead,
    route: CompiledRoute,
    subdomain: bool,
    principal: Principal | None,
    client_ip: str,
) -> UpstreamHandshake:
    path = upstream_path(route, scope["path"], scope.get("raw_path"), subdomain)
    store = proxy.cookie_store_for(route, principal)
    if store is not None and principal is not None and principal.device_id:
        stored = await store.cookie_header(principal.device_id, route.spec.app_id)
        if stored:
            head.forward = merge_cookies(head.forward, stored)
    fwd = proxy.forwarding(scope, client_ip, request_id_or_new(head.request_id))
    extra = forwarding_headers(head, fwd, forwarded_prefix(route, subdomain))
    headers, origin, user_agent = handshake_headers(head, extra)
    return UpstreamHandshake(
        uri=upstream_uri(route, path, scope.get("query_string", b"")),
        headers=headers,
        subprotocols=[p.strip() for p in scope.get("subprotocols", []) if p.strip()],
        origin=origin,
        user_agent=user_agent,
    )


async def _admit(
    proxy: ProxyApp, scope: Scope, head: RequestHead
) -> tuple[CompiledRoute, bool, Principal | None, str]:
    path: str = scope["path"]
    if bad_path(path) or b"\x00" in head.host:
        raise Refused(400, "INVALID_PATH", "Invalid request path")
    route, subdomain = proxy.lookup(scope, path)
    if route is None:
        raise Refused(404, "NOT_FOUND", "No route for this path")
    principal, client_ip = await proxy.admit(route, scope, head.hop)
    if not route.spec.websocket:
        raise Refused(403, "WEBSOCKET_DISABLED", "WebSockets are not enabled for this route")
    return route, subdomain, principal, client_ip


async def tunnel(proxy: ProxyApp, scope: Scope, receive: Receive, send: Send) -> None:
    head = parse_head(scope["headers"], proxy.settings.strip)
    try:
        route, subdomain, principal, client_ip = await _admit(proxy, scope, head)
    except Refused as refused:
        await _reject(scope, send, refused.status, refused.code, refused.message)
        return
    handshake = await _prepare(proxy, scope, head, route, subdomain, principal, client_ip)
    upstream = await _open(proxy, route, handshake, scope, send)
    if upstream is None:
        return
    # Registered by the credential it was opened with: revocation, logout or expiry closes the tunnel.
    gone: list[str] = []
    revoked = asyncio.Event()

    def credential_gone(reason: str) -> None:
        gone.append(reason)
        revoked.set()

    handle = None
    if principal is not None:
        try:
            handle = proxy.connections.register(principal, credential_gone)
        except TooManyConnections as exc:
            with contextlib.suppress(Exception):
                await upstream.close()
            await _reject(scope, send, exc.status, exc.code, exc.message)
            return
    await send(
        {
            "type": "websocket.accept",
            "subprotocol": upstream.subprotocol,
            "headers": _accept_headers(proxy, route, principal, upstream),
        }
    )
    metrics = proxy.metrics
    metrics.websocket_connections_total.labels(route.spec.app_id, "connected").inc()
    metrics.websocket_connections_active.inc()
    opened = time.monotonic()
    relay = proxy.spawn(_relay(proxy, route, upstream, receive, send), "ws-relay")
    watch = proxy.spawn(revoked.wait(), "ws-revoked")
    try:
        await asyncio.wait({relay, watch}, return_when=asyncio.FIRST_COMPLETED)
        if gone:
            relay.cancel()
            await asyncio.wait({relay})
            with contextlib.suppress(Exception):
                await send({"type": "websocket.close", "code": 1008, "reason": gone[0]})
    finally:
        for task in (relay, watch):
            task.cancel()
        await asyncio.wait({relay, watch})
        if handle is not None:
            handle.release()
        with contextlib.suppress(Exception):
            await upstream.close()
        metrics.websocket_connections_active.dec()
        metrics.websocket_connection_duration_seconds.observe(time.monotonic() - opened)


async def _open(
    proxy: ProxyApp, route: CompiledRoute, handshake: UpstreamHandshake, scope: Scope, send: Send
) -> ClientConnection | None:
    """The upstream connection, or None after answering the client with 502/504."""
    from websockets.asyncio.client import connect
    from websockets.typing import Origin, Subprotocol

    try:
        return await connect(
            handshake.uri,
            additional_headers=handshake.headers,
            subprotocols=[Subprotocol(p) for p in handshake.subprotocols] or None,
            origin=Origin(handshake.origin) if handshake.origin else None,
            user_agent_header=handshake.user_agent,
            ssl=route.pool.tls if handshake.uri.startswith("wss:") else None,
            open_timeout=OPEN_TIMEOUT,
            ping_interval=None,
            ping_timeout=None,
            close_timeout=CLOSE_TIMEOUT,
            max_size=MAX_MESSAGE_BYTES,
            compression=None,
        )
    except Exception as exc:
        proxy.metrics.websocket_connections_total.labels(route.spec.app_id, "error").inc()
        status = getattr(getattr(exc, "response", None), "status_code", None)
        log.info("websocket upstream for %s failed: %s", route.spec.route_id, type(exc).__name__)
        if isinstance(exc, TimeoutError):
            await _reject(scope, send, 504, "GATEWAY_TIMEOUT", "Upstream WebSocket handshake timed out")
        else:
            message = f"Upstream refused the WebSocket (HTTP {status})" if status else "Upstream unreachable"
            await _reject(scope, send, 502, "BAD_GATEWAY", message)
        return None


def _accept_headers(
    proxy: ProxyApp, route: CompiledRoute, principal: Principal | None, upstream: ClientConnection
) -> Headers:
    """The upstream handshake's cookies, shaped by the same policy as HTTP responses (and kept for the
    device on `persistCookies` routes)."""
    headers: Headers = [(b"x-api-version", API_VERSION.encode())]
    response = upstream.response
    if response is None:
        return headers
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.raw_items()]
    cookies_only = [(k, v) for k, v in raw if k == b"set-cookie"]
    shape = shape_response(cookies_only, route.spec, route.rewriter)
    headers += shape.headers
    store = proxy.cookie_store_for(route, principal)
    device_id = principal.device_id if principal is not None else None
    if store is not None and device_id and shape.set_cookies:
        store.capture(device_id, route.spec.app_id, [v for _, v in shape.set_cookies])
    return headers


async def _relay(
    proxy: ProxyApp, route: CompiledRoute, upstream: ClientConnection, receive: Receive, send: Send
) -> None:
    """Both directions until one side closes; the other side gets the close code."""
    metrics = proxy.metrics
    app_id = route.spec.app_id
    msg_in = metrics.websocket_messages_total.labels(app_id, "in")
    msg_out = metrics.websocket_messages_total.labels(app_id, "out")
    inbound = proxy.spawn(_quietly(_client_to_upstream(upstream, receive, msg_in)), "ws-relay-in")
    outbound = proxy.spawn(_quietly(_upstream_to_client(upstream, send, msg_out)), "ws-relay-out")
    tasks = {inbound, outbound}
    try:
        done, _pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if inbound in done:
            # Client left: let the upstream finish its close handshake, then stop relaying.
            await asyncio.wait([outbound], timeout=CLOSE_TIMEOUT)
    finally:
        for task in tasks:
            task.cancel()
        # Reap both; a cancellation of this task itself still propagates from the wait.
        await asyncio.wait(tasks)


async def _quietly(relay: Coroutine[Any, Any, None]) -> None:
    """A relay direction ends when a peer goes away mid-send; that is an ordinary end, logged at debug."""
    try:
        await relay
    except Exception as exc:
        log.debug("websocket relay ended: %r", exc)


async def _client_to_upstream(upstream: ClientConnection, receive: Receive, counter: Any) -> None:
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "websocket.receive":
            data = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            counter.inc()
            await upstream.send(data)
        elif kind == "websocket.disconnect":
            code = int(message.get("code", 1000))
            if code in (1005, 1006, 1015):
                code = 1000
            with contextlib.suppress(Exception):
                await upstream.close(code, message.get("reason", "") or "")
            return


async def _upstream_to_client(upstream: ClientConnection, send: Send, counter: Any) -> None:
    import websockets

    try:
        async for data in upstream:
            counter.inc()
            if isinstance(data, str):
                await send({"type": "websocket.send", "text": data})
            else:
                await send({"type": "websocket.send", "bytes": bytes(data)})
    except websockets.ConnectionClosed:
        pass
    code = upstream.close_code
    if code is None or code == 1006:
        # No close frame from the upstream: pass on the one Nekzus sent (1009 for an oversized message).
        sent = upstream.protocol.close_sent
        code = sent.code if sent is not None else 1006
    if code in (1005, 1006, 1015):
        code = 1000 if code == 1005 else 1011
    with contextlib.suppress(Exception):
        await send({"type": "websocket.close", "code": code, "reason": upstream.close_reason or ""})
