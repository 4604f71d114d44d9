"""GET /api/v1/apps and the app favicon."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict

from nekzus.api.deps import services_of
from nekzus.api.models import ERROR_RESPONSES
from nekzus.api.security import require
from nekzus.federation import FEDERATION
from nekzus.http.errors import ApiError
from nekzus.services import Services

router = APIRouter(prefix="/api/v1", tags=["apps"], responses=ERROR_RESPONSES)


class AppOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    name: str
    icon: str = ""
    tags: list[str] = []
    endpoints: dict[str, str] = {}
    proxyPath: str | None = None
    url: str | None = None
    faviconURL: str
    healthStatus: str
    lastHealthCheck: str | None = None
    discoveryMeta: dict[str, Any] | None = None
    origin: dict[str, Any] | None = None  # federated apps: the instance that owns them


@router.get(
    "/apps",
    response_model=list[AppOut],
    response_model_exclude_none=True,
    dependencies=[Depends(require("read:catalog"))],
    summary="All apps with their health",
)
async def list_apps(request: Request) -> list[dict[str, Any]]:
    services = services_of(request)
    result: list[dict[str, Any]] = await services.domains.catalog.list_apps()
    federation = services.domains.features.get(FEDERATION)
    if federation is not None:
        # Apps other instances publish, unless an app with the same id exists here.
        result.extend(federation.remote_apps({a["id"] for a in result}, services.base_url))
    return result


@router.get(
    "/apps/{app_id}/favicon",
    dependencies=[Depends(require("read:catalog"))],
    summary="The app's favicon (fetched from its upstream, cached)",
    response_class=Response,
)
async def favicon(app_id: str, request: Request) -> Response:
    services = services_of(request)
    catalog = services.domains.catalog
    route = catalog.route_for_app(app_id)
    if route is None:
        raise ApiError(404, "APP_NOT_FOUND", f"App {app_id!r} not found")
    icon = await services.domains.favicons.get(app_id, route)
    if icon is None:
        raise ApiError(404, "FAVICON_NOT_FOUND", "Favicon not available")
    return Response(
        icon.body,
        media_type=icon.content_type,
        headers={
            # Only the caller may cache it (the route is authenticated), and even if a browser opened
            # it as a document it could run nothing.
            "Cache-Control": "private, max-age=86400",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "X-Content-Type-Options": "nosniff",
        },
    )


def install(api: FastAPI, services: Services) -> None:
    api.include_router(router)
