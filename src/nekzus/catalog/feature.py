"""Wires the catalog, its health checker, the session-cookie store and the reverse proxy into Nekzus."""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING

from fastapi import FastAPI

from nekzus.services import Services

if TYPE_CHECKING:
    from nekzus.catalog.service import CatalogService
    from nekzus.proxy.app import ProxyApp
    from nekzus.proxy.cookies import SessionCookieStore


def build_proxy(services: Services, catalog: CatalogService, cookies: SessionCookieStore) -> ProxyApp:
    """The proxy with the narrow collaborators it uses, taken from today's `services`."""
    from nekzus.proxy.app import ProxyApp, ProxySettings, idle_timeout_from_env

    proxy = ProxyApp(
        catalog,
        settings=ProxySettings.from_config(services.config, idle_timeout_from_env()),
        metrics=services.metrics,
        limiter=services.limiter,
        spawn=services.spawn,
        is_ready=lambda: services.ready,
        authenticator=services.domains.get("auth"),
        audit=services.domains.get("audit"),
        cookies=cookies,
    )

    async def follow_reloads() -> None:
        reloader = services.domains.get("config_reload")
        if reloader is not None:
            reloader.on_reload(proxy.reconfigure)

    services.on_startup("proxy", follow_reloads)
    return proxy


def install(api: FastAPI, services: Services) -> None:
    from nekzus.catalog.health import ServiceHealthChecker
    from nekzus.catalog.service import CatalogService
    from nekzus.proxy.cookies import SessionCookieStore

    catalog = CatalogService(services)
    services.domains["catalog"] = catalog
    cookies = SessionCookieStore(services.db, services.bus, services.spawn, services.data_dir)
    services.domains["session_cookies"] = cookies
    proxy = build_proxy(services, catalog, cookies)
    checker = ServiceHealthChecker(services, catalog)
    services.domains["catalog_health"] = checker
    services.proxy = proxy

    async def start() -> None:
        await catalog.load()
        cookies.start()
        checker.start()
        # Start-up objects live forever: keep them out of the collector's way (shorter GC pauses on the
        # proxy's hot path).
        gc.collect()
        gc.freeze()

    async def stop() -> None:
        await checker.stop()
        await cookies.stop()
        proxy.close()

    services.on_startup("catalog", start)
    services.on_shutdown("catalog", stop)
    services.health.register("health", checker.component_health)
