"""Answers for features switched off in the config, so clients get a clear reason instead of a 404.

Mounted last: it only adds routes for domains that did not register themselves.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, FastAPI

from nekzus.api.security import require
from nekzus.http.errors import ApiError
from nekzus.services import Services

_ANY = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def _discovery_router() -> APIRouter:
    router = APIRouter(prefix="/api/v1/discovery", tags=["discovery"], dependencies=[Depends(require())])

    @router.get("/proposals", summary="Pending proposals (always empty while discovery is disabled)")
    async def no_proposals() -> list[Any]:
        return []

    @router.api_route("/{rest:path}", methods=_ANY, include_in_schema=False)
    async def discovery_disabled(rest: str) -> None:
        raise ApiError(503, "DISCOVERY_DISABLED", "Discovery is disabled (set discovery.enabled: true)")

    return router


def _containers_router() -> APIRouter:
    router = APIRouter(tags=["containers"], dependencies=[Depends(require())])

    async def runtime_disabled() -> None:
        raise ApiError(
            503,
            "RUNTIME_UNAVAILABLE",
            "No container runtime is enabled (set runtimes.docker.enabled: true)",
        )

    router.add_api_route("/api/v1/containers", runtime_disabled, methods=_ANY, include_in_schema=False)
    router.add_api_route(
        "/api/v1/containers/{rest:path}", runtime_disabled, methods=_ANY, include_in_schema=False
    )
    return router


# Features that are not built (or switched off) answer these stubs, so a client can tell "off" from
# "broken". Mounted last: a feature that registers the same path answers first. (Scripts, executions,
# workflows and schedules answer their own "off" shapes: see nekzus.api.scripts.)
_OFF_STUBS: dict[str, dict[str, Any]] = {
    "/api/v1/backups/scheduler/status": {"enabled": False, "message": "Backup scheduler is not configured"},
}


def _off_router() -> APIRouter:
    router = APIRouter(tags=["disabled"], dependencies=[Depends(require())])
    for path, body in _OFF_STUBS.items():
        router.add_api_route(path, _stub(body), methods=["GET"], include_in_schema=False)
    return router


def _stub(body: dict[str, Any]) -> Callable[[], Awaitable[dict[str, Any]]]:
    async def stub() -> dict[str, Any]:
        return dict(body)

    return stub


def install(api: FastAPI, services: Services) -> None:
    api.include_router(_off_router())
    if services.domains.discovery is None:
        api.include_router(_discovery_router())
    if services.domains.containers is None:
        api.include_router(_containers_router())
