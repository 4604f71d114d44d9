"""Discovery routes and the wiring of the discovery domain and its workers."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Body, Depends, FastAPI, Request
from pydantic import BaseModel

from nekzus.api.deps import client_ip, services_of
from nekzus.api.models import ERROR_RESPONSES
from nekzus.api.security import require
from nekzus.auth.principal import Principal
from nekzus.http.errors import ApiError
from nekzus.services import Services

if TYPE_CHECKING:
    from nekzus.discovery.manager import DiscoveryManager

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


def _manager(request: Request) -> DiscoveryManager:
    manager = services_of(request).domains.discovery
    if manager is None:
        raise ApiError(503, "DISCOVERY_UNAVAILABLE", "Discovery is not enabled")
    return manager


def _check_pid(proposal_id: str) -> None:
    if not proposal_id or len(proposal_id) > 255 or "/" in proposal_id or proposal_id.strip(".") == "":
        raise ApiError(400, "INVALID_PROPOSAL_ID", "Invalid proposal id")


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
    result: dict[str, Any] = await manager.approve(proposalId, port, principal.id, client_ip(request))
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
    result: dict[str, Any] = await _manager(request).dismiss(proposalId, principal.id, client_ip(request))
    return result


@router.post("/rediscover", response_model=RediscoverOut, summary="Clear dismissals and rescan")
async def rediscover(request: Request, principal: Principal = Depends(require("write:*"))) -> dict[str, Any]:
    result: dict[str, Any] = await _manager(request).rediscover(principal.id, client_ip(request))
    return result


def install(api: FastAPI, services: Services) -> None:
    if services.domains.discovery is None:
        return
    api.include_router(router)
