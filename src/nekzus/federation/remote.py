"""Remote routes: `/apps/<app>/…` of an app owned by another instance, proxied over the federation channel.

Caller side (`RemoteRouteDispatch`): wraps the local reverse proxy. A request whose path matches no local
route but a replicated remote route is authenticated here as usual (token, API key or trusted network),
then sent to the owner's federation port with the caller's identity and scopes in a header the request
signature covers.

Owner side (`OwnerRouteHandler`): verifies the signature (a joined peer holding the cluster secret), then
judges the asserted identity against its own route's scopes exactly like a local credential; a federated
request is never a trusted local caller. Only then is the request proxied to the upstream. HTTP (streamed
both ways, so SSE works) and WebSocket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlsplit

import aiohttp
import yarl
from aiohttp import web
from starlette.types import Receive, Scope, Send

from nekzus.errors import NekzusError
from nekzus.federation import crypto
from nekzus.federation.service import ONLINE, PREFIX, FederationService, split_hostport
from nekzus.proxy.phases import abort_of, header_key

if TYPE_CHECKING:
    from nekzus.proxy.direct import DirectAnswer

log = logging.getLogger("nekzus.federation.remote")

_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "proxy-authenticate",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "expect",
    }
)
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
_CREDENTIALS = frozenset({"authorization", "x-api-key", "x_api_key"})
_OUR_HEADERS = frozenset(
    h.lower() for h in (crypto.H_PEER, crypto.H_TIME, crypto.H_NONCE, crypto.H_SIG, crypto.H_IDENTITY)
)
_WS_HANDSHAKE = frozenset(
    {"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions", "sec-websocket-accept"}
)


# Request headers never passed on (the reverse proxy's strip list: names in `header_key` form).
StripList = Callable[[], Mapping[bytes, object]]
_PEER_FORWARDING = frozenset({"x-forwarded-for", "x-forwarded-host", "x-forwarded-proto"})


def _no_strip() -> Mapping[bytes, object]:
    return {}


@dataclass(frozen=True)
class RemoteRoute:
    origin: str
    app_id: str
    path_base: str
    public: bool
    websocket: bool


def match_prefix(table: Mapping[str, Any], path: str) -> Any:
    """Longest path-base prefix of `path` on a segment boundary."""
    hit = table.get(path)
    if hit is not None:
        return hit
    end = len(path)
    while True:
        end = path.rfind("/", 0, end)
        if end < 0:
            return None
        hit = table.get(path[: end + 1]) or table.get(path[:end])
        if hit is not None:
            return hit


def _json_error(status: int, code: str, message: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    import json

    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return (
        status,
        [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        body,
    )


class LocalProxy(Protocol):
    """The local reverse proxy, as the outer ASGI app sees it."""

    def handles(self, scope: Scope) -> bool: ...

    def direct(self, scope: Scope, answer: DirectAnswer) -> bool: ...

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None: ...


Denial = tuple[int, str, str]  # status, error code, message


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling a remote route, as this instance authenticated them."""

    identity: dict[str, Any]  # asserted to the owner: kind, id, name, scopes, ip
    credential: object = None  # the caller's principal (opaque here), for `TrackTunnel`


Authenticate = Callable[[Scope], Awaitable[tuple[Caller | None, Denial | None]]]
CloseTunnel = Callable[[str], object]


class TrackTunnel(Protocol):
    """Registers an open remote WebSocket (or, `capped=False`, a response still streaming) of `caller`:
    `close(reason)` is called when the caller's credential stops being valid (revoked, logged out,
    expired); returns the function that unregisters it."""

    def __call__(
        self, caller: Caller, close: CloseTunnel, *, capped: bool = True
    ) -> Callable[[], object]: ...


