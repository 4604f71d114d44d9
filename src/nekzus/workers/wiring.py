"""Join one worker's app to the shared state: mirrors that follow the shared counters, the shared
rate-limit table and the event relay. Called by the server for every worker of a multi-worker run."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.types import Receive, Scope, Send

from nekzus.api.certificates import CERTIFICATES as CERTIFICATE_SERVICE
from nekzus.app import ALWAYS_AVAILABLE
from nekzus.jobs import JOBS
from nekzus.ui.sessions import UI_SESSIONS
from nekzus.workers import WorkerInfo
from nekzus.workers.relay import READY, Relay
from nekzus.workers.shared import AUTH, CATALOG, CERTIFICATES, CONFIG, Mirrors

if TYPE_CHECKING:
    from nekzus.app import NekzusApp
    from nekzus.config import Config
    from nekzus.proxy.direct import DirectAnswer

log = logging.getLogger("nekzus.workers")

# How long a worker that is still starting holds a request before letting the readiness gate answer it
# (503, or a WebSocket close). The listening socket is shared, so a worker that was just (re)started
# accepts connections while its siblings already serve: its first clients wait a moment instead of failing.
READY_WAIT_SECONDS = 15.0


class WorkerGate:
    """The ASGI app a worker serves: bring the mirrors up to date (when another worker changed
    something), then hand the request to Nekzus. The common case is one comparison of two integers."""

    def __init__(self, app: NekzusApp, mirrors: Mirrors) -> None:
        self.app = app
        self.mirrors = mirrors
        self.services = app.services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        services = self.services
        if not services.ready and scope["type"] != "lifespan" and scope["path"] not in ALWAYS_AVAILABLE:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(services.became_ready.wait(), READY_WAIT_SECONDS)
        if self.mirrors.stale() and services.ready:
            await self.mirrors.current()
        await self.app(scope, receive, send)

    def direct(self, scope: Scope, answer: DirectAnswer) -> bool:
        """The direct claim (see `NekzusApp.direct`), only while this worker's mirrors are current: a
        change another worker made (a revocation) is applied on the ASGI path first."""
        if self.mirrors.stale():
            return False
        return self.app.direct(scope, answer)


def join(app: NekzusApp, info: WorkerInfo, on_failed: Callable[[], None] | None = None) -> WorkerGate:
    """Wire `app` into the worker set. `on_failed` is called when a start-up hook failed: the server then
    stops this worker, and the supervisor forks it again (with its back-off) instead of keeping a worker
    that stays not-ready forever."""
    services = app.services
    assert info.shared is not None
    services.worker = info
    domains = services.domains
    mirrors = Mirrors(info.shared.generations)

    auth = domains.auth
    auth.changed = lambda: mirrors.changed(AUTH)
    auth.setup_seed = info.setup_token
    auth.announce_setup = info.leader
    mirrors.register(AUTH, auth.resync)
    catalog = domains.catalog
    catalog.changed = lambda: mirrors.changed(CATALOG)
    mirrors.register(CATALOG, catalog.resync)
    reloader = domains.reloader
    if reloader is not None:

        def config_changed(_old: Config, _new: Config) -> None:
            mirrors.changed(CONFIG)

        reloader.on_reload("workers", config_changed)

        # The leader already merged the file's apps and routes into the catalog (and counted it), and
        # only it runs the service health checker.
        skip = frozenset({"catalog", "workers"} | (set() if info.leader else {"health_checks"}))

        async def follow_config() -> None:
            await reloader.follow(skip=skip)

        mirrors.register(CONFIG, follow_config)

    certificates = domains.features.get(CERTIFICATE_SERVICE)
    if certificates is not None:
        certs = certificates
        certs.changed = lambda: mirrors.changed(CERTIFICATES)
        certs.announce_start = info.leader  # every worker switches to TLS at start; the leader says so
        mirrors.register(CERTIFICATES, certs.resync)
    if not info.leader:
        services.health.register("health", _followed_health(app))
    services.limiter.share(info.shared.buckets)
    sessions = domains.features.get(UI_SESSIONS)
    if sessions is not None:
        sessions.share(info.shared.sessions)

    relay: Relay | None = None
    if info.relay_socket is not None:
        relay = Relay(info.relay_socket, services.bus.deliver_remote)
        services.bus.relay = relay.publish
        pairing = auth.pairing
        sender = relay

        def replicate(op: str, payload: Any) -> None:
            sender.send("pairing", (op, payload))

        pairing.replicate = replicate
        buckets = info.shared.buckets

        def first_use(key: str) -> bool:
            # A bucket of one token that never refills (within the code's lifetime) is a shared
            # "spent" flag.
            allowed, _left = buckets.take("once\0" + key, 1e-9, 1, time.monotonic(), 3600.0)
            return allowed

        pairing.first_use = first_use
        jobs = domains.features.get(JOBS)
        if jobs is not None:
            runner = jobs

            def cancel_elsewhere(job_id: str) -> bool:
                sender.send("jobs.cancel", job_id)
                return True

            runner.cancel_elsewhere = cancel_elsewhere
            relay.on("jobs.cancel", runner.cancel)
        relay.on("pairing", lambda message: pairing.apply(*message))

    async def start() -> None:
        services.spawn(mirrors.watch(), "workers-watch")
        if relay is not None:
            services.spawn(relay.run(), "workers-relay")
            services.spawn(_announce_ready(services, relay, info.index, on_failed), "workers-ready")

    services.on_startup("workers", start)
    return WorkerGate(app, mirrors)


def _followed_health(app: NekzusApp) -> Any:
    """A follower's view of service health: the leader checks, every worker reads the results."""
    from nekzus.health import ComponentHealth, Status

    catalog = app.services.domains.catalog

    async def check() -> ComponentHealth:
        counts = {"healthy": 0, "unhealthy": 0, "unknown": 0}
        for app_id in {e.spec.app_id for e in catalog.routes.values()}:
            state = catalog.health.get(app_id)
            counts[state.status if state and state.status in counts else "unknown"] += 1
        if counts["unhealthy"]:
            return ComponentHealth(Status.DEGRADED, f"{counts['unhealthy']} service(s) unhealthy", counts)
        return ComponentHealth(Status.HEALTHY, "service health checked by worker 0", counts)

    return check


async def _announce_ready(
    services: Any, relay: Relay, index: int, on_failed: Callable[[], None] | None
) -> None:
    for _ in range(2400):  # the supervisor stops waiting for the leader after its own timeout
        if services.ready or services.failed:
            break
        await asyncio.sleep(0.05)
    if services.failed and on_failed is not None:
        log.error(
            "worker %d: start-up failed for %s; stopping it to be started again",
            index,
            ", ".join(services.failed),
        )
        on_failed()
        return
    relay.send_raw(READY)
