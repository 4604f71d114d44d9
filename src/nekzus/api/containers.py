"""Container management routes: list, inspect, actions, stats and bulk operations.

Mounted when `runtimes.docker.enabled` (or, for compatibility, `discovery.docker.enabled`). Reads need
any credential, actions `write:*`. The container rate-limit category applies by path.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from fastapi import APIRouter, Body, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from nekzus.api.deps import services_of
from nekzus.api.models import ERROR_RESPONSES
from nekzus.api.security import require
from nekzus.auth.principal import Principal
from nekzus.http.errors import ApiError
from nekzus.runtime.base import valid_container_id
from nekzus.runtime.operations import ContainerService
from nekzus.services import Services

log = logging.getLogger("nekzus.containers")

router = APIRouter(prefix="/api/v1/containers", tags=["containers"], responses=ERROR_RESPONSES)

DEFAULT_SOCKET = "unix:///var/run/docker.sock"


# -- models ------------------------------------------------------------------------------------------


class PortOut(BaseModel):
    ip: str | None = None
    privatePort: int
    publicPort: int | None = None
    type: str


class ContainerOut(BaseModel):
    id: str
    name: str
    image: str
    state: str
    status: str
    created: int
    ports: list[PortOut]
    labels: dict[str, str]
    runtime: str
    namespace: str


class AcceptedOut(BaseModel):
    status: str
    containerId: str
    message: str
    timestamp: int
    runtime: str | None = None
    timeout: int | None = None


class CpuOut(BaseModel):
    usage: float
    coresUsed: float
    totalCores: float


class MemoryOut(BaseModel):
    usage: float
    used: int
    limit: int
    available: int


class NetworkOut(BaseModel):
    rx: int
    tx: int


class StatsOut(BaseModel):
    containerId: str
    # Pods only: a pod's name is unique within its namespace.
    namespace: str | None = None
    runtime: str | None = None
    cpu: CpuOut
    memory: MemoryOut
    network: NetworkOut
    timestamp: int


class AllStatsOut(BaseModel):
    containers: list[StatsOut]
    timestamp: int


class BulkItem(BaseModel):
    id: str
    name: str
    success: bool
    error: str | None = None


class BulkOut(BaseModel):
    message: str
    total: int
    success: int
    failed: int
    results: list[BulkItem]


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    operation: Any = Field(default=None, validation_alias=AliasChoices("operation", "action"))
    containerIds: Any = Field(default=None, validation_alias=AliasChoices("containerIds", "container_ids"))
    timeout: Any = None


# -- helpers -----------------------------------------------------------------------------------------


def _svc(request: Request) -> ContainerService:
    svc = services_of(request).domains.containers
    if svc is None:
        raise ApiError(503, "RUNTIME_UNAVAILABLE", "No container runtime is enabled")
    return svc


def _check_id(container_id: str) -> str:
    if not valid_container_id(container_id):
        raise ApiError(400, "INVALID_CONTAINER_ID", "Invalid container id")
    return container_id


def _reject_encoded(request: Request) -> None:
    """Encoded separators (`%2F`, `%5C`, `%2E`) never name a container, in either path form."""
    raw = bytes(request.scope.get("raw_path") or b"").decode("latin-1").lower()
    if any(marker in raw for marker in ("%2f", "%5c", "%2e", "\\")):
        raise ApiError(400, "INVALID_CONTAINER_ID", "Invalid container id")


def _target(container_id: str, runtime: str | None, namespace: str | None) -> tuple[str, str | None]:
    """(id, runtime) for the runtime: a `namespace` names a pod (`namespace/pod`, Kubernetes)."""
    _check_id(container_id)
    if not namespace:
        return container_id, runtime
    if not valid_container_id(namespace):
        raise ApiError(400, "INVALID_NAMESPACE", "Invalid namespace")
    if runtime not in (None, "", "kubernetes"):
        raise ApiError(400, "INVALID_RUNTIME", "namespace applies to the kubernetes runtime only")
    return f"{namespace}/{container_id}", "kubernetes"


def parse_timeout(value: Any) -> int | None:
    """1-300 seconds, as the API documents; anything else is a 400, never silently ignored."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ApiError(400, "INVALID_TIMEOUT", "timeout must be between 1 and 300 seconds")
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise ApiError(400, "INVALID_TIMEOUT", "timeout must be between 1 and 300 seconds") from None
    if not 1 <= number <= 300:
        raise ApiError(400, "INVALID_TIMEOUT", "timeout must be between 1 and 300 seconds")
    return number


# -- routes (static paths before `{containerId}`) ----------------------------------------------------


