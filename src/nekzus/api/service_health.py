"""GET|HEAD /api/v1/services/{appId}/health: one app's upstream health."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from nekzus.api.deps import services_of
from nekzus.api.models import ERROR_RESPONSES
from nekzus.api.security import require
from nekzus.http.errors import ApiError
from nekzus.services import Services
from nekzus.timefmt import rfc3339_or_none as rfc3339

router = APIRouter(prefix="/api/v1", tags=["health"], responses=ERROR_RESPONSES)


@router.head(
    "/services/{app_id}/health", dependencies=[Depends(require("read:catalog"))], include_in_schema=False
)
@router.get(
    "/services/{app_id}/health",
    dependencies=[Depends(require("read:catalog"))],
    summary="Health of one app's upstream (503 when unhealthy)",
)
async def service_health(app_id: str, request: Request) -> JSONResponse:
    catalog = services_of(request).domains.catalog
    if catalog.route_for_app(app_id) is None:
        raise ApiError(404, "SERVICE_NOT_FOUND", f"No route for service {app_id!r}")
    state = catalog.health.get(app_id)
    body: dict[str, Any] = {"appId": app_id, "status": "unknown", "consecutiveFailures": 0}
    headers = {"Cache-Control": "no-cache", "X-Health-Status": "unknown", "X-Consecutive-Failures": "0"}
    if state is None:
        body["message"] = "No health check data available"
    else:
        body["status"] = state.status
        body["consecutiveFailures"] = state.consecutive_failures
        headers["X-Health-Status"] = state.status
        headers["X-Consecutive-Failures"] = str(state.consecutive_failures)
        if state.last_check is not None:
            body["lastCheck"] = body["lastCheckTime"] = rfc3339(state.last_check)
            headers["X-Last-Check"] = str(body["lastCheck"])
        if state.last_success is not None:
            body["lastSuccessTime"] = rfc3339(state.last_success)
        if state.response_time_ms is not None:
            body["responseTime"] = round(state.response_time_ms)
        if state.status_code is not None:
            body["statusCode"] = state.status_code
        if state.message:
            body["message"] = state.message
    status = 503 if body["status"] == "unhealthy" else 200
    return JSONResponse(body, status_code=status, headers=headers)


def install(api: FastAPI, services: Services) -> None:
    api.include_router(router)