class RemoteRouteDispatch:
    """The proxy dispatch in front of the local reverse proxy (`inner`).

    A path under `/apps/` that matches no local route but a replicated remote one goes to its owner; every
    other request goes to the local proxy untouched, so local routes always win.
    """

    def __init__(
        self,
        inner: LocalProxy,
        federation: FederationService,
        *,
        is_local: Callable[[str], bool],
        authenticate: Authenticate,
        track: TrackTunnel | None = None,
        strip: StripList = _no_strip,
    ) -> None:
        self.inner = inner
        self.strip = strip
        self.federation = federation
        self.is_local = is_local
        self.authenticate = authenticate
        self.track = track
        self._remote: dict[str, RemoteRoute] = {}

    def rebuild(self) -> None:
        remote: dict[str, RemoteRoute] = {}
        for origin, app_id, value in self.federation.remote_entries():
            route = value.get("route")
            if not isinstance(route, dict):
                continue
            base = route.get("pathBase")
            if not isinstance(base, str) or not base.startswith("/apps/") or base in remote:
                continue
            remote[base] = RemoteRoute(
                origin=origin,
                app_id=app_id,
                path_base=base,
                public=bool(route.get("publicAccess")),
                websocket=bool(route.get("websocket")),
            )
        self._remote = remote

    def handles(self, scope: Scope) -> bool:
        if self.inner.handles(scope):
            return True
        return bool(scope["path"].startswith("/apps/") and self._remote)

    def direct(self, scope: Scope, answer: DirectAnswer) -> bool:
        """Local routes may be answered directly (see `ProxyApp.direct`); remote ones go through ASGI."""
        return self._route(scope["path"]) is None and self.inner.direct(scope, answer)

    def _route(self, path: str) -> RemoteRoute | None:
        if not path.startswith("/apps/") or not self._remote or self.is_local(path):
            return None
        route: RemoteRoute | None = match_prefix(self._remote, path)
        return route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self._route(scope["path"])
        if route is None:
            await self.inner(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await self._websocket(route, scope, receive, send)
        else:
            await self._http(route, scope, receive, send)

    async def _caller(self, route: RemoteRoute, scope: Scope) -> tuple[Caller, Denial | None]:
        caller, denied = await self.authenticate(scope)
        anonymous = Caller({"kind": "anonymous", "id": "", "scopes": []})
        if denied is not None and not route.public:
            return anonymous, denied
        if caller is None:
            if not route.public:
                return anonymous, (401, "UNAUTHORIZED", "Authentication required")
            caller = anonymous
        return caller, None

    def _assertion(self, caller: Caller) -> str:
        return crypto.encode_identity({**caller.identity, "via": self.federation.peer_id})

    def _target(self, route: RemoteRoute, scope: Scope, ws: bool) -> tuple[str, str, str] | None:
        peer = self.federation.peers.get(route.origin)
        if peer is None or peer.status != ONLINE or not peer.fingerprint or not peer.gossip_addr:
            return None
        host, port = split_hostport(peer.gossip_addr)
        host = f"[{host}]" if ":" in host else host
        raw = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string") or b""
        scheme = "wss" if ws else "https"
        url = f"{scheme}://{host}:{port}{PREFIX}/route{raw.decode('latin-1')}"
        if query:
            url += "?" + query.decode("latin-1")
        return url, PREFIX + "/route" + scope["path"], peer.fingerprint

    def _forward_headers(self, scope: Scope, identity: str, signed: dict[str, str]) -> dict[str, str]:
        out: dict[str, str] = {}
        host = ""
        strip = self.strip()
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            if name == "host":
                host = value
            if name in _HOP or name in _CREDENTIALS or name in _OUR_HEADERS or name in _WS_HANDSHAKE:
                continue
            if header_key(raw_name) in strip:  # the proxy's strip list: identity headers, forwarding, ...
                continue
            if name in out:
                out[name] += ", " + value
            else:
                out[name] = value
        client = scope.get("client")
        out["x-forwarded-for"] = client[0] if client else ""
        if host:
            out["x-forwarded-host"] = host
        out["x-forwarded-proto"] = scope.get("scheme", "http").replace("ws", "http")
        out[crypto.H_IDENTITY] = identity
        out.update(signed)
        return out

    async def _http(self, route: RemoteRoute, scope: Scope, receive: Receive, send: Send) -> None:
        caller, denied = await self._caller(route, scope)
        if denied is not None:
            await _send_plain(send, *_json_error(*denied))
            return
        identity = self._assertion(caller)
        target = self._target(route, scope, ws=False)
        if target is None:
            await _send_plain(
                send, *_json_error(502, "PEER_UNAVAILABLE", "The instance owning this app is offline")
            )
            return
        url, signed_path, fingerprint = target
        method = scope.get("method", "GET")
        signed = self.federation.sign(method, signed_path, crypto.identity_digest(identity))
        headers = self._forward_headers(scope, identity, signed)

        async def body() -> AsyncIterator[bytes]:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                if chunk:
                    yield chunk
                if not message.get("more_body", False):
                    return

        has_body = any(n in (b"content-length", b"transfer-encoding") for n, _ in scope["headers"])
        started = False
        try:
            async with self.federation.session.request(
                method,
                yarl.URL(url, encoded=True),
                headers=headers,
                data=body() if has_body else None,
                ssl=self.federation.ssl_for(fingerprint),
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=300),
            ) as resp:
                self.federation.metrics.messages_sent_total.labels("route").inc()
                out = [
                    (k.lower(), v)
                    for k, v in resp.raw_headers
                    if k.decode("latin-1").lower() not in _HOP
                    and k.decode("latin-1").lower() not in _OUR_HEADERS
                ]
                out.append((b"x-nekzus-federated-from", route.origin.encode()))
                await send({"type": "http.response.start", "status": resp.status, "headers": out})
                started = True
                # Filed under the caller's credential while it streams: revoking it cuts the body short.
                cut: list[str] = []

                def close(reason: str) -> None:
                    cut.append(reason)
                    resp.close()

                release = None
                if self.track is not None and caller.credential and not route.public:
                    release = self.track(caller, close, capped=False)
                try:
                    async for chunk in resp.content.iter_any():
                        if cut:
                            break
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                except aiohttp.ClientError:
                    if not cut:
                        raise
                finally:
                    if release is not None:
                        release()
                if cut:
                    # The head went out: the client sees the body cut short, never a clean end.
                    log.info("response from %s cut short: %s", route.app_id, cut[0])
                    abort = abort_of(scope)
                    if abort is not None:
                        abort()
                    return
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except aiohttp.ServerFingerprintMismatch:
            await _send_plain(
                send, *_json_error(502, "PEER_UNTRUSTED", "The owning instance's certificate changed")
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            if started:  # failed mid-body: the client sees it cut short
                log.info("response from %s broke off: %r", route.app_id, exc)
                abort = abort_of(scope)
                if abort is not None:
                    abort()
                return
            with contextlib.suppress(Exception):
                await _send_plain(
                    send, *_json_error(502, "PEER_UNAVAILABLE", "The owning instance did not answer")
                )

    async def _websocket(self, route: RemoteRoute, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        caller, denied = await self._caller(route, scope)
        target = self._target(route, scope, ws=True) if denied is None else None
        if denied is not None or target is None:
            await send({"type": "websocket.close", "code": 1008 if denied else 1011})
            return
        # The tunnel outlives the request that opened it: it is closed when the credential stops being valid.
        revoked: list[str] = []
        closed = asyncio.Event()

        def close(reason: str) -> None:
            revoked.append(reason)
            closed.set()

        try:
            release = self.track(caller, close) if self.track is not None and caller.credential else None
        except NekzusError as exc:  # for example too many open connections for this credential
            await send({"type": "websocket.close", "code": 1008, "reason": exc.message[:120]})
            return
        try:
            await self._tunnel(target, caller, scope, send, receive, closed)
        finally:
            if release is not None:
                release()
        if revoked:
            with contextlib.suppress(Exception):
                await send({"type": "websocket.close", "code": 1008, "reason": revoked[0][:120]})

    async def _tunnel(
        self,
        target: tuple[str, str, str],
        caller: Caller,
        scope: Scope,
        send: Send,
        receive: Receive,
        closed: asyncio.Event,
    ) -> None:
        url, signed_path, fingerprint = target
        identity = self._assertion(caller)
        signed = self.federation.sign("GET", signed_path, crypto.identity_digest(identity))
        headers = self._forward_headers(scope, identity, signed)
        protocols = tuple(scope.get("subprotocols") or ())
        try:
            upstream = await self.federation.session.ws_connect(
                yarl.URL(url, encoded=True),
                headers=headers,
                protocols=protocols,
                ssl=self.federation.ssl_for(fingerprint),
                autoping=True,
                max_msg_size=16 * 1024 * 1024,
            )
        except aiohttp.WSServerHandshakeError as exc:
            await send({"type": "websocket.close", "code": 1008 if exc.status in (401, 403) else 1011})
            return
        except (aiohttp.ClientError, OSError, TimeoutError):
            await send({"type": "websocket.close", "code": 1011})
            return
        accept: dict[str, Any] = {"type": "websocket.accept"}
        if upstream.protocol:
            accept["subprotocol"] = upstream.protocol
        await send(accept)
        await _pump_asgi(upstream, receive, send, closed)


async def _pump_asgi(
    upstream: aiohttp.ClientWebSocketResponse, receive: Receive, send: Send, closed: asyncio.Event
) -> None:
    async def client_to_upstream() -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                await upstream.close()
                return
            if message.get("text") is not None:
                await upstream.send_str(message["text"])
            elif message.get("bytes") is not None:
                await upstream.send_bytes(message["bytes"])

    async def upstream_to_client() -> None:
        async for msg in upstream:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await send({"type": "websocket.send", "text": msg.data})
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await send({"type": "websocket.send", "bytes": msg.data})
            else:
                break
        if not closed.is_set():
            with contextlib.suppress(Exception):
                await send({"type": "websocket.close", "code": upstream.close_code or 1000})

    async def until_closed() -> None:
        await closed.wait()

    try:
        await until_first_ends(client_to_upstream(), upstream_to_client(), until_closed())
    finally:
        await upstream.close()


async def until_first_ends(*pumps: Coroutine[Any, Any, None]) -> None:
    """Run the directions of a tunnel until one ends, then stop the others.

    The tasks are scoped to the one request that awaits them here (never outliving it), so they are not
    background work for the spawn helper.
    """
    tasks = [asyncio.ensure_future(p) for p in pumps]  # noqa: TID251 - request-scoped, awaited below
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _send_plain(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


LocalRoute = Callable[[str], Any]
Allowed = Callable[[list[str], list[str]], bool]
AuditDenied = Callable[[str, str, str, dict[str, Any]], Awaitable[None]]


class OwnerRouteHandler:
    """Serves `/federation/v1/route/...` on the owner: verify, judge the asserted caller, then proxy."""

    def __init__(
        self,
        federation: FederationService,
        *,
        local_route: LocalRoute,
        default_scopes: list[str],
        allowed: Allowed,
        audit_denied: AuditDenied,
        strip: StripList = _no_strip,
    ) -> None:
        self.federation = federation
        self.strip = strip
        self.local_route = local_route
        self.default_scopes = list(default_scopes)
        self.allowed = allowed
        self.audit_denied = audit_denied

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        fed = self.federation
        value = request.headers.get(crypto.H_IDENTITY, "")
        try:
            sender = await fed.authenticate(request, crypto.identity_digest(value))
        except Exception as exc:
            return fed.refusal(exc)
        fed.metrics.messages_received_total.labels("route").inc()
        identity = crypto.decode_identity(value) if value else {"kind": "anonymous", "scopes": []}
        path = request.path[len(PREFIX + "/route") :] or "/"
        spec = self.local_route(path)
        if spec is None:
            return _error(404, "ROUTE_NOT_FOUND", "No route matches this path on the owning instance")
        if not spec.public_access:
            held = [s for s in identity.get("scopes") or [] if isinstance(s, str)]
            if identity.get("kind") in (None, "anonymous"):
                return _error(401, "UNAUTHORIZED", "Authentication required")
            required = list(spec.scopes) or self.default_scopes
            if not self.allowed(held, required):
                # The peer is the one the signature proved, not whatever the assertion claims.
                actor = f"{sender}:{identity.get('kind', '')}:{identity.get('id', '')}"
                await self.audit_denied(
                    actor,
                    path,
                    str(identity.get("ip") or request.remote or ""),
                    {"required": required, "appId": spec.app_id},
                )
                return _error(403, "FORBIDDEN", f"Missing required scope: {', '.join(required)}")
        target = _upstream_url(spec, path, request.query_string)
        websocket = request.headers.get("Upgrade", "").lower() == "websocket"
        if websocket:
            if not spec.websocket:
                return _error(403, "WEBSOCKET_NOT_ALLOWED", "WebSocket is not enabled for this route")
            return await self._websocket(request, target, spec)
        return await self._http(request, target, spec)

    def _headers(self, request: web.Request) -> dict[str, str]:
        out: dict[str, str] = {}
        strip = self.strip()
        for name, value in request.headers.items():
            low = name.lower()
            if low in _HOP or low in _OUR_HEADERS or low in _CREDENTIALS or low in _WS_HANDSHAKE:
                continue
            # The owner's strip list too (a peer cannot smuggle identity headers), except the forwarding
            # headers the calling instance rebuilt for this request.
            key = header_key(name.encode("latin-1"))
            if key in strip and low not in _PEER_FORWARDING:
                continue
            out[name] = value
        return out

    async def _http(self, request: web.Request, target: str, spec: Any) -> web.StreamResponse:
        session = self.federation.session
        try:
            async with session.request(
                request.method,
                yarl.URL(target, encoded=True),
                headers=self._headers(request),
                data=request.content if request.body_exists else None,
                ssl=not spec.tls_skip_verify,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=300),
            ) as upstream:
                response = web.StreamResponse(status=upstream.status)
                for name, value in upstream.headers.items():
                    if name.lower() not in _HOP:
                        response.headers.add(name, value)
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                return response
        except (aiohttp.ClientError, OSError, TimeoutError):
            return _error(502, "BAD_GATEWAY", "The upstream service did not answer")

    async def _websocket(self, request: web.Request, target: str, spec: Any) -> web.StreamResponse:
        ws_target = "ws" + target[4:] if target.startswith("http") else target
        protocols = [
            p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()
        ]
        try:
            upstream = await self.federation.session.ws_connect(
                yarl.URL(ws_target, encoded=True),
                headers={
                    k: v for k, v in self._headers(request).items() if k.lower() != "sec-websocket-protocol"
                },
                protocols=protocols,
                ssl=not spec.tls_skip_verify,
                max_msg_size=16 * 1024 * 1024,
            )
        except (aiohttp.ClientError, OSError, TimeoutError):
            return _error(502, "BAD_GATEWAY", "The upstream service did not accept the WebSocket")
        client = web.WebSocketResponse(
            protocols=(upstream.protocol,) if upstream.protocol else (), max_msg_size=0
        )
        await client.prepare(request)

        async def up() -> None:
            async for msg in client:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    await upstream.send_str(msg.data)
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    await upstream.send_bytes(msg.data)
                else:
                    break

        async def down() -> None:
            async for msg in upstream:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    await client.send_str(msg.data)
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    await client.send_bytes(msg.data)
                else:
                    break

        try:
            await until_first_ends(up(), down())
        finally:
            await upstream.close()
            await client.close()
        return client


def _upstream_url(spec: Any, path: str, query: str) -> str:
    base = spec.to.rstrip("/")
    prefix = spec.path_base.rstrip("/")
    rest = path[len(prefix) :] if spec.strip_prefix and path.startswith(prefix) else path
    if spec.strip_prefix:
        rest = rest or "/"
        if not rest.startswith("/"):
            rest = "/" + rest
    parts = urlsplit(base)
    url = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}{quote(rest, safe=_PATH_SAFE)}"
    return url + ("?" + query if query else "")


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)
