"""Discovery routes (REF Discovery; B §6.1) and the wiring of the discovery domain and its workers."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Body, Depends, FastAPI, Request
from pydantic import BaseModel

from nekzus.api.deps import client_ip, services_of
from nekzus.api.models import ERROR_RESPONSES
from nekzus.api.security import require
from nekzus.auth.principal import Principal
from nekzus.health import ComponentHealth, Status
from nekzus.http.errors import ApiError
from nekzus.services import Services

log = logging.getLogger("nekzus.discovery")

router = APIRouter(prefix="/api/v1/discovery", tags=["discovery"], responses=ERROR_RESPONSES)


class SuggestedAppOut(BaseModel):
    id: str
    name: str
    icon: str = ""
    tags: list[str] = []
    endpoints: dict[str, str] = {}
    discoveryMeta: dict[str, Any] = {}


class SuggestedRouteOut(BaseModel):
    routeId: str = ""
    appId: str = ""
    pathBase: str
    to: str
    containerId: str = ""
    scopes: list[str] = []
    stripPrefix: bool = True
    rewriteHTML: bool = True
    websocket: bool = False
    skipHealthCheck: bool = False
    publicAccess: bool = False


class AvailablePortOut(BaseModel):
    port: int
    scheme: str
    label: str
    containerPort: int | None = None


class ProposalOut(BaseModel):
    id: str
    source: str
    detectedScheme: str
    detectedHost: str
    detectedPort: int
    confidence: float
    suggestedApp: SuggestedAppOut
    suggestedRoute: SuggestedRouteOut
    availablePorts: list[AvailablePortOut]
    tags: list[str]
    lastSeen: str
    securityNotes: list[str]
    labelWarnings: list[str] = []


class ApproveIn(BaseModel):
    port: int | None = None


class ActionOut(BaseModel):
    status: str
    id: str
    message: str | None = None
    app: dict[str, Any] | None = None
    route: dict[str, Any] | None = None
    portExposure: dict[str, Any] | None = None


class RediscoverOut(BaseModel):
    status: str
    message: str
    dismissedCleared: int
    activeCleared: int


def _manager(request: Request) -> Any:
    manager = services_of(request).domains.get("discovery")
    if manager is None:
        raise ApiError(503, "DISCOVERY_UNAVAILABLE", "Discovery is not enabled")
    return manager


def _check_pid(proposal_id: str) -> None:
    if not proposal_id or len(proposal_id) > 255 or "/" in proposal_id or proposal_id.strip(".") == "":
        raise ApiError(400, "INVALID_PROPOSAL_ID", "Invalid proposal id")


async def _call(coro: Any) -> Any:
    from nekzus.discovery.manager import DiscoveryError

    try:
        return await coro
    except DiscoveryError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None


@router.get("/proposals", response_model=list[ProposalOut], summary="Pending discovery proposals")
async def proposals(request: Request, _p: Principal = Depends(require())) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = await _manager(request).list()
    return result


@router.post(
    "/proposals/{proposalId}/approve",
    response_model=ActionOut,
    response_model_exclude_none=True,
    summary="Approve a proposal",
)
async def approve(
    request: Request,
    proposalId: str,
    body: Any = Body(None),
    principal: Principal = Depends(require("write:*")),
) -> dict[str, Any]:
    _check_pid(proposalId)
    port: Any = None
    if body is not None:
        if not isinstance(body, dict):
            raise ApiError(400, "INVALID_REQUEST_BODY", "Request body must be a JSON object")
        port = body.get("port")
        if port is not None and (isinstance(port, bool) or not isinstance(port, int)):
            raise ApiError(400, "INVALID_PORT", "port must be an integer")
    manager = _manager(request)
    result: dict[str, Any] = await _call(manager.approve(proposalId, port, principal.id, client_ip(request)))
    return result


@router.post(
    "/proposals/{proposalId}/dismiss",
    response_model=ActionOut,
    response_model_exclude_none=True,
    summary="Dismiss a proposal",
)
async def dismiss(
    request: Request, proposalId: str, principal: Principal = Depends(require("write:*"))
) -> dict[str, Any]:
    _check_pid(proposalId)
    result: dict[str, Any] = await _call(
        _manager(request).dismiss(proposalId, principal.id, client_ip(request))
    )
    return result


@router.post("/rediscover", response_model=RediscoverOut, summary="Clear dismissals and rescan")
async def rediscover(request: Request, principal: Principal = Depends(require("write:*"))) -> dict[str, Any]:
    result: dict[str, Any] = await _call(_manager(request).rediscover(principal.id, client_ip(request)))
    return result


def install(api: FastAPI, services: Services) -> None:
    cfg = services.config.discovery
    if not cfg.enabled:
        return
    from nekzus.discovery.manager import DiscoveryManager

    manager = DiscoveryManager(services)
    services.domains["discovery"] = manager
    if "discovery" not in services.capabilities:
        services.capabilities.append("discovery")
    docker_wanted = cfg.docker.enabled or cfg.kubernetes.enabled or cfg.mdns.enabled

    async def health() -> ComponentHealth:
        if not manager.workers:
            if docker_wanted:
                return ComponentHealth(Status.DEGRADED, "no active discovery workers")
            return ComponentHealth(Status.HEALTHY, "no discovery sources enabled")
        broken = [w.name for w in manager.workers if not w.healthy]
        if broken:
            details = {w.name: getattr(w, "last_error", "") for w in manager.workers if not w.healthy}
            return ComponentHealth(Status.DEGRADED, f"worker(s) failing: {', '.join(broken)}", details)
        return ComponentHealth(Status.HEALTHY, f"{len(manager.workers)} worker(s) active")

    services.health.register("discovery", health)

    async def startup() -> None:
        await manager.load()
        if cfg.kubernetes.enabled:
            from nekzus.discovery.kubernetes_worker import install_worker as install_kubernetes

            install_kubernetes(services, manager)
        if cfg.mdns.enabled:
            from nekzus.discovery.mdns import install_worker as install_mdns

            install_mdns(services, manager)
        if not cfg.docker.enabled:
            return
        from nekzus.discovery.docker_worker import DockerWorker
        from nekzus.runtime.docker import DockerRuntime
        from nekzus.runtime.manager import RuntimeManager

        runtimes = services.domains.get("runtime") or RuntimeManager()
        docker = runtimes.docker
        own: DockerRuntime | None = None
        wanted = DockerRuntime(cfg.docker.socket_path)
        if docker is None or docker.url != wanted.url:
            own = docker = wanted
        worker = DockerWorker(services, manager, docker, runtimes)
        manager.workers.append(worker)
        services.spawn(worker.run(), "discovery-docker")
        if own is not None:
            services.on_shutdown("discovery-docker", own.close)

    services.on_startup("discovery", startup)
    api.include_router(router)
