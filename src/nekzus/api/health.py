"""Probes: /healthz, /livez, /readyz and /api/v1/healthz."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from nekzus import __version__
from nekzus.api.deps import client_ip, services_of
from nekzus.api.security import current_principal
from nekzus.errors import NekzusError
from nekzus.health import Status
from nekzus.http.clientip import in_networks, parse_ip
from nekzus.http.errors import ApiError
from nekzus.services import Services
from nekzus.timefmt import rfc3339

router = APIRouter(tags=["health"])


async def _may_see_detail(request: Request) -> bool:
    """Component detail is for trusted networks and authenticated callers (not bootstrap tokens)."""
    services = services_of(request)
    if not services.ready:  # credentials cannot be checked before storage opens: trusted networks only
        return in_networks(parse_ip(client_ip(request)), services.local_networks)
    try:
        principal = await current_principal(request)
    except (ApiError, NekzusError):
        return False
    return principal is not None and principal.kind != "bootstrap"


@router.head("/healthz", include_in_schema=False)
@router.get("/healthz", summary="Overall health (text, or JSON detail)")
async def healthz(request: Request) -> Response:
    services = services_of(request)
    overall, components = await services.health.check_all()
    healthy = overall in (Status.HEALTHY, Status.DEGRADED) and services.ready
    status_code = 200 if healthy else 503
    if "application/json" in request.headers.get("accept", ""):
        status = overall.value if services.ready else Status.UNHEALTHY.value
        if not await _may_see_detail(request):
            # Engine versions and worker errors help an attacker map the house: strangers get the verdict.
            return JSONResponse({"status": status}, status_code=status_code)
        body: dict[str, Any] = {
            "status": status,
            "version": __version__,
            "uptime": round(time.time() - services.started_at, 3),
            "timestamp": rfc3339(time.time(), millis=True),
            "components": {name: c.to_json() for name, c in components.items()},
        }
        if services.worker.count > 1:
            # Which worker process answered (`server.workers`): 0 is the leader.
            body["worker"] = services.worker.index
        if services.failed:
            # A start-up hook raised: readiness stays false, and the component that failed is named.
            body["failedStartup"] = list(services.failed)
            for name in services.failed:
                body["components"][f"startup:{name}"] = {"status": "unhealthy", "message": "start-up failed"}
        return JSONResponse(body, status_code=status_code)
    return PlainTextResponse("ok" if healthy else "unhealthy", status_code=status_code)


@router.head("/livez", include_in_schema=False)
@router.get("/livez", summary="Liveness: the process is running")
async def livez() -> Response:
    return PlainTextResponse("ok")


@router.head("/readyz", include_in_schema=False)
@router.get("/readyz", summary="Readiness: storage open and migrated")
async def readyz(request: Request) -> Response:
    services = services_of(request)
    if services.ready:
        return PlainTextResponse("ok")
    if services.failed:
        return PlainTextResponse(f"not ready: start-up failed: {', '.join(services.failed)}", status_code=503)
    return PlainTextResponse("not ready", status_code=503)


@router.head("/api/v1/healthz", include_in_schema=False)
@router.get("/api/v1/healthz", summary="Simple health for probes")
async def api_healthz(request: Request) -> Response:
    if services_of(request).ready:
        return PlainTextResponse("ok")
    return PlainTextResponse("not ready", status_code=503)


def install(api: FastAPI, services: Services) -> None:
    api.include_router(router)
