"""Federation routes (`/api/v1/federation/...`) and the wiring of the federation domain.

Everything federation needs is built here: the service, its start/stop hooks, mDNS peer discovery and, with
`federation.allow_remote_routes`, the remote-route step wrapped around the reverse proxy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from starlette.datastructures import Headers
from starlette.types import Scope

from nekzus.api.deps import services_of
from nekzus.api.models import ERROR_RESPONSES
from nekzus.api.security import require
from nekzus.auth.connections import TooManyConnections
from nekzus.auth.principal import ADMIN, AuthError, Principal, scopes_satisfied
from nekzus.catalog.spec import RouteSpec
from nekzus.errors import Unavailable
from nekzus.federation import FEDERATION
from nekzus.health import ComponentHealth, Status
from nekzus.http.clientip import resolve_client_ip
from nekzus.services import Services

if TYPE_CHECKING:
    # aiohttp and pycrdt (~20 MB, ~1 s of start-up) are imported only when federation is on.
    from nekzus.federation.service import FederationService

log = logging.getLogger("nekzus.federation")

router = APIRouter(prefix="/api/v1/federation", tags=["federation"], responses=ERROR_RESPONSES)


def _fed(request: Request) -> FederationService:
    return services_of(request).domains.features.require(FEDERATION)


@router.get(
    "/peers", summary="All federation peers (this instance excluded)", dependencies=[Depends(require())]
)
async def list_peers(request: Request) -> dict[str, Any]:
    peers = [p.to_json() for p in _fed(request).list_peers()]
    return {"peers": peers, "count": len(peers)}


@router.get("/peers/{peer_id}", summary="One peer", dependencies=[Depends(require())])
async def get_peer(peer_id: str, request: Request) -> dict[str, Any]:
    result: dict[str, Any] = _fed(request).get_peer(peer_id).to_json()
    return result


@router.delete(
    "/peers/{peer_id}",
    summary="Remove a peer (it must authenticate again to rejoin)",
    dependencies=[Depends(require(ADMIN))],
)
async def remove_peer(peer_id: str, request: Request) -> dict[str, Any]:
    await _fed(request).remove_peer(peer_id)
    return {"success": True, "message": "Peer removed successfully", "peer_id": peer_id}


@router.post(
    "/sync",
    summary="Synchronise the catalog with every online peer now",
    dependencies=[Depends(require("write:*"))],
)
async def sync(request: Request) -> dict[str, Any]:
    result = await _fed(request).sync_all("manual")
    return {"success": True, "message": "Sync completed", **result}


@router.get("/status", summary="Federation status and health", dependencies=[Depends(require())])
async def status(request: Request) -> dict[str, Any]:
    result: dict[str, Any] = _fed(request).status()
    return result


def _disabled_router() -> APIRouter:
    off = APIRouter(prefix="/api/v1/federation", tags=["federation"], dependencies=[Depends(require())])

    @off.get("/status", summary="Federation status (disabled)")
    async def disabled_status() -> dict[str, Any]:
        return {
            "enabled": False,
            "local_peer_id": "",
            "local_peer_name": "",
            "peer_count": 0,
            "peers_by_status": {},
            "running": False,
        }

    @off.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
    async def disabled(rest: str) -> None:
        raise Unavailable("Federation is disabled (set federation.enabled: true)", code="FEDERATION_DISABLED")

    return off


def _cert_paths(services: Services) -> tuple[Path, Path]:
    """The instance certificate; without TLS on the API port, a generated one kept for federation."""
    if services.tls_cert_path is not None and services.tls_key_path is not None:
        return services.tls_cert_path, services.tls_key_path
    from nekzus.certs.selfsigned import ensure_certificate

    folder = services.data_dir / "federation"
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "instance.crt", folder / "instance.key"
    ensure_certificate(cert, key, generated=True)
    return cert, key


def install(api: FastAPI, services: Services) -> None:
    cfg = services.config.federation
    if not cfg.enabled:
        api.include_router(_disabled_router())
        return
    from nekzus.federation.service import FederationService

    catalog = services.domains.catalog
    audit = services.domains.audit
    listen_host = services.config.server.addr.rpartition(":")[0].strip("[]")

    def local_apps() -> dict[str, dict[str, Any]]:
        """What this instance publishes: its apps and, for routed ones, what peers need to proxy them."""
        # One pass over the routes (first by path per app), so publishing stays linear in the catalog size.
        first_route: dict[str, Any] = {}
        for route in catalog.sorted_routes():
            first_route.setdefault(route.app_id, route)
        out: dict[str, dict[str, Any]] = {}
        for app in catalog.sorted_apps():
            state = catalog.health.get(app.id)
            data: dict[str, Any] = {
                "id": app.id,
                "name": app.name,
                "icon": app.icon,
                "tags": list(app.tags),
                "endpoints": dict(app.endpoints),
                "healthStatus": state.status if state is not None else "unknown",
            }
            entry: dict[str, Any] = {"app": data}
            routed = first_route.get(app.id)
            if routed is not None and routed.path_routed:
                entry["route"] = {
                    "pathBase": routed.path_base,
                    "publicAccess": routed.public_access,
                    "websocket": routed.websocket,
                    "scopes": list(routed.scopes),
                }
            out[app.id] = entry
        return out

    fed = FederationService(
        cfg,
        db=services.db,
        bus=services.bus,
        registry=services.metrics.registry,
        spawn=services.spawn,
        local_apps=local_apps,
        audit=audit.record,
        listen_host=listen_host,
        api_address=services.base_url,
        cert_paths=_cert_paths(services),
        peer_timeout=cfg.peer_timeout,
    )
    services.domains.features.provide(FEDERATION, fed)
    if "federation" not in services.capabilities:
        services.capabilities.append("federation")

    if cfg.allow_remote_routes:
        _install_remote_routes(services, fed)

    discovery: list[Any] = []

    async def start() -> None:
        await fed.start(services.nexus_id)
        catalog.on_change(fed.catalog_changed)
        if cfg.mdns_enabled:
            from nekzus.federation.mdns import PeerDiscovery

            interfaces = list(services.config.discovery.mdns.interfaces)
            mdns = PeerDiscovery(
                interfaces=interfaces,
                peer_id=fed.peer_id,
                peer_name=fed.name,
                gossip_port=cfg.gossip_port,
                api_address=services.base_url,
                advertise=interfaces or ([listen_host] if listen_host else []),
                on_found=fed.add_target,
                spawn=services.spawn,
            )
            try:
                await mdns.start()
                discovery.append(mdns)
            except Exception:
                log.exception("federation mDNS could not start")

    async def stop() -> None:
        for mdns in discovery:
            await mdns.stop()
        await fed.stop()

    async def health() -> ComponentHealth:
        if not fed.running:
            return ComponentHealth(Status.DEGRADED, "federation not running")
        online = len(fed.online_peers())
        return ComponentHealth(Status.HEALTHY, f"{online}/{len(fed.peers)} peer(s) online")

    services.on_startup("federation", start)
    services.on_shutdown("federation", stop)
    services.health.register("federation", health)
    api.include_router(router)


def _install_remote_routes(services: Services, fed: FederationService) -> None:
    """Put the remote-route step in front of the reverse proxy (paths the proxy has no route for only)."""
    from nekzus.federation.remote import (
        Caller,
        CloseTunnel,
        Denial,
        OwnerRouteHandler,
        RemoteRouteDispatch,
    )

    async def authenticate(scope: Scope) -> tuple[Caller | None, Denial | None]:
        ip = resolve_client_ip(scope, services.trusted_proxies)
        principal: Principal | None = None
        try:
            principal = await services.domains.auth.authenticate(Headers(raw=scope["headers"]), ip)
        except AuthError as exc:
            return None, (exc.status, exc.code, exc.message)
        if principal is None:
            return None, None
        if principal.kind == "bootstrap":
            return None, (403, "FORBIDDEN", "Bootstrap tokens can only be used for pairing")
        identity = {
            "kind": principal.kind,
            "id": principal.id,
            "name": principal.name,
            "scopes": sorted(principal.scopes),
            "ip": ip,
        }
        return Caller(identity, principal), None

    def track(caller: Caller, close: CloseTunnel, *, capped: bool = True) -> Callable[[], object]:
        """Register an open remote WebSocket (or a response still streaming, uncapped) with the caller's
        credential, so revoking, deleting or logging out that credential (or its expiry) closes it, as
        for local tunnels, streams and hub sockets. Trusted networks present no credential to revoke."""
        principal = caller.credential
        if not isinstance(principal, Principal) or (not capped and principal.kind == "trusted"):
            return lambda: None
        try:
            return services.domains.auth.connections.register(principal, close, capped=capped).release
        except TooManyConnections:
            close("too many connections")
            return lambda: None

    proxy = services.domains.proxy

    def local_route(path: str) -> RouteSpec | None:
        """The local route the proxy itself would pick for `path` (its compiled table, kept current)."""
        compiled = proxy.table.match(path)
        return compiled.spec if compiled is not None else None

    def is_local(path: str) -> bool:
        # A local route wins, also one the proxy redirects to (only the trailing slash missing).
        return local_route(path) is not None or path + "/" in proxy.table.by_path

    inner = services.proxy
    if inner is None:
        return

    def strip() -> dict[bytes, int]:
        return proxy.settings.strip  # live: replaced on config reload

    dispatch = RemoteRouteDispatch(
        inner, fed, is_local=is_local, authenticate=authenticate, track=track, strip=strip
    )
    services.proxy = dispatch
    fed.on_catalog_change.append(dispatch.rebuild)

    async def audit_denied(actor: str, target: str, ip: str, details: dict[str, Any]) -> None:
        await services.domains.audit.record(
            "access.denied",
            actor=actor,
            target=target[:512],
            ip=ip,
            details={"federated": True, **details},
            success=False,
        )

    fed.route_handler = OwnerRouteHandler(
        fed,
        local_route=local_route,
        default_scopes=list(services.config.auth.default_scopes),
        allowed=scopes_satisfied,
        audit_denied=audit_denied,
        strip=strip,
    )
