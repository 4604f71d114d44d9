"""Mobile webview session cookies of the calling device (strict JWT): list and clear."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel

from nekzus.api.deps import services_of
from nekzus.api.models import ERROR_RESPONSES
from nekzus.api.security import require
from nekzus.auth.principal import Principal
from nekzus.http.errors import ApiError
from nekzus.services import Services

router = APIRouter(prefix="/api/v1", tags=["session-cookies"], responses=ERROR_RESPONSES)


class SessionSummary(BaseModel):
    appId: str
    cookieCount: int
    lastUpdated: str
    expiresAt: str | None = None


class SessionList(BaseModel):
    sessions: list[SessionSummary]


def _device(principal: Principal) -> str:
    # Dashboard users have no device; their "device" key is their principal id.
    return principal.device_id or principal.id


@router.get("/session-cookies", response_model=SessionList, response_model_exclude_none=True)
async def list_sessions(
    request: Request, principal: Principal = Depends(require(strict=True))
) -> dict[str, Any]:
    store = services_of(request).domains.session_cookies
    return {"sessions": await store.summaries(_device(principal))}


@router.delete("/session-cookies", status_code=204, response_class=Response)
async def clear_sessions(request: Request, principal: Principal = Depends(require(strict=True))) -> Response:
    await services_of(request).domains.session_cookies.clear(_device(principal))
    return Response(status_code=204)


@router.delete("/session-cookies/{app_id}", status_code=204, response_class=Response)
async def clear_app_sessions(
    app_id: str, request: Request, principal: Principal = Depends(require(strict=True))
) -> Response:
    if not app_id.strip():
        raise ApiError(400, "INVALID_APP_ID", "App id is required")
    await services_of(request).domains.session_cookies.clear(_device(principal), app_id)
    return Response(status_code=204)


def install(api: FastAPI, services: Services) -> None:
    api.include_router(router)
