"""Service health checks: each route on its own interval, bounded concurrency, a failure threshold.

Precedence for path/timeout/interval: route → `health_checks.per_service[appId]` → global. The route
target's own path is kept (the check path is joined to it). HTTPS upstreams honour the route's
`tlsSkipVerify`. Every status change publishes `health_change`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin, urlsplit

from nekzus.catalog.service import CatalogService, HealthState
from nekzus.catalog.spec import RouteSpec, format_duration
from nekzus.config import Config
from nekzus.config.model import HealthChecksConfig
from nekzus.health import ComponentHealth, Status
from nekzus.metrics import Metrics
from nekzus.tasks import Spawn, cancel_and_wait

log = logging.getLogger("nekzus.catalog.health")

DEFAULT_CODES = tuple(range(200, 300))


MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port


class ServiceHealthChecker:
    def __init__(
        self,
        config: HealthChecksConfig,
        catalog: CatalogService,
        *,
        metrics: Metrics,
        spawn: Spawn,
        is_ready: Callable[[], bool],
    ) -> None:
        self.catalog = catalog
        self.metrics = metrics
        self.spawn = spawn
        self.is_ready = is_ready
        self.config = config
        self._due: dict[str, float] = {}
        self._running: set[str] = set()
        self._wake = asyncio.Event()
        self._sem = asyncio.Semaphore(self.config.max_concurrency)
        self._session: Any = None
        self._task: asyncio.Task[Any] | None = None
        self._listening = False

    # -- effective settings -------------------------------------------------------------------------

    def settings(self, route: RouteSpec) -> tuple[str, float, float, tuple[int, ...], str]:
        cfg = self.config
        per = cfg.per_service.get(route.app_id)
        source = "global"
        path, timeout, interval = cfg.path or "/", cfg.timeout, cfg.interval
        if per is not None:
            if per.path:
                path, source = per.path, "per-service"
            if per.timeout:
                timeout, source = per.timeout, "per-service"
            if per.interval:
                interval, source = per.interval, "per-service"
        if route.health_check_path:
            path, source = route.health_check_path, "route"
        if route.health_check_timeout:
            timeout, source = route.health_check_timeout, "route"
        if route.health_check_interval:
            interval, source = route.health_check_interval, "route"
        codes = tuple(route.expected_status_codes) or DEFAULT_CODES
        return path, timeout, max(interval, 0.2), codes, source

    def probe_url(self, route: RouteSpec, path: str) -> str:
        return route.to.rstrip("/") + (path if path.startswith("/") else "/" + path)

    def describe(self, route: RouteSpec) -> dict[str, Any]:
        path, timeout, interval, codes, source = self.settings(route)
        return {
            "probeUrl": self.probe_url(route, path),
            "effectivePath": path,
            "effectiveTimeout": format_duration(timeout),
            "effectiveInterval": format_duration(interval),
            "effectiveCodes": list(codes) if codes != DEFAULT_CODES else [200, 201, 202, 203, 204, 205, 206],
            "configSource": source,
        }

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> None:
        if not self.config.enabled:
            return
        self._listening = True
        self.catalog.on_change(self._wake.set)
        self._task = self.spawn(self._run(), "service-health-checker")

    def reconfigure(self, _old: Config, new: Config) -> None:
        """Reload hook: apply new `health_checks` settings; every app is rescheduled at once."""
        config = new.health_checks
        old, self.config = self.config, config
        if config == old:
            return
        if config.max_concurrency != old.max_concurrency:
            self._sem = asyncio.Semaphore(config.max_concurrency)
        self._due.clear()
        running = self._task is not None and not self._task.done()
        if config.enabled and not running:
            if not self._listening:
                self._listening = True
                self.catalog.on_change(self._wake.set)
            self._task = self.spawn(self._run(), "service-health-checker")
        elif not config.enabled and running and self._task is not None:
            self._task.cancel()
            self._task = None
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
        if self._session is not None:
            await self._session.close()

    async def component_health(self) -> ComponentHealth:
        counts = {"healthy": 0, "unhealthy": 0, "unknown": 0}
        for app_id in {e.spec.app_id for e in self.catalog.routes.values()}:
            state = self.catalog.health.get(app_id)
            counts[state.status if state and state.status in counts else "unknown"] += 1
        if not self.config.enabled:
            return ComponentHealth(Status.HEALTHY, "service health checks disabled", counts)
        if self._task is None or self._task.done():
            return ComponentHealth(
                Status.UNKNOWN if not self.is_ready() else Status.UNHEALTHY,
                "service health checker not running",
                counts,
            )
        if counts["unhealthy"]:
            return ComponentHealth(Status.DEGRADED, f"{counts['unhealthy']} service(s) unhealthy", counts)
        return ComponentHealth(Status.HEALTHY, "service health checker running", counts)

    # -- scheduling ---------------------------------------------------------------------------------

    def _client(self) -> Any:
        """The probes' HTTP session, made at the first probe: a gateway with no routes never loads
        aiohttp (~1 s of start-up and several MB). Kept when a config reload restarts the checker."""
        if self._session is None:
            import aiohttp

            self._session = aiohttp.ClientSession(
                headers={"User-Agent": "Nekzus-HealthCheck/1.0"},
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            now = loop.time()
            routes: dict[str, RouteSpec] = {}
            for spec in self.catalog.sorted_routes():
                routes.setdefault(spec.app_id, spec)
            for app_id in [a for a in self._due if a not in routes]:
                del self._due[app_id]
            next_due = now + 60.0
            for app_id, spec in routes.items():
                due = self._due.setdefault(app_id, now)
                if due <= now and app_id not in self._running:
                    interval = self.settings(spec)[2]
                    self._due[app_id] = now + interval
                    self._running.add(app_id)
                    self.spawn(self._check(app_id, spec), f"health-check-{app_id}")
                    due = now + interval
                next_due = min(next_due, due)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.05, next_due - loop.time()))

    async def _check(self, app_id: str, spec: RouteSpec) -> None:
        try:
            async with self._sem:
                await self.check_once(app_id, spec)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("health check of %s failed unexpectedly", app_id)
        finally:
            self._running.discard(app_id)

    async def _probe(self, url: str, verify: bool) -> int:
        """GET the probe URL; redirects are followed only within the upstream's own origin.

        Following a redirect to another host would let whoever controls the upstream make Nekzus probe
        arbitrary addresses and read the outcome from the route's health.
        """
        origin = _origin(url)
        for _hop in range(MAX_REDIRECTS + 1):
            async with self._client().get(url, ssl=verify, allow_redirects=False) as resp:
                code: int = resp.status
                location = resp.headers.get("Location")
                await resp.content.readany()
            if code not in _REDIRECTS or not location:
                return code
            target = urljoin(url, location)
            if _origin(target) != origin:
                return code
            url = target
        return code

    async def check_once(self, app_id: str, spec: RouteSpec) -> HealthState:
        import aiohttp

        previous = self.catalog.health.get(app_id)
        prev_status = previous.status if previous else "unknown"
        metrics = self.metrics
        now = time.time()
        if spec.skip_health_check:
            state = HealthState(
                status="healthy", message="health check skipped", last_check=now, last_success=now
            )
            self.catalog.set_health(app_id, state, announce_from=prev_status)
            return state
        path, timeout, _interval, codes, _source = self.settings(spec)
        url = self.probe_url(spec, path)
        started = time.perf_counter()
        code: int | None = None
        error = ""
        try:
            async with asyncio.timeout(timeout):
                code = await self._probe(url, not spec.tls_skip_verify)
            ok = code in codes
            if not ok:
                error = f"HTTP {code}"
        except TimeoutError:
            ok, error = False, f"request timed out after {format_duration(timeout)}"
        except aiohttp.ClientError as exc:
            ok, error = False, f"request failed: {type(exc).__name__}"
        except Exception as exc:  # bad URL and friends: the check fails, the checker goes on
            ok, error = False, f"request failed: {type(exc).__name__}"
        elapsed = time.perf_counter() - started
        metrics.service_health_check_duration_seconds.labels(app_id).observe(elapsed)
        metrics.service_health_checks_total.labels(app_id, "success" if ok else "failure").inc()
        failures = 0 if ok else (previous.consecutive_failures if previous else 0) + 1
        if ok:
            status, message = "healthy", ""
        elif failures >= self.config.unhealthy_threshold:
            status, message = "unhealthy", error
        else:
            status, message = prev_status, error
        state = HealthState(
            status=status,
            message=message,
            last_check=now,
            last_success=now if ok else (previous.last_success if previous else None),
            consecutive_failures=failures,
            response_time_ms=elapsed * 1000,
            status_code=code,
        )
        self.catalog.set_health(app_id, state, announce_from=prev_status)
        return state
