"""Discovery routes, and the one place a proposal becomes the API's camelCase JSON (`proposal_json`, also
the payload of `discovery` events)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Body, Depends, FastAPI, Request
from pydantic import BaseModel

from nekzus.api.deps import client_ip, services_of
from nekzus.api.models import ERROR_RESPONSES
from nekzus.api.requests import read_json
from nekzus.api.security import require
from nekzus.auth.principal import ADMIN, Principal
from nekzus.http.errors import ApiError
from nekzus.services import Services
from nekzus.timefmt import rfc3339

if TYPE_CHECKING:
    from nekzus.discovery.manager import Approved, AutoApproval, DiscoveryManager
    from nekzus.discovery.models import Proposal

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


def suggested_app_json(proposal: Proposal) -> dict[str, Any]:
    app = proposal.app
    return {
        "id": app.id,
        "name": app.name,
        "icon": app.icon,
        "tags": list(app.tags),
        "endpoints": dict(app.endpoints),
        "discoveryMeta": dict(app.details),
    }


def suggested_route_json(proposal: Proposal) -> dict[str, Any]:
    route = proposal.route
    out: dict[str, Any] = {
        "routeId": route.route_id,
        "appId": proposal.app.id,
        "pathBase": route.path_base,
        "to": route.target,
    }
    if proposal.container_id:
        out["containerId"] = proposal.container_id
    out.update(
        {
            "scopes": list(route.scopes),
            "stripPrefix": route.strip_prefix,
            "rewriteHTML": route.rewrite_html,
            "websocket": route.websocket,
            "skipHealthCheck": route.skip_health_check,
            "publicAccess": route.public_access,
        }
    )
    return out


def proposal_json(proposal: Proposal) -> dict[str, Any]:
    """A proposal as the API lists it and as `discovery` events carry it."""
    ports = []
    for option in proposal.ports:
        port: dict[str, Any] = {"port": option.port, "scheme": option.scheme, "label": option.label}
        if option.container_port is not None:
            port["containerPort"] = option.container_port
        ports.append(port)
    return {
        "id": proposal.id,
        "source": proposal.source.value,
        "detectedScheme": proposal.scheme,
        "detectedHost": proposal.host,
        "detectedPort": proposal.port,
        "confidence": proposal.confidence,
        "suggestedApp": suggested_app_json(proposal),
        "suggestedRoute": suggested_route_json(proposal),
        "availablePorts": ports,
        "tags": list(proposal.tags),
        "lastSeen": rfc3339(proposal.last_seen),
        "securityNotes": list(proposal.notes),
        "labelWarnings": list(proposal.warnings),
    }


def approved_json(proposal_id: str, approved: Approved | None) -> dict[str, Any]:
    if approved is None:
        return _already(proposal_id)
    out: dict[str, Any] = {
        "status": "approved",
        "id": proposal_id,
        "app": suggested_app_json(approved.proposal),
        "route": suggested_route_json(approved.proposal),
    }
    if approved.exposure is not None:
        out["portExposure"] = approved.exposure
    return out


def _already(proposal_id: str) -> dict[str, Any]:
    return {
        "status": "already_processed",
        "message": "Proposal has already been processed or does not exist",
        "id": proposal_id,
    }


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
    return [proposal_json(p) for p in await _manager(request).list()]


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
    port: int | None = None
    if body is not None:
        if not isinstance(body, dict):
            raise ApiError(400, "INVALID_REQUEST_BODY", "Request body must be a JSON object")
        port = body.get("port")
        if port is not None and (isinstance(port, bool) or not isinstance(port, int)):
            raise ApiError(400, "INVALID_PORT", "port must be an integer")
    approved = await _manager(request).approve(proposalId, port, principal.id, client_ip(request))
    return approved_json(proposalId, approved)


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
    if await _manager(request).dismiss(proposalId, principal.id, client_ip(request)):
        return {"status": "dismissed", "id": proposalId}
    return _already(proposalId)


@router.post("/rediscover", response_model=RediscoverOut, summary="Clear dismissals and rescan")
async def rediscover(request: Request, principal: Principal = Depends(require("write:*"))) -> dict[str, Any]:
    done = await _manager(request).rediscover(principal.id, client_ip(request))
    return {
        "status": "success",
        "message": "Rediscovery triggered. Discovery workers will scan for new services.",
        "dismissedCleared": done.dismissed_cleared,
        "activeCleared": done.active_cleared,
    }


class DiscoverySettingsOut(BaseModel):
    autoApproveConfidence: int
    source: str
    configAutoApproveConfidence: int
    runtimeAutoApproveConfidence: int | None = None
    updatedAt: str | None = None
    updatedBy: str = ""


class DiscoverySettingsIn(BaseModel):
    autoApproveConfidence: int | None = None


SETTINGS_BODY_LIMIT = 4 * 1024


def settings_json(setting: AutoApproval) -> dict[str, Any]:
    return {
        "autoApproveConfidence": setting.threshold,
        "source": setting.source,
        "configAutoApproveConfidence": setting.configured,
        "runtimeAutoApproveConfidence": setting.runtime,
        "updatedAt": rfc3339(setting.updated_at.timestamp()) if setting.updated_at else None,
        "updatedBy": setting.updated_by,
    }


@router.get("/settings", response_model=DiscoverySettingsOut, summary="Discovery settings (auto-approval)")
async def get_settings(request: Request, _p: Principal = Depends(require(ADMIN))) -> dict[str, Any]:
    return settings_json(await _manager(request).auto_approval())


@router.put(
    "/settings",
    response_model=DiscoverySettingsOut,
    summary="Set the auto-approval threshold (0-100, 0 = off; null = follow the config key)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": DiscoverySettingsIn.model_json_schema()}},
        }
    },
)
async def put_settings(request: Request, principal: Principal = Depends(require(ADMIN))) -> dict[str, Any]:
    body = await read_json(request, SETTINGS_BODY_LIMIT)
    if not isinstance(body, dict) or "autoApproveConfidence" not in body:
        raise ApiError(400, "INVALID_REQUEST_BODY", "Body must be a JSON object with autoApproveConfidence")
    setting = await _manager(request).set_auto_approval(
        body["autoApproveConfidence"], principal.id, client_ip(request)
    )
    return settings_json(setting)


def install(api: FastAPI, services: Services) -> None:
    if services.domains.discovery is None:
        return
    api.include_router(router)
