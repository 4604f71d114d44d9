"""Component health checks behind /healthz: each feature registers one async check."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"


@dataclass(slots=True)
class ComponentHealth:
    status: Status
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    last_checked: float = 0.0
    duration_ms: float = 0.0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": self.status.value,
            "lastChecked": datetime.fromtimestamp(self.last_checked, UTC).isoformat().replace("+00:00", "Z"),
            "durationMs": round(self.duration_ms, 2),
        }
        if self.message:
            out["message"] = self.message
        if self.details:
            out["details"] = self.details
        return out


Check = Callable[[], Awaitable[ComponentHealth]]

CHECK_TIMEOUT = 5.0
CACHE_SECONDS = 5.0


class HealthRegistry:
    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}
        self._cache: dict[str, ComponentHealth] = {}
        self._on_result: list[Callable[[str, ComponentHealth], None]] = []

    def register(self, name: str, check: Check) -> None:
        self._checks[name] = check

    def on_result(self, callback: Callable[[str, ComponentHealth], None]) -> None:
        self._on_result.append(callback)

    async def _run(self, name: str, check: Check) -> ComponentHealth:
        cached = self._cache.get(name)
        now = time.time()
        if cached and cached.status == Status.HEALTHY and now - cached.last_checked < CACHE_SECONDS:
            return cached
        started = time.perf_counter()
        try:
            result = await asyncio.wait_for(check(), CHECK_TIMEOUT)
        except TimeoutError:
            result = ComponentHealth(Status.UNHEALTHY, "health check timed out")
        except Exception as exc:
            result = ComponentHealth(Status.UNHEALTHY, f"health check failed: {type(exc).__name__}")
        result.last_checked = now
        result.duration_ms = (time.perf_counter() - started) * 1000
        self._cache[name] = result
        for callback in self._on_result:
            callback(name, result)
        return result

    async def check_all(self) -> tuple[Status, dict[str, ComponentHealth]]:
        names = sorted(self._checks)
        results = await asyncio.gather(*(self._run(n, self._checks[n]) for n in names))
        components = dict(zip(names, results, strict=True))
        statuses = {r.status for r in results}
        if Status.UNHEALTHY in statuses or Status.UNKNOWN in statuses:
            overall = Status.UNHEALTHY
        elif Status.DEGRADED in statuses:
            overall = Status.DEGRADED
        else:
            overall = Status.HEALTHY
        return overall, components
