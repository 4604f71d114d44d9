"""Opt-in response cache for routes with `cache: true` (response caching is configurable per route).

Shared-cache rules (RFC 9111), deliberately conservative: only GET, only explicit freshness
(`s-maxage`/`max-age`/`Expires`), never `no-store`/`private`/`no-cache` responses, never responses
that set cookies or ask for credentials, never requests that carried cookies upstream. `Vary` selects
the variant; stale entries with validators are revalidated with `If-None-Match`/`If-Modified-Since`.
Storage is a `cachetools` LRU bounded by total bytes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from cachetools import LRUCache

MAX_ENTRY_BYTES = 1024 * 1024
MAX_TOTAL_BYTES = 64 * 1024 * 1024
CACHEABLE_STATUS = frozenset({200, 203, 204, 300, 301, 404, 405, 410, 414, 501})


@dataclass(slots=True)
class CachedResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    stored_at: float
    ttl: float
    vary: tuple[tuple[bytes, bytes], ...]
    etag: bytes
    last_modified: bytes

    def fresh(self, now: float) -> bool:
        return now - self.stored_at < self.ttl

    def age(self, now: float) -> int:
        return int(now - self.stored_at)


def _directives(value: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in value.decode("latin-1").split(","):
        name, _, arg = part.strip().partition("=")
        if name:
            out[name.lower()] = arg.strip().strip('"')
    return out


def freshness(headers: list[tuple[bytes, bytes]]) -> float | None:
    """Seconds the response may be served from a shared cache, or None if it must not be stored."""
    cc: dict[str, str] = {}
    expires = date = None
    for name, value in headers:
        if name == b"cache-control":
            cc.update(_directives(value))
        elif name == b"set-cookie" or name == b"www-authenticate":
            return None
        elif name == b"expires":
            expires = value
        elif name == b"date":
            date = value
        elif name == b"vary" and value.strip() == b"*":
            return None
    if {"no-store", "private", "no-cache"} & cc.keys():
        return None
    for key in ("s-maxage", "max-age"):
        if key in cc:
            try:
                return max(0.0, float(int(cc[key])))
            except ValueError:
                return None
    if expires is not None:
        try:
            exp = parsedate_to_datetime(expires.decode("latin-1")).timestamp()
            base = parsedate_to_datetime(date.decode("latin-1")).timestamp() if date else time.time()
            return max(0.0, exp - base)
        except (TypeError, ValueError):
            return None
    return None


class ResponseCache:
    def __init__(self, max_bytes: int = MAX_TOTAL_BYTES) -> None:
        self._store: LRUCache[tuple[str, bytes], list[CachedResponse]] = LRUCache(
            maxsize=max_bytes, getsizeof=lambda variants: sum(len(v.body) + 512 for v in variants)
        )

    @staticmethod
    def request_allows(method: str, headers: list[tuple[bytes, bytes]]) -> bool:
        if method != "GET":
            return False
        for name, value in headers:
            if name == b"cookie":
                return False
            if name == b"cache-control" and b"no-store" in value.lower():
                return False
        return True

    def lookup(
        self, route_id: str, target: bytes, req_headers: list[tuple[bytes, bytes]]
    ) -> CachedResponse | None:
        variants = self._store.get((route_id, target))
        if not variants:
            return None
        for entry in variants:
            if all(_header(req_headers, name) == value for name, value in entry.vary):
                return entry
        return None

    def store(
        self,
        route_id: str,
        target: bytes,
        req_headers: list[tuple[bytes, bytes]],
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> bool:
        if status not in CACHEABLE_STATUS or len(body) > MAX_ENTRY_BYTES:
            return False
        ttl = freshness(headers)
        if ttl is None:
            return False
        has_validator = any(n in (b"etag", b"last-modified") for n, _ in headers)
        if ttl <= 0 and not has_validator:
            return False
        vary_names: list[bytes] = []
        for name, value in headers:
            if name == b"vary":
                vary_names += [v.strip().lower() for v in value.split(b",") if v.strip()]
        vary = tuple((n, _header(req_headers, n)) for n in vary_names)
        entry = CachedResponse(
            status,
            [h for h in headers if h[0] not in (b"date", b"age")],
            body,
            time.time(),
            ttl,
            vary,
            _header(headers, b"etag"),
            _header(headers, b"last-modified"),
        )
        key = (route_id, target)
        variants = [v for v in self._store.get(key, []) if v.vary != vary]
        variants.append(entry)
        try:
            self._store[key] = variants[-8:]
        except ValueError:
            return False
        return True

    def refresh(self, entry: CachedResponse, headers: list[tuple[bytes, bytes]]) -> None:
        """A 304 from upstream: the stored body is good for another freshness lifetime."""
        ttl = freshness(headers)
        entry.stored_at = time.time()
        if ttl is not None:
            entry.ttl = ttl

    def evict_route(self, route_id: str) -> None:
        for key in [k for k in self._store if k[0] == route_id]:
            self._store.pop(key, None)

    def clear(self) -> None:
        self._store.clear()


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes:
    for key, value in headers:
        if key == name:
            return value
    return b""