@router.get(
    "", response_model=list[ContainerOut], response_model_exclude_none=True, summary="List containers"
)
async def list_containers(
    request: Request,
    runtime: str | None = Query(None, description="docker or kubernetes"),
    namespace: str | None = Query(None, description="Kubernetes namespace"),
    _p: Principal = Depends(require()),
) -> list[dict[str, Any]]:
    if runtime and runtime not in ("docker", "kubernetes"):
        raise ApiError(400, "INVALID_RUNTIME", "runtime must be 'docker' or 'kubernetes'")
    items = await _svc(request).list_containers(runtime, namespace)
    return [c.to_json() for c in items]


@router.get(
    "/stats",
    response_model=AllStatsOut,
    response_model_exclude_none=True,
    summary="Stats of running app containers (or pods, from the metrics API)",
)
async def all_stats(
    request: Request,
    all: bool = Query(False, description="every running container, not only catalog apps"),
    runtime: str | None = Query(None, description="docker or kubernetes (default: the primary runtime)"),
    namespace: str | None = Query(None, description="Kubernetes namespace filter"),
    _p: Principal = Depends(require()),
) -> dict[str, Any]:
    import time

    if runtime and runtime not in ("docker", "kubernetes"):
        raise ApiError(400, "INVALID_RUNTIME", "runtime must be 'docker' or 'kubernetes'")
    items = await _svc(request).all_stats(include_all=all, runtime=runtime, namespace=namespace)
    return {"containers": items, "timestamp": int(time.time())}


async def _bulk(
    request: Request, action: Literal["start", "stop", "restart"], timeout: Any
) -> dict[str, Any]:
    seconds = parse_timeout(timeout)
    return await _svc(request).bulk(action, seconds)


@router.post("/start-all", response_model=BulkOut, summary="Start every stopped container")
async def start_all(
    request: Request, timeout: str | None = Query(None), _p: Principal = Depends(require("write:*"))
) -> dict[str, Any]:
    return await _bulk(request, "start", timeout)


@router.post("/stop-all", response_model=BulkOut, summary="Stop every running container (not Nekzus)")
async def stop_all(
    request: Request, timeout: str | None = Query(None), _p: Principal = Depends(require("write:*"))
) -> dict[str, Any]:
    return await _bulk(request, "stop", timeout)


@router.post("/restart-all", response_model=BulkOut, summary="Restart every container (not Nekzus)")
async def restart_all(
    request: Request, timeout: str | None = Query(None), _p: Principal = Depends(require("write:*"))
) -> dict[str, Any]:
    return await _bulk(request, "restart", timeout)


@router.post("/batch", response_model=BulkOut, summary="Start, stop or restart several containers")
async def batch(
    request: Request,
    body: Any = Body(None),
    _p: Principal = Depends(require("write:*")),
) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, "INVALID_REQUEST_BODY", "Request body must be a JSON object")
    parsed = BatchIn.model_validate(body)
    action = parsed.operation
    if action not in ("start", "stop", "restart"):
        raise ApiError(400, "INVALID_ACTION", "action must be 'start', 'stop', or 'restart'")
    ids = parsed.containerIds
    if ids is None or (isinstance(ids, list) and not ids):
        raise ApiError(400, "EMPTY_CONTAINER_LIST", "containerIds cannot be empty")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ApiError(400, "INVALID_REQUEST_BODY", "containerIds must be a list of strings")
    if len(ids) > 200:
        raise ApiError(400, "INVALID_REQUEST_BODY", "at most 200 containers per batch")
    for cid in ids:
        _check_id(cid)
    seconds = parse_timeout(parsed.timeout)
    unique = list(dict.fromkeys(ids))
    return await _svc(request).batch(action, unique, seconds)


@router.get(
    "/{containerId}", summary="Inspect a container (raw runtime details; write:* as it shows secrets)"
)
async def inspect_container(
    request: Request,
    containerId: str,
    runtime: str | None = Query(None),
    namespace: str | None = Query(None, description="Kubernetes namespace of the pod"),
    # The raw details carry the environment (passwords, tokens), command lines and mounts: only a
    # credential that could change the container anyway may read them, as for the unsanitised export.
    _p: Principal = Depends(require("write:*")),
) -> dict[str, Any]:
    cid, runtime = _target(containerId, runtime, namespace)
    return await _svc(request).inspect(cid, runtime)


async def _action(
    request: Request,
    principal: Principal,
    action: Literal["start", "stop", "restart"],
    container_id: str,
    timeout: Any,
    runtime: str | None,
    namespace: str | None = None,
) -> JSONResponse:
    _reject_encoded(request)
    container_id, runtime = _target(container_id, runtime, namespace)
    seconds = parse_timeout(timeout) if action != "start" else None
    body = await _svc(request).accept_action(principal, action, container_id, seconds, runtime)
    return JSONResponse(body, status_code=202)


@router.post("/{containerId}/start", status_code=202, response_model=AcceptedOut, summary="Start a container")
async def start_container(
    request: Request,
    containerId: str,
    runtime: str | None = Query(None),
    namespace: str | None = Query(None, description="Kubernetes namespace of the pod"),
    principal: Principal = Depends(require("write:*")),
) -> JSONResponse:
    return await _action(request, principal, "start", containerId, None, runtime, namespace)


