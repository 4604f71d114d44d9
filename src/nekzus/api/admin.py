"""`GET /api/v1/admin/info`: version, nexusId, enabled capabilities, build date."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict

from nekzus import BUILD_DATE, __version__
from nekzus.api.deps import services_of
from nekzus.api.models import ERROR_RESPONSES
from nekzus.api.security import require
from nekzus.auth.principal import Principal

router = APIRouter(tags=["admin"], responses=ERROR_RESPONSES)


class AdminInfo(BaseModel):
    model_config = ConfigDict(extra="allow")
    version: str
    nexusId: str
    capabilities: list[str]
    buildDate: str


@router.get("/api/v1/admin/info", summary="Instance information", response_model=AdminInfo)
async def info(request: Request, _principal: Principal = Depends(require())) -> dict[str, Any]:
    services = services_of(request)
    return {
        "version": __version__,
        "nexusId": services.nexus_id,
        "nekzusId": services.nexus_id,
        "capabilities": list(dict.fromkeys(services.capabilities)),
        "buildDate": BUILD_DATE,
    }
