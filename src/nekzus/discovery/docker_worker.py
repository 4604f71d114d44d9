"""Docker discovery: reacts to the daemon's event stream, with a periodic full resync.

A daemon that goes away is retried with backoff (health component `discovery` says degraded meanwhile);
a bad container never stops the worker. In `published` network mode every target and every probe is
the host-published port on 127.0.0.1 (a container's bridge address is unreachable from other hosts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

import aiohttp

from nekzus.config.model import DockerDiscoveryConfig
from nekzus.discovery.labels import PortCandidate, build_proposal, plan_container, skip_reason
from nekzus.discovery.manager import DiscoveryManager
from nekzus.discovery.models import Source
from nekzus.events.bus import EventBus
from nekzus.events.types import EventType
from nekzus.metrics import Metrics
from nekzus.runtime.base import RuntimeErrorBase, RuntimeUnavailable

if TYPE_CHECKING:
    from nekzus.runtime.docker import DockerRuntime
    from nekzus.runtime.manager import RuntimeManager

log = logging.getLogger("nekzus.discovery.docker")

DEBOUNCE_SECONDS = 30.0
PROBE_TIMEOUT = 2.0
_REFRESH = {"start", "unpause", "restart", "health_status", "rename", "update"}
_GONE = {"die", "stop", "kill", "destroy", "pause", "oom"}


class DockerWorker:
    name = Source.DOCKER

    def __init__(
        self,
        config: DockerDiscoveryConfig,
        manager: DiscoveryManager,
        runtime: DockerRuntime,
        runtimes: RuntimeManager,
        *,
        bus: EventBus,
        metrics: Metrics,
    ) -> None:
        self.bus = bus
        self.metrics = metrics
        self.manager = manager
        self.runtime = runtime
        self.runtimes = runtimes  # for self-detection
        cfg = config
        self.mode = cfg.network_mode
        self.networks = list(cfg.networks)
        self.exclude = list(cfg.exclude_networks)
        self.poll_interval = max(float(cfg.poll_interval), 1.0)
        self.healthy = False
        self.last_error = ""
        self._kick = asyncio.Event()
        self._debounce: dict[str, tuple[tuple[Any, ...], float]] = {}
        self._warned: dict[str, tuple[str, ...]] = {}
        self._warned_daemon = False
        self._session: aiohttp.ClientSession | None = None

    def kick(self) -> None:
        """Rescan now (rediscover), forgetting the debounce memory."""
        self._debounce.clear()
        self._kick.set()

    async def run(self) -> None:
        self.metrics.discovery_workers_active.inc()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._events_loop())
                group.create_task(self._resync_loop())
        finally:
            self.metrics.discovery_workers_active.dec()
            if self._session is not None:
                await self._session.close()

    # -- loops -------------------------------------------------------------------------------------

    async def _resync_loop(self) -> None:
        while True:
            try:
                await self.resync()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("docker discovery scan failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self.poll_interval)
            self._kick.clear()

    async def _events_loop(self) -> None:
        delay = 1.0
        while True:
            try:
                async for event in self.runtime.events():
                    delay = 1.0
                    await self._on_event(event)
            except asyncio.CancelledError:
                raise
            except RuntimeErrorBase as exc:
                self._unavailable(exc)
            except Exception:
                log.exception("docker event stream failed")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
            self._kick.set()  # resync after reconnecting: events may have been missed

    async def _on_event(self, event: Any) -> None:
        if not event.container_id:
            return
        try:
            if event.action in _GONE:
                await self.manager.forget_container(event.container_id)
            elif event.action in _REFRESH:
                await self.handle(event.container_id)
        except Exception:
            log.warning("discovery of container %s failed", event.container_id[:12], exc_info=True)

    # -- scanning ----------------------------------------------------------------------------------

    async def resync(self) -> None:
        started = time.perf_counter()
        metrics = self.metrics
        try:
            containers = await self.runtime.list(all=False)
        except RuntimeErrorBase as exc:
            metrics.discovery_scans_total.labels("docker", "error").inc()
            self._unavailable(exc)
            return
        self.healthy, self.last_error, self._warned_daemon = True, "", False
        live = {c.full_id or c.id for c in containers if c.state == "running"}
        for container_id in sorted(live):
            try:
                await self.handle(container_id)
            except RuntimeUnavailable as exc:
                self._unavailable(exc)
                return
            except Exception:
                log.warning("discovery of container %s failed", container_id[:12], exc_info=True)
        await self.manager.prune(Source.DOCKER, live)
        metrics.discovery_scans_total.labels("docker", "success").inc()
        metrics.discovery_scan_duration_seconds.labels("docker").observe(time.perf_counter() - started)

    def _unavailable(self, exc: Exception) -> None:
        self.healthy = False
        self.last_error = str(getattr(exc, "message", exc))
        if not self._warned_daemon:
            self._warned_daemon = True
            log.warning("Docker discovery: daemon unavailable (%s); retrying", self.last_error)
            self.bus.emit(
                EventType.CONFIG_WARNING,
                {"warning": f"Docker Discovery - Docker daemon unavailable: {self.last_error}"},
            )

    async def handle(self, container_id: str) -> str:
        """Inspect one container and submit its proposal; returns the outcome (for logs/tests)."""
        try:
            info = await self.runtime.inspect(container_id)
        except RuntimeErrorBase as exc:
            if exc.code == "CONTAINER_NOT_FOUND":
                await self.manager.forget_container(container_id)
                return "gone"
            raise
        name = str(info.get("Name", "")).lstrip("/")
        reason = skip_reason(info, self.runtimes.is_self(str(info.get("Id", "")), name))
        if reason is not None:
            return f"skipped: {reason}"
        plan = plan_container(info, mode=self.mode, networks=self.networks, exclude_networks=self.exclude)
        if plan is None:
            return "skipped: no reachable port"
        ports = plan.candidates
        if plan.probe:
            ports = [p for p in ports if await self._probe(plan.host, p)]
        if not ports:
            return "skipped: no HTTP port"
        proposal = build_proposal(plan, ports)
        self._report_warnings(plan.container_id, name, proposal.warnings)
        fingerprint = (proposal.route.target, tuple(p.port for p in proposal.ports))
        seen = self._debounce.get(proposal.id)
        now = time.monotonic()
        if seen is not None and seen[0] == fingerprint and now - seen[1] < DEBOUNCE_SECONDS:
            return "debounced"
        self._debounce[proposal.id] = (fingerprint, now)
        return await self.manager.submit(proposal)

    def _report_warnings(self, container_id: str, name: str, warnings: tuple[str, ...]) -> None:
        key = warnings
        if not warnings or self._warned.get(container_id) == key:
            return
        self._warned[container_id] = key
        for warning in warnings:
            log.warning("container %s: %s", name or container_id[:12], warning)

    async def _probe(self, host: str, port: PortCandidate) -> bool:
        """Any HTTP answer to `HEAD /` within 2 s means an HTTP port."""
        if self.mode == "published" and host != "127.0.0.1":
            return False  # never probe anything but loopback in published mode
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT),
                headers={"User-Agent": "nekzus-probe/1.0"},
            )
        url = f"{port.scheme}://{host}:{port.port}/"
        try:
            async with self._session.head(url, allow_redirects=False, ssl=False) as response:
                return response.status > 0
        except aiohttp.ClientResponseError:
            return True  # an HTTP status line came back (e.g. busybox httpd sends a body with HEAD)
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False
