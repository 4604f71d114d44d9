"""Scripts, executions, workflows and schedules: `/api/v1/scripts`, `/executions`, `/workflows`, `/schedules`.

When scripts are switched off (`scripts.enabled` false or no `scripts.directory`) the list endpoints answer
empty with `enabled: false` and everything else 503 SCRIPTS_DISABLED, so a client can tell "off" from
"broken". The routers and services of the feature (`nekzus.api.scripts_routes`) are imported only when
it is on: the scripts domain and cron cost start-up time and memory a server with scripts off should not pay.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, FastAPI

from nekzus.api.security import require
from nekzus.domains import Key
from nekzus.errors import Unavailable
from nekzus.services import Services

if TYPE_CHECKING:
    from nekzus.scripts.service import ScriptService

__all__ = ["SCRIPTS", "install"]

# Other features reach the script service through this typed key.
SCRIPTS: Key[ScriptService] = Key("scripts")

_ANY = ["GET", "POST", "PUT", "PATCH", "DELETE"]


_STUBS = {
    "/api/v1/scripts": {"scripts": [], "count": 0, "enabled": False},
    "/api/v1/scripts/available": {"scripts": [], "available": [], "count": 0, "enabled": False},
    "/api/v1/executions": {"executions": [], "count": 0, "enabled": False},
    "/api/v1/workflows": {"workflows": [], "count": 0, "enabled": False},
    "/api/v1/schedules": {"schedules": [], "count": 0, "enabled": False},
}


def _stub(payload: dict[str, Any]) -> Callable[[], Awaitable[dict[str, Any]]]:
    async def stub() -> dict[str, Any]:
        return copy.deepcopy(payload)

    return stub


def _disabled_router() -> APIRouter:
    router = APIRouter(tags=["scripts"], dependencies=[Depends(require())])
    for path, payload in _STUBS.items():
        router.add_api_route(path, _stub(payload), methods=["GET"], summary="Scripts are disabled")

    async def disabled() -> None:
        raise Unavailable(
            "Scripts are disabled (set scripts.enabled: true and scripts.directory)", code="SCRIPTS_DISABLED"
        )

    for prefix in ("scripts", "executions", "workflows", "schedules"):
        router.add_api_route(
            f"/api/v1/{prefix}", disabled, methods=["POST", "PUT", "PATCH", "DELETE"], include_in_schema=False
        )
        router.add_api_route(
            f"/api/v1/{prefix}/{{rest:path}}", disabled, methods=_ANY, include_in_schema=False
        )
    return router


def install(api: FastAPI, services: Services) -> None:
    cfg = services.config.scripts
    if not (cfg.enabled and cfg.directory):
        api.include_router(_disabled_router())
        return
    from nekzus.api.scripts_routes import install_enabled

    services.domains.features.provide(SCRIPTS, install_enabled(api, services))