@router.post("/{containerId}/stop", status_code=202, response_model=AcceptedOut, summary="Stop a container")
async def stop_container(
    request: Request,
    containerId: str,
    timeout: str | None = Query(None, description="grace period 1-300 s"),
    runtime: str | None = Query(None),
    namespace: str | None = Query(None, description="Kubernetes namespace of the pod"),
    principal: Principal = Depends(require("write:*")),
) -> JSONResponse:
    return await _action(request, principal, "stop", containerId, timeout, runtime, namespace)


@router.post(
    "/{containerId}/restart", status_code=202, response_model=AcceptedOut, summary="Restart a container"
)
async def restart_container(
    request: Request,
    containerId: str,
    timeout: str | None = Query(None, description="grace period 1-300 s"),
    runtime: str | None = Query(None),
    namespace: str | None = Query(None, description="Kubernetes namespace of the pod"),
    principal: Principal = Depends(require("write:*")),
) -> JSONResponse:
    return await _action(request, principal, "restart", containerId, timeout, runtime, namespace)


@router.get(
    "/{containerId}/stats",
    response_model=StatsOut,
    response_model_exclude_none=True,
    summary="Resource usage of a container",
)
async def container_stats(
    request: Request,
    containerId: str,
    runtime: str | None = Query(None),
    namespace: str | None = Query(None, description="Kubernetes namespace of the pod"),
    _p: Principal = Depends(require()),
) -> dict[str, Any]:
    cid, runtime = _target(containerId, runtime, namespace)
    return await _svc(request).stats(cid, runtime)


# Kubernetes path form: /containers/{namespace}/{pod}/{action} (implies runtime=kubernetes).


@router.post("/{namespace}/{pod}/start", status_code=202, response_model=AcceptedOut, summary="Start a pod")
async def start_pod(
    request: Request, namespace: str, pod: str, principal: Principal = Depends(require("write:*"))
) -> JSONResponse:
    return await _action(request, principal, "start", pod, None, "kubernetes", namespace)


@router.post("/{namespace}/{pod}/stop", status_code=202, response_model=AcceptedOut, summary="Stop a pod")
async def stop_pod(
    request: Request,
    namespace: str,
    pod: str,
    timeout: str | None = Query(None, description="grace period 1-300 s"),
    principal: Principal = Depends(require("write:*")),
) -> JSONResponse:
    return await _action(request, principal, "stop", pod, timeout, "kubernetes", namespace)


@router.post(
    "/{namespace}/{pod}/restart", status_code=202, response_model=AcceptedOut, summary="Restart a pod"
)
async def restart_pod(
    request: Request,
    namespace: str,
    pod: str,
    timeout: str | None = Query(None, description="grace period 1-300 s"),
    principal: Principal = Depends(require("write:*")),
) -> JSONResponse:
    return await _action(request, principal, "restart", pod, timeout, "kubernetes", namespace)


@router.get("/{namespace}/{pod}/stats", summary="Resource usage of a pod (metrics-server)")
async def pod_stats(
    request: Request, namespace: str, pod: str, _p: Principal = Depends(require())
) -> dict[str, Any]:
    _reject_encoded(request)
    cid, runtime = _target(pod, "kubernetes", namespace)
    return await _svc(request).stats(cid, runtime)


_KNOWN_TAILS = {"start", "stop", "restart", "stats", "export", "export/preview"}


async def catch_all(request: Request) -> JSONResponse:
    """Any other path under /containers: path tricks are 400, known shapes with a wrong method 405."""
    rest = request.path_params.get("rest", "")
    parts = rest.split("/", 1)
    raw = bytes(request.scope.get("raw_path") or b"").decode("latin-1").lower()
    encoded_tricks = any(marker in raw for marker in ("%2f", "%5c", "%2e", "\\"))
    if (
        encoded_tricks
        or not valid_container_id(parts[0])
        or any(seg in ("", ".", "..") for seg in rest.split("/"))
    ):
        raise ApiError(400, "INVALID_CONTAINER_ID", "Invalid container id")
    if len(parts) == 1 or parts[1] in _KNOWN_TAILS:
        raise ApiError(405, "METHOD_NOT_ALLOWED", "Method not allowed")
    raise ApiError(404, "NOT_FOUND", "Resource not found")


# -- wiring ------------------------------------------------------------------------------------------


def install(api: FastAPI, services: Services) -> None:
    if services.domains.containers is None:
        return
    api.include_router(router)


def install_catch_all(api: FastAPI) -> None:
    """Mounted last (by the export feature) so every specific container route wins first."""
    api.add_api_route(
        "/api/v1/containers/{rest:path}",
        catch_all,
        methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        include_in_schema=False,
    )
