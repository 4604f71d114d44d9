"""Toolbox endpoints: the template catalog and one-click Compose deployments.

When the toolbox is switched off only the two list endpoints answer, with empty lists and
`enabled: false`, so a dashboard can hide the tab instead of showing an error.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Body, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse

from nekzus.api.deps import client_ip, services_of
from nekzus.api.jobs import job_runner
from nekzus.api.models import ERROR_RESPONSES
from nekzus.api.security import require
from nekzus.auth.principal import Principal
from nekzus.domains import Key
from nekzus.errors import Unavailable
from nekzus.services import Services

if TYPE_CHECKING:
    from nekzus.toolbox.service import ToolboxService

# Other features reach the toolbox through this typed key (`services.domains.features.require(TOOLBOX)`).
TOOLBOX: Key[ToolboxService] = Key("toolbox")

log = logging.getLogger("nekzus.toolbox")

router = APIRouter(prefix="/api/v1/toolbox", tags=["toolbox"], responses=ERROR_RESPONSES)


def _toolbox(request: Request) -> ToolboxService:
    toolbox = services_of(request).domains.features.get(TOOLBOX)
    if toolbox is None:
        raise Unavailable("The toolbox is disabled", code="TOOLBOX_DISABLED")
    return toolbox


@router.get("/services", summary="List catalog templates", dependencies=[Depends(require())])
async def list_services(request: Request, category: str | None = Query(None)) -> dict[str, Any]:
    services = _toolbox(request).list_templates(category or None)
    return {"services": services, "count": len(services)}


@router.get("/services/{service_id}", summary="One catalog template", dependencies=[Depends(require())])
async def get_service(request: Request, service_id: str) -> dict[str, Any]:
    result: dict[str, Any] = _toolbox(request).template(service_id).as_json()
    return result


@router.post("/deploy", summary="Deploy a template", status_code=202)
async def deploy(
    request: Request, body: Any = Body(None), principal: Principal = Depends(require("write:*"))
) -> JSONResponse:
    result = await _toolbox(request).deploy(body, actor=principal.id, ip=client_ip(request))
    return JSONResponse(result, status_code=202)


@router.get("/deployments", summary="List deployments", dependencies=[Depends(require())])
async def list_deployments(request: Request, status: str | None = Query(None)) -> dict[str, Any]:
    items = await _toolbox(request).list_deployments(status or None)
    return {"deployments": items, "count": len(items)}


@router.get("/deployments/{deployment_id}", summary="One deployment", dependencies=[Depends(require())])
async def get_deployment(request: Request, deployment_id: str) -> dict[str, Any]:
    result: dict[str, Any] = await _toolbox(request).get_deployment(deployment_id)
    return result


@router.delete("/deployments/{deployment_id}", summary="Remove a deployment")
async def delete_deployment(
    request: Request,
    deployment_id: str,
    principal: Principal = Depends(require("write:*")),
    remove_volumes: bool = Query(False, alias="removeVolumes"),
    remove_volumes_snake: bool = Query(False, alias="remove_volumes"),
) -> dict[str, Any]:
    await _toolbox(request).remove(
        deployment_id,
        remove_volumes=remove_volumes or remove_volumes_snake,
        actor=principal.id,
        ip=client_ip(request),
    )
    return {"message": "Deployment removed successfully"}


def _disabled_router() -> APIRouter:
    stub = APIRouter(prefix="/api/v1/toolbox", tags=["toolbox"], dependencies=[Depends(require())])

    @stub.get("/services", summary="Catalog (empty: the toolbox is disabled)")
    async def no_services() -> dict[str, Any]:
        return {"services": [], "count": 0, "enabled": False}

    @stub.get("/deployments", summary="Deployments (empty: the toolbox is disabled)")
    async def no_deployments() -> dict[str, Any]:
        return {"deployments": [], "count": 0, "enabled": False}

    return stub


def install(api: FastAPI, services: Services) -> None:
    cfg = services.config.toolbox
    if not cfg.enabled:
        api.include_router(_disabled_router())
        return
    import aiodocker

    from nekzus.compose import docker_socket
    from nekzus.runtime.docker import docker_url
    from nekzus.toolbox.compose import Compose, find_binary
    from nekzus.toolbox.service import ToolboxService
    from nekzus.toolbox.templates import BUNDLED_DIR

    socket = docker_socket(services.config)
    binary = find_binary(cfg.compose_binary)
    if binary is None:
        log.warning("toolbox: docker-compose binary not found; templates cannot be validated or deployed")
    compose_host = socket if "://" in socket else ("unix://" + socket if socket else "")
    directories: list[tuple[Path, str]] = []
    if cfg.include_bundled:
        directories.append((BUNDLED_DIR, "bundled"))
    if cfg.catalog_dir:
        directories.append((Path(cfg.catalog_dir).absolute(), "custom"))
    holder: dict[str, Any] = {}

    toolbox = ToolboxService(
        db=services.db,
        bus=services.bus,
        compose=Compose(binary, compose_host),
        docker=None,
        jobs=job_runner(services),
        catalog_dirs=directories,
        data_dir=Path(cfg.data_dir).absolute(),
        base_url=services.base_url,
        auto_start_default=cfg.auto_start,
        auto_route=cfg.auto_route,
    )
    services.domains.features.provide(TOOLBOX, toolbox)
    if "toolbox" not in services.capabilities:
        services.capabilities.append("toolbox")

    async def startup() -> None:
        holder["docker"] = toolbox.docker = aiodocker.Docker(url=docker_url(socket))
        toolbox.routes = services.domains.catalog
        toolbox.audit = services.domains.audit
        await toolbox.start()

    async def shutdown() -> None:
        docker = holder.get("docker")
        if docker is not None:
            await docker.close()

    services.on_startup("toolbox", startup)
    services.on_startup("toolbox-recovery", toolbox.recover)
    services.on_shutdown("toolbox", shutdown)
    api.include_router(router)
