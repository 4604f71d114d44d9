"""The shared core of one running Nekzus: config, storage, bus, health, limiter, metrics, background
tasks and the start-up/shutdown lifecycle, plus the typed `Domains` the composition root builds.

Built once by the app factory; nothing lives in module globals. Domain services do not receive this
object: they get the narrow collaborators they use (see `nekzus.compose`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from starlette.types import Receive, Scope, Send

from nekzus.config import Config
from nekzus.events import EventBus
from nekzus.health import HealthRegistry
from nekzus.http.clientip import IPNetwork, parse_networks
from nekzus.http.ratelimit import RateLimiter
from nekzus.metrics import Metrics
from nekzus.store import Database
from nekzus.tasks import TaskSet
from nekzus.workers import WorkerInfo

if TYPE_CHECKING:
    from nekzus.domains import Domains
    from nekzus.proxy.direct import DirectAnswer

log = logging.getLogger("nekzus")

Hook = Callable[[], Awaitable[None]]


class ProxyDispatch(Protocol):
    """What the catalog's reverse proxy offers the outer ASGI app."""

    def handles(self, scope: Scope) -> bool: ...

    def direct(self, scope: Scope, answer: DirectAnswer) -> bool: ...

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None: ...


@dataclass
class Services:
    config: Config
    db: Database
    bus: EventBus
    health: HealthRegistry
    limiter: RateLimiter
    metrics: Metrics
    base_url: str
    tls_cert_path: Path | None = None
    tls_key_path: Path | None = None
    nexus_id: str = ""
    started_at: float = field(default_factory=time.time)
    trusted_proxies: tuple[IPNetwork, ...] = ()
    local_networks: tuple[IPNetwork, ...] = ()
    proxy: ProxyDispatch | None = None
    ready: bool = False
    # Set when `ready` first becomes true (and never cleared, so nothing waits during shutdown): lets a
    # worker hold early requests until it can serve them.
    became_ready: asyncio.Event = field(default_factory=asyncio.Event)
    capabilities: list[str] = field(default_factory=list)
    # The config file the server was started with (None in-process/tests): enables hot reload.
    config_path: str | None = None
    # Start-up hooks that raised: readiness stays false and /healthz names them.
    failed: list[str] = field(default_factory=list)
    # Which worker process this is (`server.workers`); start-up hooks marked leader-only in
    # `nekzus.workers.LEADER_ONLY` run in worker 0 alone.
    worker: WorkerInfo = field(default_factory=WorkerInfo)
    _domains: Domains | None = None
    _startup: list[tuple[str, Hook]] = field(default_factory=list)
    _shutdown: list[tuple[str, Hook]] = field(default_factory=list)
    _tasks: TaskSet = field(default_factory=TaskSet)

    @classmethod
    def build(
        cls,
        config: Config,
        *,
        base_url: str,
        tls_cert_path: Path | None = None,
        tls_key_path: Path | None = None,
        config_path: str | None = None,
    ) -> Services:
        return cls(
            config=config,
            db=Database(config.storage.database_path),
            bus=EventBus(),
            health=HealthRegistry(),
            limiter=RateLimiter(config.rate_limits, config.metrics.path),
            metrics=Metrics(),
            base_url=base_url,
            tls_cert_path=tls_cert_path,
            tls_key_path=tls_key_path,
            trusted_proxies=parse_networks(config.server.trusted_proxies),
            local_networks=parse_networks(config.auth.local_networks),
            config_path=config_path,
        )

    @property
    def domains(self) -> Domains:
        """The domain services; built by `nekzus.compose.build_domains` before any feature installs."""
        if self._domains is None:
            raise RuntimeError("domain services are not built yet (nekzus.compose.build_domains runs first)")
        return self._domains

    @domains.setter
    def domains(self, value: Domains) -> None:
        self._domains = value

    @property
    def data_dir(self) -> Path:
        return Path(self.config.data_dir)

    def on_startup(self, name: str, hook: Hook) -> None:
        """Run after storage is ready, in registration order."""
        self._startup.append((name, hook))

    def on_shutdown(self, name: str, hook: Hook) -> None:
        """Run at shutdown, in reverse registration order, before the database closes."""
        self._shutdown.append((name, hook))

    def spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        """Start a background task that is kept referenced and cancelled at shutdown."""
        return self._tasks.spawn(coro, name)

    async def start(self) -> None:
        """Open storage (retrying while it is unavailable), then start every feature."""
        delay = 0.5
        while True:
            try:
                await self.db.open()
                break
            except Exception as exc:
                log.warning("storage unavailable (%s); retrying in %.1fs", type(exc).__name__, delay)
                await self.db.close()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.nexus_id = await self._instance_id()
        for name, hook in self._startup:
            if not self.worker.runs(name):
                continue
            try:
                await hook()
            except Exception:
                log.exception("start-up of %s failed", name)
                self.failed.append(name)
        if self.failed:
            log.error("Nekzus is not ready: start-up failed for %s", ", ".join(self.failed))
            return
        self.ready = True
        self.became_ready.set()
        log.info("Nekzus ready (nexusId %s)", self.nexus_id)

    async def _instance_id(self) -> str:
        existing = await self.db.get_setting("nexus_id")
        if existing:
            return existing
        value = "nexus_" + secrets.token_hex(6)
        await self.db.set_setting("nexus_id", value)
        return value

    async def stop(self) -> None:
        self.ready = False
        for name, hook in reversed(self._shutdown):
            try:
                await asyncio.wait_for(hook(), 3.0)
            except Exception:
                log.warning("shutdown of %s did not finish cleanly", name, exc_info=True)
        await self._tasks.cancel_all(2.0)
        await self.db.close()
