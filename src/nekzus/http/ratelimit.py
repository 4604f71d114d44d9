"""Token-bucket rate limiting per category, keyed by principal or client IP."""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nekzus.config.model import RateLimit, RateLimitsConfig
from nekzus.http.errors import error_body

MAX_KEYS = 10_000
IDLE_SECONDS = 300.0

# A function that names the caller for rate limiting (e.g. "device:abc"), or None for "use the IP".
Identify = Callable[[Scope], "str | None"]


class SharedTable(Protocol):
    """Buckets kept in memory shared by every worker process (`nekzus.workers.shared.SharedBuckets`)."""

    def take(self, key: str, rate: float, burst: int, now: float, idle: float) -> tuple[bool, float]: ...


@dataclass(slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset: int
    retry_after: int

    def headers(self) -> list[tuple[bytes, bytes]]:
        values = [
            (b"limit", str(self.limit).encode()),
            (b"remaining", str(self.remaining).encode()),
            (b"reset", str(self.reset).encode()),
        ]
        out = [(b"x-ratelimit-" + k, v) for k, v in values] + [(b"ratelimit-" + k, v) for k, v in values]
        if not self.allowed:
            out.append((b"retry-after", str(self.retry_after).encode()))
        return out


class Bucket:
    """One category's buckets: refill `rate` tokens per second up to `burst`."""

    def __init__(
        self,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        shared: SharedTable | None = None,
        name: str = "",
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._state: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._calls = 0
        # With several worker processes the buckets live in shared memory (CLOCK_MONOTONIC is
        # system-wide, so every worker refills them alike); `name` keeps categories apart there.
        self.shared = shared
        self.name = name

    def take(self, key: str) -> Decision:
        now = self._clock()
        if self.shared is not None:
            shared_key = f"{self.name}\0{key}"
            allowed, tokens = self.shared.take(shared_key, self.rate, self.burst, now, IDLE_SECONDS)
        else:
            tokens, last = self._state.pop(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._state[key] = (tokens, now)
            self._calls += 1
            if self._calls % 256 == 0 or len(self._state) > MAX_KEYS:
                self._prune(now)
        wall = time.time()
        missing = self.burst - tokens
        reset = math.ceil(wall + missing / self.rate)
        retry_after = 0 if allowed else max(1, math.ceil((1.0 - tokens) / self.rate))
        return Decision(allowed, self.burst, max(0, int(tokens)), reset, retry_after)

    def _prune(self, now: float) -> None:
        for key in [k for k, (_, last) in self._state.items() if now - last > IDLE_SECONDS]:
            del self._state[key]
        while len(self._state) > MAX_KEYS:
            self._state.popitem(last=False)

    def reset(self) -> None:
        self._state.clear()


def _build(limit: RateLimit, shared: SharedTable | None = None, name: str = "") -> Bucket | None:
    return Bucket(limit.rate, limit.burst, shared=shared, name=name) if limit.enabled else None


class RateLimiter:
    """All categories of the API's rate-limit table; `classify` maps a request onto one of them."""

    CATEGORIES = ("health", "auth", "qr", "websocket", "device", "container", "general", "metrics", "proxy")

    def __init__(self, config: RateLimitsConfig, metrics_path: str = "/metrics") -> None:
        self.config = config
        self.enabled = config.enabled
        self.metrics_path = metrics_path
        self.buckets: dict[str, Bucket | None] = {
            name: _build(getattr(config, name)) for name in self.CATEGORIES
        }
        self.identify: Identify | None = None
        self.rejections: Callable[[str], None] | None = None
        self.shared: SharedTable | None = None

    def share(self, table: SharedTable) -> None:
        """Keep every category's buckets in `table`, shared by the worker processes."""
        self.shared = table
        self.buckets = {name: _build(getattr(self.config, name), table, name) for name in self.CATEGORIES}

    def reconfigure(self, config: RateLimitsConfig) -> list[str]:
        """Apply new limits (config reload): rebuild the buckets of the categories that changed."""
        changed = [n for n in self.CATEGORIES if getattr(config, n) != getattr(self.config, n)]
        for name in changed:
            self.buckets[name] = _build(getattr(config, name), self.shared, name)
        self.config = config
        self.enabled = config.enabled
        return changed

    def classify(self, method: str, path: str, scope_type: str = "http") -> str | None:
        if path in ("/healthz", "/livez", "/readyz", "/api/v1/healthz") or path.startswith(
            "/api/v1/services/"
        ):
            return "health"
        if path == self.metrics_path:
            return "metrics"
        if path.startswith("/apps/"):
            return "proxy"
        if not path.startswith("/api/"):
            return "qr" if path == "/pair" else None
        if path == "/api/v1/ws":
            return "websocket"
        if path == "/api/v1/auth/qr":
            return "qr"
        if path.startswith("/api/v1/auth/") and not path.startswith("/api/v1/auth/qr/"):
            return "auth"
        if path in ("/api/v1/pair", "/api/v1/ui/login"):
            return "auth"
        if path.startswith(("/api/v1/devices", "/api/v1/admin/devices")) or path == "/api/v1/audit-logs":
            return "device"
        if path.startswith("/api/v1/containers") or path in (
            "/api/v1/system/resources",
            "/api/v1/stats/quick",
        ):
            return "container"
        if path.startswith("/api/docs") or path == "/api/v1/openapi.json":
            return None
        return "general"

    def check(self, category: str, key: str) -> Decision | None:
        if not self.enabled:
            return None
        bucket = self.buckets.get(category)
        if bucket is None:
            return None
        decision = bucket.take(f"{key}")
        if not decision.allowed and self.rejections is not None:
            self.rejections(category)
        return decision

    def key_for(self, scope: Scope, client_ip: str) -> str:
        if self.identify is not None:
            principal = self.identify(scope)
            if principal:
                return principal
        return address_key(client_ip)


def address_key(client_ip: str) -> str:
    """The bucket of an unauthenticated caller: its IPv4 address, or its IPv6 /64 (one host usually
    holds a whole /64, and could otherwise rotate through 2^64 buckets)."""
    try:
        ip = ipaddress.ip_address(client_ip)
    except ValueError:
        return f"ip:{client_ip}"
    if ip.version == 6:
        return f"ip:{ipaddress.ip_network(f'{ip}/64', strict=False)}"
    return f"ip:{ip}"


class RateLimitMiddleware:
    """Applies the limiter to HTTP and WebSocket requests and adds the headers to limited responses."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self.limiter.enabled:
            await self.app(scope, receive, send)
            return
        category = self.limiter.classify(scope.get("method", "GET"), scope["path"], scope["type"])
        if category is None:
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        client_ip = state.get("client_ip") or (scope.get("client") or ("unknown",))[0]
        decision = self.limiter.check(category, self.limiter.key_for(scope, client_ip))
        if decision is None:
            await self.app(scope, receive, send)
            return
        headers = decision.headers()
        if not decision.allowed:
            await self._reject(scope, send, headers)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *headers]}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _reject(self, scope: Scope, send: Send, headers: list[tuple[bytes, bytes]]) -> None:
        body = error_body("RATE_LIMIT_EXCEEDED", "Rate limit exceeded, please slow down")
        raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
        if scope["type"] == "websocket":
            if "websocket.http.response" in scope.get("extensions", {}):
                await send({"type": "websocket.http.response.start", "status": 429, "headers": raw})
                await send({"type": "websocket.http.response.body", "body": body})
            else:
                await send({"type": "websocket.close", "code": 1008, "reason": "rate limit exceeded"})
            return
        await send({"type": "http.response.start", "status": 429, "headers": raw})
        await send({"type": "http.response.body", "body": body})
