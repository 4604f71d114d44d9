"""The proxy's ASGI entry point: the hot path for `/apps/...` and routed subdomains.

Per request: one pass over the request headers, an in-memory route lookup, authentication from memory,
a pooled upstream connection, and the response streamed back chunk by chunk. No framework routing, no
database, no task per request (a disconnect watcher is started only for long-running bodies).

The request path is a row of small phases (see `phases.py` for the pure ones, shared with the WebSocket
tunnel):

    parse head -> check head -> route lookup -> admit -> prepare (upstream target, forwarding headers,
    cookies, cache) -> send request -> shape response -> buffer/rewrite or stream -> account
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

from starlette.types import Receive, Scope, Send

from nekzus.auth.authorize import decide
from nekzus.auth.connections import ConnectionHandle, ConnectionRegistry
from nekzus.auth.principal import TRUSTED, AuthError, Principal
from nekzus.catalog.service import CatalogService
from nekzus.config import Config
from nekzus.http.clientip import IPNetwork, in_networks, parse_ip, parse_networks, resolve_client_ip
from nekzus.http.ratelimit import RateLimiter
from nekzus.http.requestid import request_id_or_new
from nekzus.metrics import Metrics
from nekzus.proxy.cache import CachedResponse, ResponseCache
from nekzus.proxy.cookies import SessionCookieStore
from nekzus.proxy.direct import DirectAnswer, DirectExchange
from nekzus.proxy.phases import (
    Forwarding,
    Headers,
    Refused,
    RequestHead,
    ResponseShape,
    abort_of,
    body_framing,
    charset_of,
    check_head,
    chunk,
    common_headers,
    decode_body,
    error_response,
    forwarded_prefix,
    forwarding_headers,
    header_value,
    merge_cookies,
    parse_head,
    request_bytes,
    shape_response,
    strip_list,
    upstream_path,
    with_query,
)
from nekzus.proxy.rewrite import MAX_REWRITE_BYTES, Rewriter, body_kind
from nekzus.proxy.routes import CompiledRoute, RouteTable
from nekzus.proxy.upstream import PoolRegistry, StreamCut, UpstreamConnection, UpstreamError
from nekzus.proxy.websocket import tunnel

__all__ = ["ProxyApp", "ProxySettings", "Refused"]

log = logging.getLogger("nekzus.proxy")
access_log = logging.getLogger("nekzus.access.proxy")

DENIAL_AUDIT_INTERVAL = 10.0
MAX_CACHED_BODY = 1 << 20
DEFAULT_IDLE_TIMEOUT = 300.0

Spawn = Callable[[Awaitable[Any], str], "asyncio.Task[Any]"]


class Authenticator(Protocol):
    def authenticate_now(self, headers: Mapping[str, str], client_ip: str) -> Principal | None: ...


class AuditLog(Protocol):
    async def record(
        self,
        action: str,
        *,
        actor: str,
        target: str = "",
        ip: str = "",
        details: dict[str, Any] | None = None,
        success: bool = True,
    ) -> None: ...


@dataclass(slots=True)
class ProxySettings:
    """The config values the proxy reads per request, replaced as a whole on reload."""

    base_domain: str = ""
    tls: bool = False
    listen_addr: str = ""
    default_scopes: tuple[str, ...] = ()
    trusted_proxies: tuple[IPNetwork, ...] = ()
    local_networks: tuple[IPNetwork, ...] = ()
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT  # upstream read and write inactivity limit
    strip: dict[bytes, int] = field(default_factory=strip_list)  # request headers never forwarded

    @classmethod
    def from_config(cls, config: Config) -> ProxySettings:
        return cls(
            base_domain=config.server.base_domain.lower().strip("."),
            tls=config.tls_enabled,
            listen_addr=config.server.addr,
            default_scopes=tuple(config.auth.default_scopes),
            trusted_proxies=parse_networks(config.server.trusted_proxies),
            local_networks=parse_networks(config.auth.local_networks),
            idle_timeout=config.server.proxy_idle_timeout,
            strip=strip_list(config.server.proxy_strip_headers),
        )


class _Headers(Mapping[str, str]):
    """A read-only, case-insensitive view of ASGI headers for the authenticator (no copy)."""

    __slots__ = ("_index", "_raw")

    def __init__(self, raw: Headers) -> None:
        self._raw = raw
        self._index: dict[bytes, bytes] | None = None

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]  # no KeyError
        index = self._index
        if index is None:
            # One pass on the first look-up (the authenticator asks for several names); the first line of
            # a repeated header wins, as a scan would find it.
            index = self._index = {}
            for k, v in self._raw:
                if k not in index:
                    index[k] = v
        value = index.get(key.lower().encode("latin-1"))
        return default if value is None else value.decode("latin-1")

    def __getitem__(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __iter__(self) -> Iterator[str]:
        return iter({k.decode("latin-1") for k, _ in self._raw})

    def __len__(self) -> int:
        return len(self._raw)


@dataclass(slots=True)
class ProxiedRequest:
    """One HTTP request on its way through the phases; the exchange fills in status and bytes."""

    route: CompiledRoute
    head: RequestHead
    method: str
    path: str  # as the client asked, for logs
    upstream_path: bytes
    target: bytes  # upstream path and query
    headers: Headers  # copied client headers (cookies merged)
    extra: Headers  # forwarding, framing and conditional headers
    client_ip: str
    request_id: bytes
    rewriter: Rewriter | None
    cookie_store: SessionCookieStore | None
    cache: ResponseCache | None
    principal: Principal | None = None
    cached: CachedResponse | None = None
    conn: UpstreamConnection | None = None  # owned: released or aborted by the exchange
    status: int = 502
    bytes_out: int = 0
    response_started: bool = False

    @property
    def device_id(self) -> str | None:
        """The device whose upstream cookies are kept (routes with `persist_cookies`), if any."""
        principal = self.principal
        return principal.device_id if self.cookie_store is not None and principal is not None else None

    def data(self) -> bytes:
        """The request head as the upstream gets it."""
        return request_bytes(
            self.method, self.target, self.head.host or self.route.upstream_host, self.headers, self.extra
        )


@dataclass(slots=True)
class _Admitted:
    """A request that passed admission, with what the later phases need from it."""

    scope: Scope
    head: RequestHead
    route: CompiledRoute
    subdomain: bool
    principal: Principal | None
    client_ip: str
    request_id: bytes
    common: Headers
    started: float


class ProxyApp:
    """Implements `ProxyDispatch`: answers `/apps/...` and routed subdomains from the catalog's routes."""

    def __init__(
        self,
        catalog: CatalogService,
        *,
        settings: ProxySettings,
        metrics: Metrics,
        limiter: RateLimiter,
        spawn: Spawn,
        is_ready: Callable[[], bool],
        authenticator: Authenticator | None = None,
        audit: AuditLog | None = None,
        cookies: SessionCookieStore | None = None,
        connections: ConnectionRegistry | None = None,
    ) -> None:
        self.catalog = catalog
        self.settings = settings
        self.metrics = metrics
        self.limiter = limiter
        self.spawn = spawn
        self.is_ready = is_ready
        self.authenticator = authenticator
        self.audit = audit
        self.cookies = cookies
        # Tunnels register here by credential, so revocation and expiry close them (identity domain).
        self.connections = connections if connections is not None else ConnectionRegistry()
        self.pools = PoolRegistry()
        self.table = RouteTable([])
        self.cache = ResponseCache()
        self.hop_token = secrets.token_hex(8).encode()
        self._ip_cache: dict[str, tuple[str, bool]] = {}
        self._denials: dict[tuple[str, str], float] = {}
        # Requests in flight, read by the gauge when it is collected (not a locked update per request).
        self.active = 0
        metrics.proxy_active_sessions.set_function(lambda: self.active)
        catalog.on_change(self.rebuild)

    @property
    def scheme(self) -> bytes:
        return b"https" if self.settings.tls else b"http"

    def reconfigure(self, _old: Config, new: Config) -> None:
        """Config reload: new networks and default scopes; cached per-peer answers and routes rebuilt."""
        self.settings = ProxySettings.from_config(new)
        self._ip_cache.clear()
        self.rebuild()

    # -- route table --------------------------------------------------------------------------------

    def rebuild(self) -> None:
        compiled: list[CompiledRoute] = []
        old = {r.spec.route_id: r for r in self.table.routes()}
        for spec in self.catalog.sorted_routes():
            parts = urlsplit(spec.to)
            host = parts.hostname or ""
            port = parts.port or (443 if parts.scheme == "https" else 80)
            key = (parts.scheme, host, port, not spec.tls_skip_verify)
            prefix = spec.path_base.rstrip("/")
            previous = old.get(spec.route_id)
            if previous is not None and previous.spec != spec:
                self.cache.evict_route(spec.route_id)
            route = CompiledRoute(
                spec=spec,
                pool=self.pools.get(*key),
                pool_key=key,
                prefix=prefix,
                prefix_raw=quote(prefix).encode("latin-1"),
                base_path=(parts.path or "").rstrip("/").encode("latin-1"),
                scopes=tuple(spec.scopes) or self.settings.default_scopes,
                loop=self._points_at_self(host, port),
                rewriter=Rewriter(prefix, spec.exclude_paths) if spec.strip_prefix else None,
                upstream_host=(parts.netloc or host).encode("idna"),
            )
            if previous is not None and previous.spec.app_id == spec.app_id:
                route.metrics = previous.metrics
                route.status_counters = previous.status_counters
            else:
                self._bind_metrics(route)
            compiled.append(route)
        self.table = RouteTable(compiled)
        self.pools.retain({r.pool_key for r in compiled})

    def _bind_metrics(self, route: CompiledRoute) -> None:
        """The route's metric children, resolved once, as plain `record(amount)` callables."""
        m = self.metrics
        app = route.spec.app_id
        route.metrics = {
            "duration": m.proxy_request_duration_seconds.labels(app).observe,
            "upstream": m.proxy_upstream_latency_seconds.labels(app).observe,
            "bytes_in": m.proxy_bytes_transferred_total.labels(app, "in").inc,
            "bytes_out": m.proxy_bytes_transferred_total.labels(app, "out").inc,
        }

    def _points_at_self(self, host: str, port: int) -> bool:
        listen = self.settings.listen_addr
        if port != _port_of(listen):
            return False
        addr = parse_ip(host)
        if host == "localhost" or (addr is not None and (addr.is_loopback or addr.is_unspecified)):
            return True
        listen_host = listen.rpartition(":")[0].strip("[]")
        return bool(listen_host) and host == listen_host

    # -- dispatch -----------------------------------------------------------------------------------

    def handles(self, scope: Scope) -> bool:
        if scope["path"].startswith("/apps/"):
            return True
        if self.settings.base_domain and self.table.by_subdomain:
            return self._subdomain_route(scope) is not None
        return False

    def _subdomain_route(self, scope: Scope) -> CompiledRoute | None:
        for name, value in scope["headers"]:
            if name == b"host":
                host = value.decode("latin-1").lower()
                if host.startswith("["):
                    return None
                host = host.split(":", 1)[0].rstrip(".")
                suffix = "." + self.settings.base_domain
                if host.endswith(suffix):
                    return self.table.by_subdomain.get(host[: -len(suffix)])
                return None
        return None

    def claims_tunnel(self, scope: Scope) -> bool:
        """Whether this WebSocket upgrade goes to a `websocket: true` route, which the proxy serves as a
        byte tunnel on the client connection itself (`websocket.py`); other upgrades use the server's
        WebSocket protocol."""
        if not self.handles(scope):
            return False
        route, _subdomain = self.lookup(scope, scope["path"])
        return route is not None and route.spec.websocket

    def lookup(self, scope: Scope, path: str) -> tuple[CompiledRoute | None, bool]:
        """The route for a request and whether it was found by subdomain (no prefix handling then)."""
        if self.settings.base_domain and not path.startswith("/apps/"):
            route = self._subdomain_route(scope)
            return route, route is not None
        return self.table.match(path), False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await tunnel(self, scope, receive, send)
            return
        await self.http(scope, receive, send)

    # -- admission (shared with the WebSocket tunnel) -------------------------------------------------

    def admit(self, route: CompiledRoute, scope: Scope, hop: bytes | None) -> tuple[Principal | None, str]:
        """Loop detection, authentication and scopes, rate limit, upstream health.

        Returns (principal, client ip); raises `Refused` with the answer to give otherwise.
        """
        if hop == self.hop_token or route.loop:
            raise Refused(508, "LOOP_DETECTED", "The route points back at Nekzus")
        client_ip, trusted = self._client(scope)
        principal = self.authorize(route, scope, client_ip, trusted)
        limiter = self.limiter
        if limiter.enabled and limiter.buckets.get("proxy") is not None:
            key = principal.rate_key if principal is not None else f"ip:{client_ip}"
            decision = limiter.check("proxy", key)
            if decision is not None and not decision.allowed:
                raise Refused(
                    429, "RATE_LIMIT_EXCEEDED", "Rate limit exceeded, please slow down", decision.headers()
                )
        if self.catalog.is_unhealthy(route.spec.app_id):
            raise Refused(503, "SERVICE_UNHEALTHY", "Service is currently unhealthy")
        return principal, client_ip

    def _client(self, scope: Scope) -> tuple[str, bool]:
        """(client ip, whether it is in auth.local_networks), cached per peer when no proxy is trusted."""
        settings = self.settings
        if settings.trusted_proxies:
            ip = resolve_client_ip(scope, settings.trusted_proxies)
            return ip, in_networks(parse_ip(ip), settings.local_networks)
        client = scope.get("client")
        peer = client[0] if client else ""
        cached = self._ip_cache.get(peer)
        if cached is None:
            ip = resolve_client_ip(scope, ())
            cached = (ip, in_networks(parse_ip(ip), settings.local_networks))
            if len(self._ip_cache) > 4096:
                self._ip_cache.clear()
            self._ip_cache[peer] = cached
        return cached

    def authorize(
        self, route: CompiledRoute, scope: Scope, client_ip: str, trusted: bool
    ) -> Principal | None:
        """The caller's principal (None on a public route without credentials); raises `Refused`.

        A public route lets anyone through, but a valid credential still identifies the caller (cookies).
        Bootstrap tokens only pair; a route's scopes are required unless the caller is an admin.
        """
        spec = route.spec
        principal: Principal | None = None
        if self.authenticator is not None:
            try:
                principal = self.authenticator.authenticate_now(_Headers(scope["headers"]), client_ip)
            except AuthError as exc:
                if spec.public_access:
                    return None
                raise Refused(exc.status, exc.code, exc.message) from None
        elif trusted:
            principal = TRUSTED
        # The one authorization decision, shared with REST routes and the hub.
        decision = decide(principal, route.scopes, public=spec.public_access)
        if not decision.allowed:
            if decision.audit and principal is not None:
                self._audit_denial(route, scope, principal, client_ip)
            raise Refused(decision.status, decision.code, decision.message)
        return principal

    def _audit_denial(self, route: CompiledRoute, scope: Scope, principal: Principal, client_ip: str) -> None:
        """Audit a scope denial (a security event), in the background and at most once per principal and
        route every few seconds, so a refused client cannot turn the hot path into audit writes."""
        if self.audit is None:
            return
        key = (principal.rate_key, route.spec.route_id)
        now = time.monotonic()
        if now - self._denials.get(key, -DENIAL_AUDIT_INTERVAL) < DENIAL_AUDIT_INTERVAL:
            return
        if len(self._denials) > 10_000:
            self._denials.clear()
        self._denials[key] = now
        details = {
            "method": scope.get("method", "GET"),
            "required": list(route.scopes),
            "kind": principal.kind,
            "routeId": route.spec.route_id,
            "appId": route.spec.app_id,
        }
        record = self.audit.record(
            "access.denied",
            actor=principal.id,
            target=scope["path"][:512],
            ip=client_ip,
            details=details,
            success=False,
        )
        self.spawn(record, "audit")

    def forwarding(self, scope: Scope, client_ip: str, request_id: bytes) -> Forwarding:
        peer = (scope.get("client") or ("",))[0]
        trusted = self.settings.trusted_proxies
        return Forwarding(
            peer=peer,
            client_ip=client_ip,
            peer_is_trusted_proxy=bool(trusted) and in_networks(parse_ip(peer), trusted),
            scheme=self.scheme,
            request_id=request_id,
            hop_token=self.hop_token,
        )

    def cookie_store_for(
        self, route: CompiledRoute, principal: Principal | None
    ) -> SessionCookieStore | None:
        """The session-cookie store when this route keeps cookies for this caller (a paired device)."""
        if self.cookies is None or not route.spec.persist_cookies:
            return None
        return self.cookies if principal is not None and principal.device_id else None

    # -- HTTP -----------------------------------------------------------------------------------------

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        head = parse_head(scope["headers"], self.settings.strip)
        request_id = request_id_or_new(head.request_id)
        common = common_headers(request_id, self.settings.tls)
        path: str = scope["path"]
        if not self.is_ready():
            await _error(send, [*common, (b"retry-after", b"1")], 503, "STORAGE_UNAVAILABLE", "Starting up")
            return
        route: CompiledRoute | None = None
        try:
            refused = check_head(head, path)
            if refused is not None:
                raise refused
            route, subdomain = self.lookup(scope, path)
            if route is None:
                await self._no_route(scope, path, subdomain, send, common)
                return
            principal, client_ip = self.admit(route, scope, head.hop)
        except Refused as refused:
            if route is not None and refused.status == 503:
                self._count(route, 503)
            await _error(send, [*common, *refused.headers], refused.status, refused.code, refused.message)
            return
        admitted = _Admitted(scope, head, route, subdomain, principal, client_ip, request_id, common, started)
        await self._proceed(admitted, receive, send)

    async def _proceed(self, admitted: _Admitted, receive: Receive, send: Send) -> None:
        """An admitted request: a cached answer, or the exchange with the upstream."""
        request = await self._prepare(admitted)
        cached = request.cached
        if cached is not None and cached.fresh(now := time.time()):
            await self._serve_cached(send, admitted.common, cached, now, admitted.scope["headers"])
            self._count(admitted.route, cached.status)
            return
        abort = abort_of(admitted.scope)
        await self.exchange(request, receive, send, admitted.common, admitted.started, abort=abort)

    def direct(self, scope: Scope, answer: DirectAnswer) -> bool:
        """Serve a plain GET (no body, route without response cache) from protocol callbacks instead of
        an ASGI task: the same phases and decisions as `http`, with the answer written whole once the
        upstream's response is in (`DirectExchange`). Returns False, having done nothing, for any request
        that `http` answers differently (refusals before admission, unknown routes, storage starting);
        streamed responses and the rarer cases continue on the ASGI path from where they are."""
        if scope["method"] != "GET" or not self.is_ready():
            return False
        started = time.perf_counter()
        path: str = scope["path"]
        head = parse_head(scope["headers"], self.settings.strip)
        if head.content_length > 0 or head.chunked or check_head(head, path) is not None:
            return False
        route, subdomain = self.lookup(scope, path)
        if route is None or route.spec.cache:
            return False
        request_id = request_id_or_new(head.request_id)
        common = common_headers(request_id, self.settings.tls)
        try:
            principal, client_ip = self.admit(route, scope, head.hop)
        except Refused as refused:
            if refused.status == 503:
                self._count(route, 503)
            headers, body = error_response([*common, *refused.headers], refused.code, refused.message)
            answer.respond(refused.status, headers, body)
            return True
        admitted = _Admitted(scope, head, route, subdomain, principal, client_ip, request_id, common, started)
        store = self.cookie_store_for(route, principal)
        conn = route.pool.take_idle() if store is None else None
        if conn is None:  # stored cookies to read, or a connection to open: both are awaited

            async def proceed(_scope: Scope, receive: Receive, send: Send) -> None:
                await self._proceed(admitted, receive, send)

            answer.continue_with(proceed)
            return True
        request = self._request(admitted, None, None)
        DirectExchange(self, request, conn, answer, common, started).start()
        return True

    async def _no_route(self, scope: Scope, path: str, subdomain: bool, send: Send, common: Headers) -> None:
        """404, or a redirect to the route's base when only the trailing slash is missing."""
        if not subdomain and path + "/" in self.table.by_path:
            query = scope.get("query_string", b"")
            location = with_query(quote(path + "/").encode("latin-1"), query)
            await _respond(send, 301, [*common, (b"location", location), (b"content-length", b"0")], b"")
            return
        await _error(send, common, 404, "NOT_FOUND", "No route for this path")

    async def _prepare(self, admitted: _Admitted) -> ProxiedRequest:
        """The request to send, with the cookies stored for this device merged in."""
        store = self.cookie_store_for(admitted.route, admitted.principal)
        stored = None
        principal = admitted.principal
        if store is not None and principal is not None and principal.device_id is not None:
            stored = await store.cookie_header(principal.device_id, admitted.route.spec.app_id)
        return self._request(admitted, store, stored)

    def _request(
        self, admitted: _Admitted, store: SessionCookieStore | None, stored: dict[str, str] | None
    ) -> ProxiedRequest:
        """Upstream target, copied and forwarding headers, stored cookies, cache lookup."""
        scope, head, route, subdomain = admitted.scope, admitted.head, admitted.route, admitted.subdomain
        principal, client_ip, request_id = admitted.principal, admitted.client_ip, admitted.request_id
        spec = route.spec
        method: str = scope["method"]
        up_path = upstream_path(route, scope["path"], scope.get("raw_path"), subdomain)
        headers = head.forward
        rewriter = route.rewriter
        if rewriter is not None and rewriter.excluded(up_path.decode("latin-1")):
            rewriter = None
        if rewriter is not None:
            # Bodies to rewrite must arrive uncompressed.
            headers = [h for h in headers if h[0] != b"accept-encoding"]
        if stored:
            headers = merge_cookies(headers, stored)
        fwd = self.forwarding(scope, client_ip, request_id)
        extra = forwarding_headers(head, fwd, forwarded_prefix(route, subdomain))
        extra += body_framing(head, method)
        request = ProxiedRequest(
            route=route,
            head=head,
            method=method,
            path=scope["path"],
            upstream_path=up_path,
            target=with_query(up_path, scope.get("query_string", b"")),
            headers=headers,
            extra=extra,
            client_ip=client_ip,
            request_id=request_id,
            rewriter=rewriter,
            principal=principal,
            cookie_store=store,
            cache=self.cache if spec.cache and ResponseCache.request_allows(method, headers) else None,
        )
        self._cache_lookup(request)
        return request

    def _cache_lookup(self, request: ProxiedRequest) -> None:
        """A cached response for this request; when stale, ask the upstream to revalidate it."""
        cache = request.cache
        if cache is None:
            return
        cached = cache.lookup(request.route.spec.route_id, request.target, request.headers)
        request.cached = cached
        if cached is None or cached.fresh(time.time()):
            return
        if cached.etag:
            request.extra.append((b"if-none-match", cached.etag))
        elif cached.last_modified:
            request.extra.append((b"if-modified-since", cached.last_modified))

    async def exchange(
        self,
        request: ProxiedRequest,
        receive: Receive,
        send: Send,
        common: Headers,
        started: float,
        sent: tuple[UpstreamConnection, float] | None = None,
        abort: Callable[[], object] | None = None,
    ) -> None:
        """Send the request upstream and relay the answer; map upstream failures to 502/504.

        `sent`: the connection the request was already written to (and when), by a `DirectExchange`
        that passed the rest on; it counted the request as active already. `abort`: how to end a
        response whose body cannot be completed (the server closes the connection)."""
        route = request.route
        if sent is None:
            self.active += 1
        try:
            upstream_started = time.perf_counter() if sent is None else sent[1]
            conn = await self._send_request(request, receive, sent[0] if sent is not None else None)
            route.metrics["upstream"](time.perf_counter() - upstream_started)
            request.status = conn.status
            await self._respond(request, conn, receive, send, common)
        except StreamCut as exc:
            # The head went out with the upstream's status; the client sees the body cut short.
            log.info("response from %s cut short: %s", route.spec.route_id, exc)
            if abort is not None:
                abort()
        except UpstreamError as exc:
            request.status = exc.status
            self.metrics.proxy_upstream_errors_total.labels(route.spec.app_id, exc.code.lower()).inc()
            log.info("upstream %s for %s: %s", exc.code, route.spec.route_id, exc)
            if not request.response_started:
                await _error(send, common, exc.status, exc.code, str(exc))
            elif abort is not None:
                abort()
        except _ClientGone:
            request.status = 499
        except Exception:
            log.exception(
                "proxying to %s failed (request %s)", route.spec.route_id, request.request_id.decode()
            )
            if not request.response_started:
                request.status = 502
                await _error(send, common, 502, "BAD_GATEWAY", "Proxy error")
            elif abort is not None:
                abort()
        finally:
            if request.conn is not None:
                request.conn.abort()
                request.conn = None
            self.active -= 1
            self.account(request, started)

    async def _send_request(
        self, request: ProxiedRequest, receive: Receive, sent: UpstreamConnection | None = None
    ) -> UpstreamConnection:
        """Write the request (head with the first body piece) and wait for the response head; `sent` is
        a connection a body-less request was written to already."""
        head = request.head
        route = request.route
        data = request.data()
        more_body = False
        if head.content_length > 0 or head.chunked:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            body = message.get("body", b"")
            more_body = message.get("more_body", False)
            data += chunk(body, more_body) if head.chunked else body
        timeout = self.settings.idle_timeout
        for attempt in (0, 1):
            if attempt == 0 and sent is not None:
                conn = sent
            else:
                conn = request.conn = await route.pool.acquire()
                conn.write(data)
            if more_body:
                await self._stream_request(conn, receive, head.chunked)
            try:
                await conn.read_head(timeout)
                return conn
            except UpstreamError:
                # A pooled connection the upstream had closed: retry once on a fresh one.
                if attempt == 0 and conn.reused and conn.bytes_received == 0 and not more_body:
                    conn.abort()
                    request.conn = None
                    continue
                raise
        raise AssertionError("unreachable")

    async def _respond(
        self, request: ProxiedRequest, conn: UpstreamConnection, receive: Receive, send: Send, common: Headers
    ) -> None:
        """Shape the upstream's response; serve a revalidated cache entry, a rewritten or cached body, or
        stream it through."""
        status = conn.status
        is_head = request.method == "HEAD"
        if is_head and not conn.complete:
            conn.complete = True
            conn.closed = True  # the body length is unknown to the parser: do not reuse
        cached = request.cached
        if cached is not None and status == 304 and request.cache is not None:
            request.cache.refresh(cached, conn.headers)
            self.release(request)
            request.status = cached.status
            await self._serve_cached(send, common, cached, time.time(), request.head.forward)
            return
        shape, body_type = self.shape(request, conn)
        length = shape.length
        cacheable = (
            request.cache is not None and not is_head and length is not None and length <= MAX_CACHED_BODY
        )
        if body_type is not None or cacheable:
            await self._respond_buffered(request, conn, shape, body_type, receive, send, common)
        else:
            await self._respond_streaming(request, conn, shape.headers, receive, send, common)

    @staticmethod
    def shape(request: ProxiedRequest, conn: UpstreamConnection) -> tuple[ResponseShape, str | None]:
        """The response headers as the client gets them (cookies captured for the device), and the kind
        of body to rewrite, if any."""
        spec = request.route.spec
        status = conn.status
        shape = shape_response(conn.headers, spec, request.rewriter)
        rewriter = request.rewriter
        if rewriter is not None:
            shape.headers = rewriter.headers(shape.headers, request.head.host.decode("latin-1"), status)
        if request.cookie_store is not None and shape.set_cookies and request.device_id:
            request.cookie_store.capture(request.device_id, spec.app_id, [v for _, v in shape.set_cookies])
        body_type: str | None = None
        if rewriter is not None and spec.rewrite_html and request.method != "HEAD" and 200 <= status < 300:
            body_type = body_kind(shape.content_type, shape.length, request.upstream_path.decode("latin-1"))
        return shape, body_type

    async def _respond_buffered(
        self,
        request: ProxiedRequest,
        conn: UpstreamConnection,
        shape: ResponseShape,
        body_type: str | None,
        receive: Receive,
        send: Send,
        common: Headers,
    ) -> None:
        """Read the whole body to rewrite or cache it; too big for that, pass it through as it comes."""
        body, overflow = await self._buffer(conn, MAX_REWRITE_BYTES if body_type else MAX_CACHED_BODY)
        headers = shape.headers
        start = {"type": "http.response.start", "status": request.status, "headers": headers + common}
        if overflow:
            request.response_started = True
            await send(start)
            await send({"type": "http.response.body", "body": body, "more_body": True})
            request.bytes_out = len(body) + await self._stream_response(request, conn, receive, send)
            self.release(request)
            return
        if body_type is not None:
            body, headers = self.rewrite(request, body_type, body, shape)
        elif request.cache is not None:
            spec = request.route.spec
            request.cache.store(spec.route_id, request.target, request.headers, request.status, headers, body)
            headers.append((b"x-cache", b"MISS"))
        request.response_started = True
        await send({"type": "http.response.start", "status": request.status, "headers": headers + common})
        await send({"type": "http.response.body", "body": body})
        request.bytes_out = len(body)
        self.release(request)

    @staticmethod
    def rewrite(
        request: ProxiedRequest, body_type: str, body: bytes, shape: ResponseShape
    ) -> tuple[bytes, Headers]:
        headers = shape.headers
        text = decode_body(body, header_value(headers, b"content-encoding"), shape.content_type)
        if text is None or request.rewriter is None:
            return body, headers
        path = request.upstream_path.decode("latin-1")
        body = request.rewriter.body(body_type, text, path).encode(charset_of(shape.content_type))
        drop = (b"content-length", b"content-encoding", b"etag")
        headers = [h for h in headers if h[0] not in drop]
        headers.append((b"content-length", str(len(body)).encode()))
        return body, headers

    async def _respond_streaming(
        self,
        request: ProxiedRequest,
        conn: UpstreamConnection,
        headers: Headers,
        receive: Receive,
        send: Send,
        common: Headers,
    ) -> None:
        """Head and the first buffered bytes at once (one socket write), then the rest as it arrives."""
        first = conn.take_buffered()
        request.response_started = True
        await send({"type": "http.response.start", "status": request.status, "headers": headers + common})
        if conn.complete and not conn.buffered:
            await send({"type": "http.response.body", "body": first})
            request.bytes_out = len(first)
        else:
            if first:
                await send({"type": "http.response.body", "body": first, "more_body": True})
            request.bytes_out = len(first) + await self._stream_response(request, conn, receive, send)
        if request.method == "HEAD":
            conn.close()
            request.conn = None
        else:
            self.release(request)

    def follow_credential(
        self, request: ProxiedRequest, close: Callable[[str], object]
    ) -> ConnectionHandle | None:
        """File a response that keeps streaming (SSE, a download) under the credential that opened it:
        revoking that credential, or its expiry, cuts it as it closes WebSocket tunnels and hub sockets,
        in every worker. Public routes (anyone may read them) and trusted networks have nothing to
        revoke."""
        principal = request.principal
        if principal is None or principal.kind == "trusted" or request.route.spec.public_access:
            return None
        return self.connections.register(principal, close, capped=False)

    def release(self, request: ProxiedRequest) -> None:
        conn = request.conn
        if conn is not None:
            request.route.pool.release(conn)
            request.conn = None

    def account(self, request: ProxiedRequest, started: float) -> None:
        route = request.route
        self._count(route, request.status)
        metrics = route.metrics
        metrics["duration"](time.perf_counter() - started)
        if request.bytes_out:
            metrics["bytes_out"](request.bytes_out)
        if request.head.content_length > 0:
            metrics["bytes_in"](request.head.content_length)
        if access_log.isEnabledFor(logging.DEBUG):
            access_log.debug(
                "%s %s %d",
                request.method,
                request.path,
                request.status,
                extra={"request_id": request.request_id.decode(), "client_ip": request.client_ip},
            )

    def _count(self, route: CompiledRoute, status: int) -> None:
        counter = route.status_counters.get(status)
        if counter is None:
            counter = route.status_counters[status] = self.metrics.proxy_requests_total.labels(
                route.spec.app_id, str(status)
            ).inc
        counter(1)

    # -- streaming ------------------------------------------------------------------------------------

    async def _stream_request(self, conn: UpstreamConnection, receive: Receive, chunked: bool) -> None:
        timeout = self.settings.idle_timeout
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            body = message.get("body", b"")
            more = message.get("more_body", False)
            data = chunk(body, more) if chunked else body
            if data:
                conn.write(data)
                await conn.drain(timeout)
            if conn.error is not None:
                raise conn.error
            if not more:
                return

    async def _stream_response(
        self, request: ProxiedRequest, conn: UpstreamConnection, receive: Receive, send: Send
    ) -> int:
        """Relay body chunks as they arrive (SSE, downloads); stop when the client goes away, or cut the
        body short when the request's credential is revoked (`follow_credential`)."""
        sent = 0
        handle = self.follow_credential(request, conn.cut)
        watcher = self.spawn(_wait_disconnect(receive), "proxy-disconnect-watch")
        watcher.add_done_callback(lambda _f: conn.abort() if not conn.complete else None)
        try:
            timeout = self.settings.idle_timeout
            while True:
                piece = await conn.read_chunk(timeout)
                if not piece:
                    await send({"type": "http.response.body", "body": b""})
                    break
                # The last piece ends the response in the same message (one send less per response).
                last = conn.complete and not conn.buffered
                await send({"type": "http.response.body", "body": piece, "more_body": not last})
                sent += len(piece)
                if last:
                    break
                if watcher.done() and not conn.complete:
                    raise _ClientGone
        finally:
            if handle is not None:
                handle.release()
            if not watcher.done():
                watcher.cancel()
                # Wait for it to finish; a cancellation of this task still propagates from here.
                await asyncio.wait([watcher])
        return sent

    async def _buffer(self, conn: UpstreamConnection, limit: int) -> tuple[bytes, bool]:
        chunks: list[bytes] = []
        size = 0
        while True:
            piece = await conn.read_chunk(self.settings.idle_timeout)
            if not piece:
                return b"".join(chunks), False
            chunks.append(piece)
            size += len(piece)
            if size > limit:
                return b"".join(chunks), True

    async def _serve_cached(
        self, send: Send, common: Headers, cached: CachedResponse, now: float, request_headers: Headers
    ) -> None:
        inm = header_value(request_headers, b"if-none-match")
        headers = [*cached.headers, (b"age", str(cached.age(now)).encode()), (b"x-cache", b"HIT")]
        if inm and cached.etag and cached.etag in [v.strip() for v in inm.split(b",")]:
            headers = [h for h in headers if h[0] != b"content-length"]
            await _respond(send, 304, headers + common, b"")
            return
        await _respond(send, cached.status, headers + common, cached.body)

    def close(self) -> None:
        self.pools.close()


class _ClientGone(Exception):
    pass


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _port_of(addr: str) -> int:
    try:
        return int(addr.rpartition(":")[2])
    except ValueError:
        return 0


async def _respond(send: Send, status: int, headers: Headers, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _error(send: Send, common: Headers, status: int, code: str, message: str) -> None:
    headers, body = error_response(common, code, message)
    with contextlib.suppress(Exception):
        await _respond(send, status, headers, body)
