"""The composition root: every domain service is built here, in dependency order, from the config and
the shared core (`Services`), with its collaborators passed as typed constructor arguments.

Nothing else constructs a domain service: routers in `nekzus.api` only read `services.domains`. A
dependency that is missing is a TypeError or a `MissingDependency` here, at start-up, not a silent
skip at run time. Lifecycle hooks (start-up, shutdown), health components and the config reload hooks
(`reconfigure(old, new)` of each domain) are registered here too, so their order is visible in one place.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nekzus.auth.activity import ActivityService
from nekzus.auth.audit import AuditService
from nekzus.auth.enrollment import DeviceEnrollment
from nekzus.auth.service import AuthService
from nekzus.catalog.favicons import FaviconFetcher
from nekzus.catalog.health import ServiceHealthChecker
from nekzus.catalog.service import CatalogService
from nekzus.config import Config
from nekzus.domains import Domains
from nekzus.events.hub import Hub
from nekzus.events.notifications import NotificationQueue
from nekzus.events.types import EventType
from nekzus.health import ComponentHealth, Status
from nekzus.http.clientip import parse_networks
from nekzus.proxy.app import ProxyApp, ProxySettings
from nekzus.proxy.cookies import SessionCookieStore
from nekzus.services import Services

if TYPE_CHECKING:
    from nekzus.discovery.manager import DiscoveryManager

log = logging.getLogger("nekzus")

# Config sections that validate but have no feature behind them in this build. A feature that lands
# removes its entry; while it is listed, enabling the section logs a start-up warning naming it.
UNBUILT_SECTIONS: tuple[str, ...] = ()


def unbuilt_enabled(cfg: Config) -> list[str]:
    """The enabled sections of `UNBUILT_SECTIONS` (they do nothing yet)."""
    found = []
    for dotted in UNBUILT_SECTIONS:
        node: Any = cfg
        for part in dotted.split("."):
            node = getattr(node, part, None)
        if getattr(node, "enabled", False):
            found.append(dotted)
    return found


def build_domains(services: Services, *, clock: Callable[[], float] = time.time) -> Domains:
    """Build and wire every core domain service; sets and returns `services.domains`.

    `clock` is what token and API-key expiry are judged against (tests pass a manual one)."""
    cfg = services.config
    db, bus, metrics, spawn = services.db, services.bus, services.metrics, services.spawn
    unbuilt = unbuilt_enabled(cfg)
    if unbuilt:
        log.warning(
            "config sections enabled but not built in this version (no effect): %s", ", ".join(unbuilt)
        )
    _register_storage_health(services)

    audit = AuditService(db)
    activity = ActivityService(db)
    auth = AuthService(
        cfg,
        data_dir=services.data_dir,
        db=db,
        metrics=metrics,
        spawn=spawn,
        audit_log=audit,
        activity_feed=activity,
        local_networks=services.local_networks,
        clock=clock,
    )
    services.limiter.identify = auth.identify
    services.on_startup("auth", auth.start)
    services.on_shutdown("auth", auth.stop)

    hub = Hub(
        bus=bus,
        metrics=metrics,
        spawn=spawn,
        authenticator=auth,
        audit=audit,
        base_url=services.base_url,
        instance_id=lambda: services.nexus_id,
        auth_timeout=cfg.server.ws_auth_timeout,
        connections=auth.connections,
    )
    _capability(services, "websocket")
    hub.start()
    services.on_shutdown("ws", hub.stop)

    notifications = NotificationQueue(
        cfg.notifications, hub, db=db, bus=bus, metrics=metrics, spawn=spawn, device_name=auth.device_name
    )
    notifications.install()
    services.on_startup("notifications", notifications.start)

    catalog = CatalogService(cfg, db, bus, metrics, spawn, services.base_url, audit=audit)
    cookies = SessionCookieStore(db, bus, spawn, services.data_dir)
    proxy = ProxyApp(
        catalog,
        settings=ProxySettings.from_config(cfg),
        metrics=metrics,
        limiter=services.limiter,
        spawn=spawn,
        is_ready=lambda: services.ready,
        authenticator=auth,
        audit=audit,
        cookies=cookies,
        connections=auth.connections,
    )
    checker = ServiceHealthChecker(
        cfg.health_checks, catalog, metrics=metrics, spawn=spawn, is_ready=lambda: services.ready
    )
    catalog.health_checker = checker
    services.proxy = proxy

    async def start_catalog() -> None:
        await catalog.load()
        cookies.start()
        # Start-up objects live forever: keep them out of the collector's way (shorter GC pauses on the
        # proxy's hot path).
        gc.collect()
        gc.freeze()

    async def stop_catalog() -> None:
        await checker.stop()
        await catalog.flush_health()
        await cookies.stop()
        proxy.close()

    services.on_startup("catalog", start_catalog)

    async def start_checker() -> None:
        checker.start()

    services.on_startup("catalog-health", start_checker)
    services.on_shutdown("catalog", stop_catalog)
    services.health.register("health", checker.component_health)

    def announce_pairing(device_id: str, name: str, platform: str) -> None:
        bus.emit(EventType.DEVICE_PAIRED, {"deviceId": device_id, "deviceName": name, "platform": platform})

    def announce_revoked(device_id: str) -> None:
        bus.emit(EventType.DEVICE_REVOKED, {"deviceId": device_id})

    def announce_updated(device_id: str) -> None:
        bus.emit(EventType.DEVICE_UPDATED, {"deviceId": device_id})

    enrollment = DeviceEnrollment(
        auth,
        metrics=metrics,
        forget=(cookies.clear, notifications.delete_device),
        close_device=hub.close_device,
        announce_paired=announce_pairing,
        announce_revoked=announce_revoked,
        announce_updated=announce_updated,
    )
    domains = Domains(
        auth=auth,
        audit=audit,
        activity=activity,
        hub=hub,
        notifications=notifications,
        catalog=catalog,
        catalog_health=checker,
        session_cookies=cookies,
        favicons=FaviconFetcher(),
        proxy=proxy,
        enrollment=enrollment,
    )
    _build_jobs(services, domains)
    _build_runtime(services, domains)
    _build_discovery(services, domains)
    services.domains = domains
    _build_reloader(services, domains)
    return domains


def _capability(services: Services, name: str) -> None:
    if name not in services.capabilities:
        services.capabilities.append(name)


def _register_storage_health(services: Services) -> None:
    db = services.db

    async def storage_check() -> ComponentHealth:
        if not db.ready:
            return ComponentHealth(Status.UNHEALTHY, "storage not open")
        await db.ping()
        return ComponentHealth(Status.HEALTHY, "database reachable")

    services.health.register("storage", storage_check)


def docker_socket(cfg: Config) -> str:
    """The Docker endpoint of the container runtime: its own key when it is enabled, else discovery's
    (`DOCKER_HOST` is applied to both keys by the config loader)."""
    if cfg.runtimes.docker.enabled:
        return cfg.runtimes.docker.socket_path
    return cfg.discovery.docker.socket_path


def _build_jobs(services: Services, domains: Domains) -> None:
    """The one job runner (container actions, toolbox deploys, script runs); its shutdown hook is
    registered by `nekzus.api.jobs`, installed late so that jobs stop before what they use closes."""
    from nekzus.jobs import JOBS, JobRunner

    cfg = services.config.jobs
    runner = JobRunner(
        services.db,
        services.bus,
        services.spawn,
        max_concurrent=cfg.max_concurrent,
        max_queued=cfg.max_queued,
        keep_records=cfg.keep_records,
    )
    domains.features.provide(JOBS, runner)

    async def start() -> None:
        await runner.start()

    services.on_startup("jobs", start)


def _build_runtime(services: Services, domains: Domains) -> None:
    cfg = services.config
    docker_on = cfg.runtimes.docker.enabled or cfg.discovery.docker.enabled
    kube = cfg.runtimes.kubernetes
    if not (docker_on or kube.enabled):
        return
    from nekzus.jobs import JOBS
    from nekzus.runtime.base import RuntimeErrorBase
    from nekzus.runtime.manager import RuntimeManager
    from nekzus.runtime.operations import ContainerService

    manager = RuntimeManager(primary=cfg.runtimes.primary)
    if docker_on:
        from nekzus.runtime.docker import DockerRuntime

        manager.add(DockerRuntime(docker_socket(cfg)))
    if kube.enabled:
        # An unreachable cluster is not a start-up failure: its calls answer 503 until it is back.
        from nekzus.runtime.kubernetes import KubernetesRuntime

        manager.add(
            KubernetesRuntime(
                kube.kubeconfig,
                kube.context,
                kube.in_cluster,
                list(kube.namespaces),
                kube.metrics_cache_ttl,
                metrics_server=kube.metrics_server,
            )
        )
    containers = ContainerService(
        manager,
        bus=services.bus,
        spawn=services.spawn,
        jobs=domains.features.require(JOBS),
        catalog=domains.catalog,
        audit=domains.audit,
    )
    domains.runtime = manager
    domains.containers = containers
    _capability(services, "containers")
    containers.register_ws(domains.hub)

    async def runtime_health() -> ComponentHealth:
        details: dict[str, Any] = {"primary": manager.primary}
        problems: list[str] = []
        for name, rt in manager.runtimes.items():
            try:
                details[name] = await rt.ping()
            except RuntimeErrorBase as exc:
                problems.append(f"{name}: {exc.message}")
                details[name] = {"status": "unavailable"}
        if problems:
            return ComponentHealth(Status.DEGRADED, "; ".join(problems), details)
        return ComponentHealth(Status.HEALTHY, "container runtime reachable", details)

    services.health.register("runtime", runtime_health)
    services.on_shutdown("containers", manager.close)


def _build_discovery(services: Services, domains: Domains) -> None:
    cfg = services.config.discovery
    if not cfg.enabled:
        return
    from nekzus.api.discovery import proposal_json
    from nekzus.discovery.manager import DiscoveryManager

    manager = DiscoveryManager(
        db=services.db,
        bus=services.bus,
        metrics=services.metrics,
        catalog=domains.catalog,
        audit=domains.audit,
        activity=domains.activity,
        wire=proposal_json,
        runtimes=domains.runtime,
        auto_approve_config=lambda: services.config.discovery.auto_approve_confidence,
    )
    domains.discovery = manager
    _capability(services, "discovery")
    any_source = cfg.docker.enabled or cfg.kubernetes.enabled or cfg.mdns.enabled

    async def health() -> ComponentHealth:
        if not manager.workers:
            if any_source:
                return ComponentHealth(Status.DEGRADED, "no active discovery workers")
            return ComponentHealth(Status.HEALTHY, "no discovery sources enabled")
        broken = [w.name for w in manager.workers if not w.healthy]
        if broken:
            details = {w.name.value: w.last_error for w in manager.workers if not w.healthy}
            return ComponentHealth(Status.DEGRADED, f"worker(s) failing: {', '.join(broken)}", details)
        return ComponentHealth(Status.HEALTHY, f"{len(manager.workers)} worker(s) active")

    services.health.register("discovery", health)

    async def startup() -> None:
        await manager.load()
        if cfg.kubernetes.enabled:
            _start_kubernetes_discovery(services, manager)
        if cfg.mdns.enabled:
            _start_mdns(services, manager)
        if not cfg.docker.enabled:
            return
        from nekzus.discovery.docker_worker import DockerWorker
        from nekzus.runtime.docker import DockerRuntime
        from nekzus.runtime.manager import RuntimeManager

        runtimes = domains.runtime or RuntimeManager()
        docker = runtimes.docker
        own: DockerRuntime | None = None
        wanted = DockerRuntime(cfg.docker.socket_path)
        if docker is None or docker.url != wanted.url:
            own = docker = wanted
        worker = DockerWorker(
            cfg.docker, manager, docker, runtimes, bus=services.bus, metrics=services.metrics
        )
        manager.workers.append(worker)
        services.spawn(worker.run(), "discovery-docker")
        if own is not None:
            services.on_shutdown("discovery-docker", own.close)

    services.on_startup("discovery", startup)


def _start_kubernetes_discovery(services: Services, manager: DiscoveryManager) -> None:
    """List+watch Services and Ingresses; connection keys left empty fall back to `runtimes.kubernetes`."""
    from nekzus.discovery.kubernetes_worker import KubernetesWorker
    from nekzus.runtime.kubernetes import KubeConnection

    cfg = services.config.discovery.kubernetes
    runtime_cfg = services.config.runtimes.kubernetes
    conn = KubeConnection(
        cfg.kubeconfig or runtime_cfg.kubeconfig,
        cfg.context or runtime_cfg.context,
        cfg.in_cluster or runtime_cfg.in_cluster,
    )
    worker = KubernetesWorker(
        conn,
        submit=manager.submit,
        withdraw=manager.withdraw,
        retain=manager.retain,
        namespaces=list(cfg.namespaces or runtime_cfg.namespaces),
        resync_interval=float(cfg.poll_interval),
        metrics=services.metrics,
    )
    manager.workers.append(worker)
    services.spawn(worker.run(), "discovery-kubernetes")
    services.on_shutdown("discovery-kubernetes", conn.close)


def _start_mdns(services: Services, manager: DiscoveryManager) -> None:
    """Browse the configured DNS-SD types and, unless `advertise` is off, announce Nekzus itself."""
    from nekzus import __version__
    from nekzus.discovery.mdns import Advertisement, MdnsWorker, port_of

    cfg = services.config.discovery.mdns

    def advertisement() -> Advertisement:
        # Read when the worker starts: the instance id is only known once storage is open.
        return Advertisement(
            nexus_id=services.nexus_id,
            base_url=services.base_url,
            port=port_of(services.base_url, services.config.server.addr),
            version=__version__,
        )

    worker = MdnsWorker(
        submit=manager.submit,
        withdraw=manager.withdraw,
        service_types=list(cfg.services),
        interfaces=list(cfg.interfaces),
        scan_interval=float(cfg.scan_interval),
        advertise=advertisement if cfg.advertise else None,
    )
    manager.workers.append(worker)
    services.spawn(worker.run(), "discovery-mdns")


def _build_reloader(services: Services, domains: Domains) -> None:
    """Hot reload runs only when the server was started with a config file path."""
    if not services.config_path:
        return
    from nekzus.reloader import ConfigReloader

    def install(new: Config) -> None:
        services.config = new

    reloader = ConfigReloader(
        services.config_path,
        current=lambda: services.config,
        install=install,
        bus=services.bus,
        metrics=services.metrics,
        spawn=services.spawn,
        audit=domains.audit,
        activity=domains.activity,
    )
    domains.reloader = reloader

    def core(_old: Config, new: Config) -> dict[str, Any]:
        services.trusted_proxies = parse_networks(new.server.trusted_proxies)
        services.local_networks = parse_networks(new.auth.local_networks)
        rebuilt = services.limiter.reconfigure(new.rate_limits)
        return {"rateLimitsRebuilt": rebuilt} if rebuilt else {}

    reloader.on_reload("core", core)
    reloader.on_reload("auth", domains.auth.reconfigure)
    reloader.on_reload("proxy", domains.proxy.reconfigure)
    reloader.on_reload("catalog", domains.catalog.reconfigure)
    reloader.on_reload("health_checks", domains.catalog_health.reconfigure)

    async def start() -> None:
        reloader.start()

    services.on_startup("config_reload", start)
    services.on_shutdown("config_reload", reloader.stop)
