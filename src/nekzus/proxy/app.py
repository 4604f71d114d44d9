"""The proxy's ASGI entry point: the hot path for `/apps/...` and routed subdomains.

Per request: one pass over the request headers, an in-memory route lookup, authentication from memory,
a pooled upstream connection, and the response streamed back chunk by chunk. No framework routing, no
database, no task per request (a disconnect watcher is started only for long-running bodies).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from nekzus import API_VERSION
from nekzus.auth.principal import ADMIN, AuthError, Principal
from nekzus.catalog.service import CatalogService
from nekzus.catalog.spec import RouteSpec
from nekzus.config import Config
from nekzus.http.clientip import in_networks, parse_ip, resolve_client_ip
from nekzus.http.errors import error_body
from nekzus.proxy.cache import ResponseCache
from nekzus.proxy.rewrite import MAX_REWRITE_BYTES, Rewriter, body_kind
from nekzus.proxy.upstream import (
    PoolRegistry,
    UpstreamConnection,
    UpstreamError,
    UpstreamPool,
)
from nekzus.services import Services

log = logging.getLogger("nekzus.proxy")
access_log = logging.getLogger("nekzus.access.proxy")

MAX_REQUEST_HEAD = 64 * 1024
DENIAL_AUDIT_INTERVAL = 10.0
HOP_HEADER = b"x-nekzus-hop"
_TRUSTED = Principal("trusted", "local", frozenset({ADMIN}), name="local")

# Request headers never forwarded as sent (Nekzus sets the forwarding ones itself).
_DROP = 1
_FORWARDED = 2
_REQUEST_SPECIAL: dict[bytes, int] = {
    b"host": _DROP,
    b"connection": _DROP,
    b"keep-alive": _DROP,
    b"proxy-connection": _DROP,
    b"proxy-authorization": _DROP,
    b"te": _DROP,
    b"trailer": _DROP,
    b"transfer-encoding": _DROP,
    b"upgrade": _DROP,
    b"expect": _DROP,
    b"authorization": _DROP,
    b"x-api-key": _DROP,
    b"x_api_key": _DROP,
    b"content-length": _DROP,
    HOP_HEADER: _DROP,
    b"forwarded": _FORWARDED,
    b"x-forwarded-for": _FORWARDED,
    b"x-forwarded-proto": _FORWARDED,
    b"x-forwarded-host": _FORWARDED,
    b"x-forwarded-port": _FORWARDED,
    b"x-forwarded-prefix": _FORWARDED,
    b"x-real-ip": _FORWARDED,
    b"x_forwarded_for": _FORWARDED,
    b"x_forwarded_proto": _FORWARDED,
    b"x_forwarded_host": _FORWARDED,
    b"x_forwarded_port": _FORWARDED,
    b"x_forwarded_prefix": _FORWARDED,
    b"x_real_ip": _FORWARDED,
}
_RESPONSE_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
    }
)


class _Headers:
    """A read-only, case-insensitive view of ASGI headers for the authenticator (no copy)."""

    __slots__ = ("_raw",)

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._raw = raw

    def get(self, key: str, default: str | None = None) -> str | None:
        name = key.lower().encode("latin-1")
        for k, v in self._raw:
            if k == name:
                return str(v.decode("latin-1"))
        return default

    def __getitem__(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __iter__(self) -> Any:
        return iter({k.decode("latin-1") for k, _ in self._raw})

    def __len__(self) -> int:
        return len(self._raw)

    def keys(self) -> Any:
        return list(self)

    def items(self) -> Any:
        return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self._raw]


@dataclass(slots=True)
class CompiledRoute:
    """A route prepared for the hot path."""

    spec: RouteSpec
    pool: UpstreamPool
    pool_key: tuple[str, str, int, bool]
    prefix: str  # path base without trailing slash
    prefix_raw: bytes
    base_path: bytes  # target URL path without trailing slash
    scopes: tuple[str, ...]
    loop: bool
    rewriter: Rewriter | None
    upstream_host: bytes
    metrics: dict[str, Any] = field(default_factory=dict)
    status_counters: dict[int, Any] = field(default_factory=dict)


class RouteTable:
    def __init__(self, routes: list[CompiledRoute]) -> None:
        self.by_path: dict[str, CompiledRoute] = {}
        self.by_subdomain: dict[str, CompiledRoute] = {}
        for route in routes:
            if route.spec.path_routed:
                self.by_path[route.spec.path_base] = route
            if route.spec.subdomain_routed:
                self.by_subdomain[route.spec.subdomain] = route

    def match(self, path: str) -> CompiledRoute | None:
        """Longest prefix match on a segment boundary."""
        by_path = self.by_path
        hit = by_path.get(path)
        if hit is not None:
            return hit
        end = len(path)
        while True:
            end = path.rfind("/", 0, end)
            if end < 0:
                return None
            hit = by_path.get(path[: end + 1]) or by_path.get(path[:end])
            if hit is not None:
                return hit


def _bad_path(path: str) -> bool:
    if "\x00" in path or "\r" in path or "\n" in path or "\\" in path:
        return True
    if "/." in path:
        for segment in path.split("/"):
            if segment in (".", ".."):
                return True
    return False


class ProxyApp:
    """Implements `ProxyDispatch` for `services.proxy`."""

    def __init__(self, services: Services, catalog: CatalogService) -> None:
        self.services = services
        self.catalog = catalog
        self.pools = PoolRegistry()
        self.table = RouteTable([])
        self.cache = ResponseCache()
        self.idle_timeout = services.config.server.proxy_idle_timeout
        self.hop_token = secrets.token_hex(8).encode()
        self.base_domain = services.config.server.base_domain.lower().strip(".")
        self.tls = services.config.tls_enabled
        self.scheme = b"https" if self.tls else b"http"
        self.listen_port = _port_of(services.config.server.addr)
        self.default_scopes = tuple(services.config.auth.default_scopes)
        self._ip_cache: dict[str, tuple[str, bool]] = {}
        self._denials: dict[tuple[str, str], float] = {}
        self.cookies: Any = None  # SessionCookieStore, set by the feature when enabled
        self.websocket: Callable[..., Any] | None = None
        m = services.metrics
        self._active = m.proxy_active_sessions
        catalog.on_change(self.rebuild)

    def reconfigure(self, _old: Config, new: Config) -> None:
        """Reload hook: trusted peers and default route scopes may have changed."""
        self._ip_cache.clear()
        self.default_scopes = tuple(new.auth.default_scopes)
        self.rebuild()

    # -- route table --------------------------------------------------------------------------------

    def rebuild(self) -> None:
        compiled: list[CompiledRoute] = []
        old = {r.spec.route_id: r for r in [*self.table.by_path.values(), *self.table.by_subdomain.values()]}
        for spec in self.catalog.sorted_routes():
            parts = urlsplit(spec.to)
            scheme = parts.scheme
            host = parts.hostname or ""
            port = parts.port or (443 if scheme == "https" else 80)
            verify = not spec.tls_skip_verify
            key = (scheme, host, port, verify)
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
                scopes=tuple(spec.scopes) or self.default_scopes,
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
        m = self.services.metrics
        app = route.spec.app_id
        route.metrics = {
            "duration": m.proxy_request_duration_seconds.labels(app),
            "upstream": m.proxy_upstream_latency_seconds.labels(app),
            "bytes_in": m.proxy_bytes_transferred_total.labels(app, "in"),
            "bytes_out": m.proxy_bytes_transferred_total.labels(app, "out"),
        }

    def _points_at_self(self, host: str, port: int) -> bool:
        if port != self.listen_port:
            return False
        addr = parse_ip(host)
        if host == "localhost" or (addr is not None and (addr.is_loopback or addr.is_unspecified)):
            return True
        listen_host = self.services.config.server.addr.rpartition(":")[0].strip("[]")
        return bool(listen_host) and host == listen_host

    # -- dispatch -----------------------------------------------------------------------------------

    def handles(self, scope: dict[str, Any]) -> bool:
        if scope["path"].startswith("/apps/"):
            return True
        if self.base_domain and self.table.by_subdomain:
            return self._subdomain_route(scope) is not None
        return False

    def _subdomain_route(self, scope: dict[str, Any]) -> CompiledRoute | None:
        for name, value in scope["headers"]:
            if name == b"host":
                host = value.decode("latin-1").lower()
                if host.startswith("["):
                    return None
                host = host.split(":", 1)[0].rstrip(".")
                suffix = "." + self.base_domain
                if host.endswith(suffix):
                    return self.table.by_subdomain.get(host[: -len(suffix)])
                return None
        return None

    def lookup(self, scope: dict[str, Any], path: str) -> tuple[CompiledRoute | None, bool]:
        """The route for a request and whether it was found by subdomain (no prefix handling then)."""
        if self.base_domain and not path.startswith("/apps/"):
            route = self._subdomain_route(scope)
            return route, route is not None
        return self.table.match(path), False

    async def admit(
        self, route: CompiledRoute, scope: dict[str, Any], hop: bytes | None
    ) -> tuple[Principal | None, str]:
        """Checks shared by HTTP and WebSocket proxying: loop, authentication and scopes, rate limit.

        Returns (principal, client ip); raises `Refused` with the answer to give otherwise.
        """
        if hop == self.hop_token or route.loop:
            raise Refused(508, "LOOP_DETECTED", "The route points back at Nekzus")
        client_ip, trusted = self._client(scope)
        principal, denied = await self.authorize(route, scope, client_ip, trusted)
        if denied is not None:
            raise Refused(*denied)
        limiter = self.services.limiter
        if limiter.enabled and limiter.buckets.get("proxy") is not None:
            key = principal.rate_key if principal is not None else f"ip:{client_ip}"
            decision = limiter.check("proxy", key)
            if decision is not None and not decision.allowed:
                raise Refused(
                    429, "RATE_LIMIT_EXCEEDED", "Rate limit exceeded, please slow down", decision.headers()
                )
        return principal, client_ip

    def _client(self, scope: dict[str, Any]) -> tuple[str, bool]:
        """(client ip, whether it is in auth.local_networks), cached per peer when no proxy is trusted."""
        services = self.services
        if services.trusted_proxies:
            ip = resolve_client_ip(scope, services.trusted_proxies)
            return ip, in_networks(parse_ip(ip), services.local_networks)
        client = scope.get("client")
        peer = client[0] if client else ""
        cached = self._ip_cache.get(peer)
        if cached is None:
            ip = resolve_client_ip(scope, ())
            cached = (ip, in_networks(parse_ip(ip), services.local_networks))
            if len(self._ip_cache) > 4096:
                self._ip_cache.clear()
            self._ip_cache[peer] = cached
        return cached

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            if self.websocket is None:
                await send({"type": "websocket.close", "code": 1011})
                return
            await self.websocket(self, scope, receive, send)
            return
        await self.http(scope, receive, send)

    async def authorize(
        self, route: CompiledRoute, scope: dict[str, Any], client_ip: str, trusted: bool
    ) -> tuple[Principal | None, tuple[int, str, str] | None]:
        """The caller's principal, or the error to answer with (Part A §6)."""
        spec = route.spec
        authenticator = self.services.domains.auth
        principal: Principal | None = None
        if authenticator is not None:
            try:
                principal = await authenticator.authenticate(_Headers(scope["headers"]), client_ip)
            except AuthError as exc:
                if spec.public_access:
                    return None, None
                return None, (exc.status, exc.code, exc.message)
        elif trusted:
            principal = _TRUSTED
        if spec.public_access:
            return principal, None
        if principal is None:
            return None, (401, "UNAUTHORIZED", "Authentication required")
        if principal.kind == "bootstrap":
            return None, (403, "FORBIDDEN", "Bootstrap tokens can only be used for pairing")
        if route.scopes and ADMIN not in principal.scopes and not principal.allows(*route.scopes):
            self._audit_denial(route, scope, principal, client_ip)
            return None, (403, "FORBIDDEN", f"Missing required scope: {', '.join(route.scopes)}")
        return principal, None

    def _audit_denial(
        self, route: CompiledRoute, scope: dict[str, Any], principal: Principal, client_ip: str
    ) -> None:
        """Audit a scope denial (issue 3), in the background and at most once per principal and route
        every few seconds, so a refused client cannot turn the hot path into audit writes."""
        audit = self.services.domains.audit
        key = (principal.rate_key, route.spec.route_id)
        now = time.monotonic()
        if now - self._denials.get(key, -DENIAL_AUDIT_INTERVAL) < DENIAL_AUDIT_INTERVAL:
            return
        if len(self._denials) > 10_000:
            self._denials.clear()
        self._denials[key] = now
        self.services.spawn(
            audit.record(
                "access.denied",
                actor=principal.id,
                target=scope["path"][:512],
                ip=client_ip,
                details={
                    "method": scope.get("method", "GET"),
                    "required": list(route.scopes),
                    "kind": principal.kind,
                    "routeId": route.spec.route_id,
                    "appId": route.spec.app_id,
                },
                success=False,
            ),
            "audit",
        )

    async def http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        started = time.perf_counter()
        raw_headers: list[tuple[bytes, bytes]] = scope["headers"]
        request_id = b""
        host = b""
        forwarded_in: list[tuple[bytes, bytes]] = []
        upstream_headers: list[tuple[bytes, bytes]] = []
        append = upstream_headers.append
        special = _REQUEST_SPECIAL
        content_length = -1
        chunked = False
        head_size = 0
        connection_tokens = b""
        hop = b""
        for name, value in raw_headers:
            head_size += len(name) + len(value)
            kind = special.get(name)
            if kind is None:
                if name == b"x-request-id":
                    request_id = value
                append((name, value))
            elif kind == _FORWARDED:
                forwarded_in.append((name, value))
            elif name == b"host":
                host = value
            elif name == b"content-length":
                try:
                    content_length = int(value)
                except ValueError:
                    content_length = -2
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                connection_tokens = value
            elif name == HOP_HEADER:
                hop = value
        if not request_id or len(request_id) > 128 or not request_id.replace(b"-", b"").isalnum():
            request_id = secrets.token_hex(8).encode()
        common = [(b"x-api-version", API_VERSION.encode()), (b"x-request-id", request_id)]
        if self.tls:
            common.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))

        path: str = scope["path"]
        if not self.services.ready:
            await _error(send, [*common, (b"retry-after", b"1")], 503, "STORAGE_UNAVAILABLE", "Starting up")
            return
        if head_size > MAX_REQUEST_HEAD:
            await _error(send, common, 431, "HEADERS_TOO_LARGE", "Request headers are too large")
            return
        if b"\x00" in host or b"\r" in host or b"\n" in host or b" " in host:
            await _error(send, common, 400, "INVALID_REQUEST", "Invalid host header")
            return
        if _bad_path(path):
            await _error(send, common, 400, "INVALID_PATH", "Invalid request path")
            return
        if content_length == -2 or (chunked and content_length >= 0):
            await _error(send, common, 400, "INVALID_REQUEST", "Invalid Content-Length")
            return

        route, subdomain = self.lookup(scope, path)
        if route is None and not subdomain and path + "/" in self.table.by_path:
            query = scope.get("query_string", b"")
            location = quote(path + "/").encode("latin-1") + (b"?" + query if query else b"")
            await _respond(send, 301, [*common, (b"location", location), (b"content-length", b"0")], b"")
            return
        if route is None:
            await _error(send, common, 404, "NOT_FOUND", "No route for this path")
            return
        spec = route.spec
        try:
            principal, client_ip = await self.admit(route, scope, hop)
        except Refused as refused:
            await _error(send, [*common, *refused.headers], refused.status, refused.code, refused.message)
            return
        if self.catalog.is_unhealthy(spec.app_id):
            self._count(route, 503)
            await _error(send, common, 503, "SERVICE_UNHEALTHY", "Service is currently unhealthy")
            return

        # ---- upstream request -------------------------------------------------------------------
        raw_path: bytes = scope.get("raw_path") or quote(path).encode("latin-1")
        if subdomain or not spec.strip_prefix:
            upstream_path = raw_path
        elif raw_path.startswith(route.prefix_raw):
            upstream_path = raw_path[len(route.prefix_raw) :]
        else:
            upstream_path = quote(path[len(route.prefix) :]).encode("latin-1")
        if not upstream_path.startswith(b"/"):
            upstream_path = b"/" + upstream_path
        if route.base_path:
            upstream_path = route.base_path + upstream_path
        query_string: bytes = scope.get("query_string", b"")
        target = upstream_path + b"?" + query_string if query_string else upstream_path

        if connection_tokens:
            extra = {t.strip().lower() for t in connection_tokens.split(b",")} - {
                b"keep-alive",
                b"close",
                b"upgrade",
            }
            if extra:
                upstream_headers = [h for h in upstream_headers if h[0] not in extra]

        rewriter = route.rewriter
        if rewriter is not None and rewriter.excluded(upstream_path.decode("latin-1")):
            rewriter = None
        if rewriter is not None:
            upstream_headers = [h for h in upstream_headers if h[0] != b"accept-encoding"]

        device_id = principal.device_id if principal is not None else None
        cookie_store = self.cookies if spec.persist_cookies and device_id else None
        if cookie_store is not None:
            stored = await cookie_store.cookie_header(device_id, spec.app_id)
            if stored:
                upstream_headers = _merge_cookies(upstream_headers, stored)

        # Forwarding headers: from a trusted proxy keep its chain, otherwise start afresh.
        peer = (scope.get("client") or ("",))[0]
        from_trusted_proxy = bool(self.services.trusted_proxies) and in_networks(
            parse_ip(peer), self.services.trusted_proxies
        )
        xff = peer.encode("latin-1")
        proto = self.scheme
        if from_trusted_proxy:
            for name, value in forwarded_in:
                if name in (b"x-forwarded-for", b"x_forwarded_for"):
                    xff = value + b", " + xff
                elif name in (b"x-forwarded-proto", b"x_forwarded_proto"):
                    proto = value
        host_only, _, host_port = (
            host.rpartition(b":") if host.rfind(b":") > host.rfind(b"]") else (host, b"", b"")
        )
        port = host_port or (b"443" if proto == b"https" else b"80")
        fwd = [
            (b"x-forwarded-for", xff),
            (b"x-real-ip", client_ip.encode("latin-1")),
            (b"x-forwarded-proto", proto),
            (b"x-forwarded-host", host),
            (b"x-forwarded-port", port),
            (b"x-request-id", request_id)
            if not any(n == b"x-request-id" for n, _ in upstream_headers)
            else None,
            (HOP_HEADER, self.hop_token),
        ]
        if spec.strip_prefix and not subdomain:
            fwd.append((b"x-forwarded-prefix", route.prefix.encode("latin-1")))
        _ = host_only

        method: str = scope["method"]
        has_body = content_length > 0 or chunked
        if chunked:
            fwd.append((b"transfer-encoding", b"chunked"))
        elif content_length >= 0 and (content_length > 0 or method in ("POST", "PUT", "PATCH")):
            fwd.append((b"content-length", str(content_length).encode()))

        # Cache lookup (GET only, opt-in per route).
        cache = self.cache if spec.cache else None
        cached = None
        if cache is not None:
            if cache.request_allows(method, upstream_headers):
                cached = cache.lookup(spec.route_id, target, upstream_headers)
                if cached is not None:
                    now = time.time()
                    if cached.fresh(now):
                        await self._serve_cached(send, common, cached, now, raw_headers)
                        self._count(route, cached.status)
                        return
                    if cached.etag:
                        fwd.append((b"if-none-match", cached.etag))
                    elif cached.last_modified:
                        fwd.append((b"if-modified-since", cached.last_modified))
            else:
                cache = None

        parts = [
            method.encode("latin-1"),
            b" ",
            target,
            b" HTTP/1.1\r\nhost: ",
            host or route.upstream_host,
            b"\r\n",
        ]
        for item in (*upstream_headers, *fwd):
            if item is not None:
                parts += (item[0], b": ", item[1], b"\r\n")
        parts.append(b"\r\n")
        head = b"".join(parts)

        first_body = b""
        more_body = False
        if has_body:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            first_body = message.get("body", b"")
            more_body = message.get("more_body", False)
        if chunked:
            first_body = (b"%x\r\n%s\r\n" % (len(first_body), first_body) if first_body else b"") + (
                b"" if more_body else b"0\r\n\r\n"
            )

        self._active.inc()
        conn: UpstreamConnection | None = None
        response_started = False
        status = 502
        bytes_out = 0
        try:
            upstream_started = time.perf_counter()
            for attempt in (0, 1):
                conn = await route.pool.acquire()
                conn.write(head + first_body if first_body else head)
                if more_body:
                    await self._stream_request(conn, receive, chunked)
                try:
                    await conn.read_head(self.idle_timeout)
                    break
                except UpstreamError:
                    # A pooled connection the upstream had closed: retry once on a fresh one.
                    if attempt == 0 and conn.reused and conn.bytes_received == 0 and not more_body:
                        conn.abort()
                        continue
                    raise
            assert conn is not None
            route.metrics["upstream"].observe(time.perf_counter() - upstream_started)
            status = conn.status
            is_head = method == "HEAD"
            if is_head and not conn.complete:
                conn.complete = True
                conn.closed = True  # the body length is unknown to the parser: do not reuse

            resp_headers = conn.headers
            if cached is not None and status == 304 and cache is not None:
                cache.refresh(cached, resp_headers)
                route.pool.release(conn)
                conn = None
                await self._serve_cached(send, common, cached, time.time(), raw_headers)
                status = cached.status
                return

            out_headers: list[tuple[bytes, bytes]] = []
            content_type = b""
            resp_length: int | None = None
            length_value: int | None
            set_cookies: list[bytes] = []
            for name, value in resp_headers:
                if name in _RESPONSE_HOP:
                    continue
                if name == b"content-type":
                    content_type = value
                elif name == b"content-length":
                    try:
                        length_value = int(value)
                    except ValueError:
                        length_value = None
                    resp_length = length_value
                elif name == b"set-cookie":
                    set_cookies.append(value)
                    if spec.strip_response_cookies:
                        continue
                    if rewriter is not None and spec.rewrite_cookie_paths:
                        value = rewriter.cookie_path(value)
                elif name in (b"x-api-version", b"x-request-id"):
                    continue
                out_headers.append((name, value))
            if rewriter is not None:
                out_headers = rewriter.headers(out_headers, host.decode("latin-1"), status)
            if cookie_store is not None and set_cookies:
                cookie_store.capture(device_id, spec.app_id, set_cookies)

            body_type: str | None = None
            if rewriter is not None and spec.rewrite_html and not is_head and 200 <= status < 300:
                body_type = body_kind(content_type, resp_length, upstream_path.decode("latin-1"))
            store_in_cache = (
                cache is not None and not is_head and resp_length is not None and resp_length <= 1 << 20
            )

            if body_type is not None or store_in_cache:
                body, overflow = await self._buffer(conn, MAX_REWRITE_BYTES if body_type else 1 << 20)
                if not overflow:
                    if body_type is not None:
                        encoding = _header(out_headers, b"content-encoding")
                        text = _decode(body, encoding, content_type)
                        if text is not None:
                            assert rewriter is not None
                            body = rewriter.body(body_type, text, upstream_path.decode("latin-1")).encode(
                                _charset(content_type)
                            )
                            out_headers = [
                                h
                                for h in out_headers
                                if h[0] not in (b"content-length", b"content-encoding", b"etag")
                            ]
                            out_headers.append((b"content-length", str(len(body)).encode()))
                    elif cache is not None:
                        cache.store(spec.route_id, target, upstream_headers, status, out_headers, body)
                        out_headers.append((b"x-cache", b"MISS"))
                    response_started = True
                    await send(
                        {"type": "http.response.start", "status": status, "headers": out_headers + common}
                    )
                    await send({"type": "http.response.body", "body": body})
                    bytes_out = len(body)
                    route.pool.release(conn)
                    conn = None
                    return
                # Too big to rewrite: pass through what was buffered, then stream the rest.
                response_started = True
                await send({"type": "http.response.start", "status": status, "headers": out_headers + common})
                await send({"type": "http.response.body", "body": body, "more_body": True})
                bytes_out = len(body)
                bytes_out += await self._stream_response(conn, receive, send)
                route.pool.release(conn)
                conn = None
                return

            first = conn.take_buffered()
            response_started = True
            start = {"type": "http.response.start", "status": status, "headers": out_headers + common}
            if conn.complete:
                await send(start)
                await send({"type": "http.response.body", "body": first})
                bytes_out = len(first)
            else:
                await send(start)
                if first:
                    await send({"type": "http.response.body", "body": first, "more_body": True})
                bytes_out = len(first) + await self._stream_response(conn, receive, send)
            if is_head:
                conn.close()
            else:
                route.pool.release(conn)
            conn = None
        except UpstreamError as exc:
            status = exc.status
            self.services.metrics.proxy_upstream_errors_total.labels(spec.app_id, exc.code.lower()).inc()
            if not response_started:
                log.info("upstream %s for %s: %s", exc.code, spec.route_id, exc)
                await _error(send, common, exc.status, exc.code, str(exc))
        except _ClientGone:
            status = 499
        except Exception:
            log.exception("proxying to %s failed (request %s)", spec.route_id, request_id.decode())
            if not response_started:
                status = 502
                await _error(send, common, 502, "BAD_GATEWAY", "Proxy error")
        finally:
            if conn is not None:
                conn.abort()
            self._active.dec()
            self._count(route, status)
            metrics = route.metrics
            metrics["duration"].observe(time.perf_counter() - started)
            if bytes_out:
                metrics["bytes_out"].inc(bytes_out)
            if content_length > 0:
                metrics["bytes_in"].inc(content_length)
            if access_log.isEnabledFor(logging.DEBUG):
                access_log.debug(
                    "%s %s %d",
                    method,
                    path,
                    status,
                    extra={"request_id": request_id.decode(), "client_ip": client_ip},
                )

    def _count(self, route: CompiledRoute, status: int) -> None:
        counter = route.status_counters.get(status)
        if counter is None:
            counter = route.status_counters[status] = self.services.metrics.proxy_requests_total.labels(
                route.spec.app_id, str(status)
            )
        counter.inc()

    async def _stream_request(self, conn: UpstreamConnection, receive: Any, chunked: bool) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            body = message.get("body", b"")
            more = message.get("more_body", False)
            if chunked:
                data = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + (
                    b"" if more else b"0\r\n\r\n"
                )
            else:
                data = body
            if data:
                conn.write(data)
                await conn.drain()
            if conn.error is not None:
                raise conn.error
            if not more:
                return

    async def _stream_response(self, conn: UpstreamConnection, receive: Any, send: Any) -> int:
        """Relay body chunks as they arrive (SSE, downloads); stop when the client goes away."""
        sent = 0
        watcher = asyncio.ensure_future(_wait_disconnect(receive))  # noqa: TID251 - cancelled in finally
        watcher.add_done_callback(lambda _f: conn.abort() if not conn.complete else None)
        try:
            while True:
                chunk = await conn.read_chunk(self.idle_timeout)
                if not chunk:
                    break
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                sent += len(chunk)
                if watcher.done() and not conn.complete:
                    raise _ClientGone
            await send({"type": "http.response.body", "body": b""})
        finally:
            if not watcher.done():
                watcher.cancel()
        return sent

    async def _buffer(self, conn: UpstreamConnection, limit: int) -> tuple[bytes, bool]:
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = await conn.read_chunk(self.idle_timeout)
            if not chunk:
                return b"".join(chunks), False
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                return b"".join(chunks), True

    async def _serve_cached(
        self,
        send: Any,
        common: list[tuple[bytes, bytes]],
        cached: Any,
        now: float,
        request_headers: list[tuple[bytes, bytes]],
    ) -> None:
        inm = _header(request_headers, b"if-none-match")
        headers = [*cached.headers, (b"age", str(cached.age(now)).encode()), (b"x-cache", b"HIT")]
        if inm and cached.etag and cached.etag in [v.strip() for v in inm.split(b",")]:
            headers = [h for h in headers if h[0] != b"content-length"]
            await _respond(send, 304, headers + common, b"")
            return
        await _respond(send, cached.status, headers + common, cached.body)

    def close(self) -> None:
        self.pools.close()


