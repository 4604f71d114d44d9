"""The proxy's route table: catalog routes compiled once (pool, prefixes, metrics) for the hot path."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nekzus.catalog.spec import RouteSpec
from nekzus.proxy.rewrite import Rewriter
from nekzus.proxy.upstream import UpstreamPool


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

    def routes(self) -> list[CompiledRoute]:
        return [*self.by_path.values(), *self.by_subdomain.values()]

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
