"""Wires the catalog, its health checker, the session-cookie store and the reverse proxy into Nekzus."""

from __future__ import annotations

import gc

from fastapi import FastAPI

from nekzus.services import Services


def install(api: FastAPI, services: Services) -> None:
    from nekzus.catalog.health import ServiceHealthChecker
    from nekzus.catalog.service import CatalogService
    from nekzus.proxy.app import ProxyApp
    from nekzus.proxy.cookies import SessionCookieStore
    from nekzus.proxy.websocket import tunnel

    catalog = CatalogService(services)
    services.domains["catalog"] = catalog
    proxy = ProxyApp(services, catalog)
    proxy.websocket = tunnel
    cookies = SessionCookieStore(services)
    proxy.cookies = cookies
    services.domains["session_cookies"] = cookies
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
        proxy.close()

    services.on_startup("catalog", start)
    services.on_shutdown("catalog", stop)
    services.health.register("health", checker.component_health)
