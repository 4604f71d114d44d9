"""`GET /api/v1/system/resources`: machine CPU, memory, disk, network and uptime."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request

from nekzus.api.deps import services_of
from nekzus.api.models import ERROR_RESPONSES
from nekzus.api.security import require
from nekzus.auth.principal import Principal
from nekzus.domains import Key
from nekzus.services import Services
from nekzus.system.resources import SystemResources

# /stats/quick shows the same figures for its widgets.
SYSTEM: Key[SystemResources] = Key("system")

router = APIRouter(tags=["system"], responses=ERROR_RESPONSES)


@router.get("/api/v1/system/resources", summary="System resource usage (CPU, RAM, disk, network)")
async def resources(request: Request, _principal: Principal = Depends(require())) -> dict[str, Any]:
    system = services_of(request).domains.features.require(SYSTEM)
    return await asyncio.to_thread(system.snapshot)


def install(api: FastAPI, services: Services) -> None:
    root = services.config.system.host_root_path
    system = SystemResources(
        data_dir=services.data_dir,
        database_path=Path(services.db.path),
        host_root=Path(root) if root else None,
    )
    services.domains.features.provide(SYSTEM, system)

    async def start() -> None:
        await asyncio.to_thread(system.prime)

    services.on_startup("system", start)
    api.include_router(router)
