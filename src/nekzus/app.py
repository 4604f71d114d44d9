"""The app factory: build the shared core, let `nekzus.compose` build every domain service, mount the
features' routers and wire the ASGI stack.

Request path, outermost first:
  NekzusApp ── request guard (Host served? same-site Origin on mutations and upgrades?)
      ├── /apps/... (or a routed subdomain) ──> reverse proxy (its own lean pipeline)
      └── EnvelopeMiddleware (request id, headers, client ip, body limit, error boundary, access log)
            └── RateLimitMiddleware
                  └── readiness gate (503 until storage is open)
                        └── FastAPI (routers of each feature)
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from nekzus import __version__
from nekzus.api.scopes import document_scopes
from nekzus.certs.selfsigned import machine_addresses
from nekzus.compose import build_domains
from nekzus.config import Config
from nekzus.http.envelope import EnvelopeMiddleware
from nekzus.http.errors import send_error
from nekzus.http.guard import ServedHosts, refusal, refuse
from nekzus.http.handlers import install_error_handlers
from nekzus.http.ratelimit import RateLimitMiddleware
from nekzus.services import Services

if TYPE_CHECKING:
    from nekzus.proxy.direct import DirectAnswer

__all__ = ["FEATURES", "NekzusApp", "create_app"]

log = logging.getLogger("nekzus")

# Each feature module exposes `install(api, services)`: it mounts its routers (and, for features that
# are not core domains, builds its service from `services` and `services.domains`, registering it under a
# typed `Key` in `services.domains.features` if other features need it). Core domain services are all
# built before any feature installs, by `nekzus.compose.build_domains`.
FEATURES: list[str] = [
    "nekzus.api.health",
    "nekzus.api.docs",
    "nekzus.api.auth",
    "nekzus.api.ws",
    "nekzus.api.notifications",
    "nekzus.api.webhooks",
    "nekzus.api.admin_ws",
    "nekzus.api.metrics",
    "nekzus.api.metrics_dashboard",
    "nekzus.api.apps",
    "nekzus.api.routes",
    "nekzus.api.service_health",
    "nekzus.api.session_cookies",
    "nekzus.api.containers",
    "nekzus.api.discovery",
    "nekzus.api.export",
    "nekzus.api.federation",  # after the catalog: wraps its proxy for remote routes
    "nekzus.api.scripts",
    "nekzus.api.toolbox",
    "nekzus.api.certificates",
    "nekzus.api.backups",
    "nekzus.api.system",
    "nekzus.api.ui",
    # After every feature that runs jobs: its shutdown hook then runs before theirs (jobs are cancelled
    # while the clients they use are still open). The runner itself is built by nekzus.compose.
    "nekzus.api.jobs",
    "nekzus.api.disabled",  # last: answers for features that are switched off
]

# Features whose install() mounts nothing unless the composition root built this domain (the attribute of
# `services.domains`): while it is off the module is not even imported, so its routers, models and the
# domain code they import cost neither start-up time nor memory. `nekzus.api.disabled` answers for them.
_NEEDS_DOMAIN: dict[str, str] = {
    "nekzus.api.containers": "containers",
    "nekzus.api.discovery": "discovery",
    "nekzus.api.export": "runtime",
}

# Paths that answer before storage is ready.
ALWAYS_AVAILABLE = ("/healthz", "/livez", "/readyz", "/api/v1/healthz", "/api/docs", "/api/v1/openapi.json")


class ReadinessGate:
    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.services.ready or scope["type"] == "lifespan" or scope["path"] in ALWAYS_AVAILABLE:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1013, "reason": "storage not ready"})
            return
        await send_error(
            send,
            503,
            "STORAGE_UNAVAILABLE",
            "Storage is starting up, try again shortly",
            {"Retry-After": "1"},
        )


class NekzusApp:
    """The ASGI callable uvicorn serves."""

    def __init__(self, services: Services, api: FastAPI) -> None:
        self.services = services
        self.api = api
        server = services.config.server
        self.hosts = ServedHosts.for_instance(
            base_url=services.base_url,
            base_domain=server.base_domain,
            allowed=server.allowed_hosts,
            addresses=machine_addresses(),
        )
        inner = RateLimitMiddleware(ReadinessGate(api, services), services.limiter)
        self.stack = EnvelopeMiddleware(
            inner,
            max_body_bytes=services.config.server.max_body_bytes,
            trusted_proxies=services.trusted_proxies,
            tls=services.config.tls_enabled,
            metrics=services.metrics,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            refused = refusal(scope, self.hosts)
            if refused is not None:
                await refuse(scope, send, refused)
                return
        proxy = self.services.proxy
        if proxy is not None and scope["type"] != "lifespan" and proxy.handles(scope):
            await proxy(scope, receive, send)
            return
        await self.stack(scope, receive, send)

    def direct(self, scope: Scope, answer: DirectAnswer) -> bool:
        """The HTTP server's direct claim (`nekzus.http.protocol`): the proxy may answer proxied GETs
        from protocol callbacks (once storage is ready: `ProxyApp.direct`). False, with nothing done,
        sends the request through `__call__` (host refusal included)."""
        proxy = self.services.proxy
        if proxy is None or refusal(scope, self.hosts) is not None:
            return False
        return proxy.handles(scope) and proxy.direct(scope, answer)


def create_app(
    config: Config,
    *,
    base_url: str | None = None,
    tls_cert_path: Path | None = None,
    tls_key_path: Path | None = None,
    features: list[str] | None = None,
    config_path: str | None = None,
    clock: Callable[[], float] = time.time,
) -> NekzusApp:
    """The whole server as one ASGI app. `clock` judges token and API-key expiry; only in-process tests
    pass their own (the `nekzus` command always runs on the wall clock)."""
    from nekzus.netinfo import detect_base_url

    url = base_url or config.server.base_url or detect_base_url(config.server.addr, tls=config.tls_enabled)
    services = Services.build(
        config, base_url=url, tls_cert_path=tls_cert_path, tls_key_path=tls_key_path, config_path=config_path
    )
    rejections = services.metrics.rate_limit_rejections_total
    services.limiter.rejections = lambda category: rejections.labels(category).inc()

    @asynccontextmanager
    async def lifespan(_api: FastAPI) -> AsyncIterator[None]:
        # Storage opens in the background so probes answer (503) while migrations run.
        services.spawn(services.start(), "startup")
        try:
            yield
        finally:
            await services.stop()

    api = FastAPI(
        title="Nekzus",
        version=__version__,
        description="Secure gateway for the home lab.",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    api.state.services = services
    install_error_handlers(api)
    domains = build_domains(services, clock=clock)
    for name in features if features is not None else FEATURES:
        needed = _NEEDS_DOMAIN.get(name)
        if needed is not None and getattr(domains, needed) is None:
            continue
        module = importlib.import_module(name)
        module.install(api, services)
    document_scopes(api)
    app = NekzusApp(services, api)
    if domains.reloader is not None:

        def envelope_settings(_old: Config, new: Config) -> None:
            app.stack.trusted_proxies = services.trusted_proxies
            app.stack.max_body = new.server.max_body_bytes

        domains.reloader.on_reload("envelope", envelope_settings)
    return app
