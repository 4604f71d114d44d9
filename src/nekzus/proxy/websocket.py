"""WebSocket tunnelling for routes with `websocket: true`.

The client side is the ASGI WebSocket; the upstream side is a `websockets` client connection opened
first, so the subprotocol the upstream picks is the one the client is accepted with. Messages are
relayed both ways until either side closes; close codes are propagated and there is no time limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from nekzus import API_VERSION
from nekzus.http.errors import error_body

if TYPE_CHECKING:
    from nekzus.proxy.app import ProxyApp

from nekzus.proxy.app import Refused

log = logging.getLogger("nekzus.proxy.ws")

OPEN_TIMEOUT = 10.0
_SKIP = {
    b"host",
    b"upgrade",
    b"connection",
    b"sec-websocket-key",
    b"sec-websocket-version",
    b"sec-websocket-protocol",
    b"sec-websocket-extensions",
    b"authorization",
    b"x-api-key",
    b"x_api_key",
    b"origin",
    b"user-agent",
    b"keep-alive",
    b"te",
    b"forwarded",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"x-forwarded-port",
    b"x-forwarded-prefix",
    b"x-real-ip",
    b"x_forwarded_for",
    b"x_forwarded_proto",
    b"x_forwarded_host",
    b"x_forwarded_port",
    b"x_forwarded_prefix",
    b"x_real_ip",
    b"x-nekzus-hop",
}


async def _reject(scope: dict[str, Any], send: Any, status: int, code: str, message: str) -> None:
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


async def tunnel(proxy: ProxyApp, scope: dict[str, Any], receive: Any, send: Any) -> None:
    import websockets
    from websockets.asyncio.client import connect
    from websockets.typing import Origin, Subprotocol

    from nekzus.proxy.app import _bad_path

    path: str = scope["path"]
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    host = b""
    hop = b""
    for name, value in headers:
        if name == b"host":
            host = value
        elif name == b"x-nekzus-hop":
            hop = value
    if _bad_path(path) or b"\x00" in host:
        await _reject(scope, send, 400, "INVALID_PATH", "Invalid request path")
        return
    route, subdomain = proxy.lookup(scope, path)
    if route is None:
        await _reject(scope, send, 404, "NOT_FOUND", "No route for this path")
        return
    spec = route.spec
    try:
        principal, client_ip = await proxy.admit(route, scope, hop)
    except Refused as refused:
        await _reject(scope, send, refused.status, refused.code, refused.message)
        return
    if not spec.websocket:
        await _reject(scope, send, 403, "WEBSOCKET_DISABLED", "WebSockets are not enabled for this route")
        return
    if proxy.catalog.is_unhealthy(spec.app_id):
        await _reject(scope, send, 503, "SERVICE_UNHEALTHY", "Service is currently unhealthy")
        return

    raw_path: bytes = scope.get("raw_path") or quote(path).encode("latin-1")
    if not subdomain and spec.strip_prefix:
        if raw_path.startswith(route.prefix_raw):
            raw_path = raw_path[len(route.prefix_raw) :]
        else:
            raw_path = quote(path[len(route.prefix) :]).encode("latin-1")
        if not raw_path.startswith(b"/"):
            raw_path = b"/" + raw_path
    upstream_path = route.base_path + raw_path
    query = scope.get("query_string", b"")
    scheme = "wss" if route.pool_key[0] == "https" else "ws"
    host_part = route.pool_key[1]
    if ":" in host_part:
        host_part = f"[{host_part}]"
    uri = f"{scheme}://{host_part}:{route.pool_key[2]}{upstream_path.decode('latin-1')}"
    if query:
        uri += "?" + query.decode("latin-1")

    extra: list[tuple[str, str]] = []
    origin = None
    user_agent = None
    for name, value in headers:
        if name == b"origin":
            origin = value.decode("latin-1")
        elif name == b"user-agent":
            user_agent = value.decode("latin-1")
        if name not in _SKIP:
            extra.append((name.decode("latin-1"), value.decode("latin-1")))
    extra += [
        ("X-Forwarded-For", (scope.get("client") or ("",))[0]),
        ("X-Real-IP", client_ip),
        ("X-Forwarded-Proto", "wss" if proxy.tls else "ws"),
        ("X-Forwarded-Host", host.decode("latin-1")),
        ("X-Nekzus-Hop", proxy.hop_token.decode()),
    ]
    if spec.strip_prefix and not subdomain:
        extra.append(("X-Forwarded-Prefix", route.prefix))
    device_id = principal.device_id if principal is not None else None
    if spec.persist_cookies and device_id and proxy.cookies is not None:
        stored = await proxy.cookies.cookie_header(device_id, spec.app_id)
        if stored:
            sent = ";".join(v for k, v in extra if k.lower() == "cookie")
            names = {p.split("=", 1)[0].strip() for p in sent.split(";") if p.strip()}
            add = "; ".join(f"{k}={v}" for k, v in stored.items() if k not in names)
            if add:
                extra = [(k, v) for k, v in extra if k.lower() != "cookie"]
                extra.append(("Cookie", f"{sent}; {add}" if sent else add))
    subprotocols = [p.strip() for p in scope.get("subprotocols", []) if p.strip()]
    tls: Any = None
    if scheme == "wss":
        tls = route.pool.tls

    metrics = proxy.services.metrics
    app_id = spec.app_id
    try:
        upstream = await connect(
            uri,
            additional_headers=extra,
            subprotocols=[Subprotocol(p) for p in subprotocols] or None,
            origin=Origin(origin) if origin else None,
            user_agent_header=user_agent,
            ssl=tls,
            open_timeout=OPEN_TIMEOUT,
            ping_interval=None,
            ping_timeout=None,
            close_timeout=5,
            max_size=None,
            compression=None,
        )
    except Exception as exc:
        metrics.websocket_connections_total.labels(app_id, "error").inc()
        status = getattr(getattr(exc, "response", None), "status_code", None)
        log.info("websocket upstream for %s failed: %s", spec.route_id, type(exc).__name__)
        if isinstance(exc, TimeoutError):
            await _reject(scope, send, 504, "GATEWAY_TIMEOUT", "Upstream WebSocket handshake timed out")
        else:
            message = f"Upstream refused the WebSocket (HTTP {status})" if status else "Upstream unreachable"
            await _reject(scope, send, 502, "BAD_GATEWAY", message)
        return

    accept_headers: list[tuple[bytes, bytes]] = [(b"x-api-version", API_VERSION.encode())]
    response = upstream.response
    if response is not None:
        for key, text_value in response.headers.raw_items():
            if key.lower() == "set-cookie" and not spec.strip_response_cookies:
                raw_cookie = text_value.encode("latin-1")
                accept_headers.append((b"set-cookie", raw_cookie))
                if spec.persist_cookies and device_id and proxy.cookies is not None:
                    proxy.cookies.capture(device_id, app_id, [raw_cookie])
    await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol, "headers": accept_headers})
    metrics.websocket_connections_total.labels(app_id, "connected").inc()
    metrics.websocket_connections_active.inc()
    opened = time.monotonic()
    msg_in = metrics.websocket_messages_total.labels(app_id, "in")
    msg_out = metrics.websocket_messages_total.labels(app_id, "out")

    async def client_to_upstream() -> None:
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                data = message.get("text")
                if data is None:
                    data = message.get("bytes") or b""
                msg_in.inc()
                await upstream.send(data)
            elif kind == "websocket.disconnect":
                code = int(message.get("code", 1000))
                if code in (1005, 1006, 1015):
                    code = 1000
                with contextlib.suppress(Exception):
                    await upstream.close(code, message.get("reason", "") or "")
                return

    async def upstream_to_client() -> None:
        try:
            async for data in upstream:
                msg_out.inc()
                if isinstance(data, str):
                    await send({"type": "websocket.send", "text": data})
                else:
                    await send({"type": "websocket.send", "bytes": bytes(data)})
        except websockets.ConnectionClosed:
            pass
        code = upstream.close_code or 1000
        if code in (1005, 1006, 1015):
            code = 1000 if code == 1005 else 1011
        with contextlib.suppress(Exception):
            await send({"type": "websocket.close", "code": code, "reason": upstream.close_reason or ""})

    # Both pumps are awaited and cancelled below: local tasks, not background work.
    tasks = [asyncio.ensure_future(client_to_upstream()), asyncio.ensure_future(upstream_to_client())]  # noqa: TID251
    try:
        done, _pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if tasks[0] in done:
            # Client left: let the upstream finish its close handshake, then stop relaying.
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(tasks[1], 5)
        else:
            tasks[0].cancel()
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.debug("websocket relay ended: %r", task.exception())
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await upstream.close()
        metrics.websocket_connections_active.dec()
        metrics.websocket_connection_duration_seconds.observe(time.monotonic() - opened)