class Refused(Exception):
    """A proxied request is turned away before reaching the upstream."""

    def __init__(
        self, status: int, code: str, message: str, headers: list[tuple[bytes, bytes]] | None = None
    ):
        super().__init__(f"{status} {code}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or []


class _ClientGone(Exception):
    pass


async def _wait_disconnect(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _port_of(addr: str) -> int:
    try:
        return int(addr.rpartition(":")[2])
    except ValueError:
        return 0


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes:
    for key, value in headers:
        if key == name:
            return value
    return b""


def _charset(content_type: bytes) -> str:
    lowered = content_type.lower()
    idx = lowered.find(b"charset=")
    if idx >= 0:
        name = lowered[idx + 8 :].split(b";", 1)[0].strip().strip(b'"').decode("latin-1")
        try:
            "".encode(name)
            return name
        except LookupError:
            return "utf-8"
    return "utf-8"


def _decode(body: bytes, encoding: bytes, content_type: bytes) -> str | None:
    import zlib

    enc = encoding.strip().lower()
    try:
        if enc == b"gzip":
            body = zlib.decompress(body, 16 + zlib.MAX_WBITS)
        elif enc == b"deflate":
            body = zlib.decompress(body)
        elif enc not in (b"", b"identity"):
            return None
        return body.decode(_charset(content_type), errors="surrogateescape")
    except (zlib.error, UnicodeDecodeError, LookupError):
        return None


def _merge_cookies(headers: list[tuple[bytes, bytes]], stored: dict[str, str]) -> list[tuple[bytes, bytes]]:
    """Stored cookies fill in what the client did not send itself."""
    sent: set[str] = set()
    out = []
    existing = b""
    for name, value in headers:
        if name == b"cookie":
            existing = value if not existing else existing + b"; " + value
            continue
        out.append((name, value))
    for part in existing.decode("latin-1").split(";"):
        key = part.split("=", 1)[0].strip()
        if key:
            sent.add(key)
    extra = "; ".join(f"{k}={v}" for k, v in stored.items() if k not in sent)
    merged = existing.decode("latin-1")
    if extra:
        merged = f"{merged}; {extra}" if merged else extra
    if merged:
        out.append((b"cookie", merged.encode("latin-1")))
    return out


async def _respond(send: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _error(send: Any, common: list[tuple[bytes, bytes]], status: int, code: str, message: str) -> None:
    body = error_body(code, message)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *common,
    ]
    with contextlib.suppress(Exception):
        await _respond(send, status, headers, body)
