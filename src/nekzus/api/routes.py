"""Route CRUD: GET/POST /api/v1/routes, GET/PUT/PATCH/DELETE /api/v1/routes/{routeId}."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from nekzus.api.deps import client_ip, services_of
from nekzus.api.models import ERROR_RESPONSES
from nekzus.api.security import require
from nekzus.auth.principal import Principal
from nekzus.catalog.service import CatalogService
from nekzus.catalog.spec import RouteSpec
from nekzus.errors import validation_message
from nekzus.http.errors import ApiError
from nekzus.services import Services

router = APIRouter(prefix="/api/v1", tags=["routes"], responses=ERROR_RESPONSES)

# Every route field optional, same spellings as RouteSpec (camelCase or snake_case), plus `icon`.
_fields: dict[str, Any] = {
    name: (Any, Field(default=None, validation_alias=info.validation_alias))
    for name, info in RouteSpec.model_fields.items()
}
_fields["icon"] = (str | None, None)
RouteBody: type[BaseModel] = create_model(
    "RouteBody", __config__=ConfigDict(populate_by_name=True, extra="ignore"), **_fields
)


class RouteOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    routeId: str
    appId: str
    pathBase: str
    to: str
    websocket: bool
    stripPrefix: bool
    scopes: list[str]
    status: str | None = None
    healthInfo: dict[str, Any] | None = None


def _catalog(request: Request) -> CatalogService:
    catalog: CatalogService = services_of(request).domains.catalog
    return catalog


def _validation(exc: ValidationError) -> ApiError:
    aliases = {"route_id": "routeId", "path_base": "pathBase", "app_id": "appId"}
    errors = [{**e, "loc": tuple(aliases.get(str(p), p) for p in e.get("loc", ()))} for e in exc.errors()]
    return ApiError(400, "VALIDATION_ERROR", validation_message(errors))


def _spec(data: dict[str, Any]) -> RouteSpec:
    try:
        return RouteSpec.model_validate(data)
    except ValidationError as exc:
        raise _validation(exc) from None


def _body(body: BaseModel) -> tuple[dict[str, Any], str | None]:
    data = body.model_dump(exclude_unset=True)
    icon = data.pop("icon", None)
    return data, icon


@router.get(
    "/routes",
    response_model=list[RouteOut],
    dependencies=[Depends(require("read:catalog"))],
    summary="All proxy routes with health information",
)
async def list_routes(request: Request) -> list[dict[str, Any]]:
    catalog = _catalog(request)
    return [catalog.route_json(r) for r in catalog.sorted_routes()]


@router.get(
    "/routes/{route_id}",
    response_model=RouteOut,
    dependencies=[Depends(require("read:catalog"))],
    summary="One route",
)
async def get_route(route_id: str, request: Request) -> dict[str, Any]:
    catalog = _catalog(request)
    spec = catalog.route(route_id)
    if spec is None:
        raise ApiError(404, "ROUTE_NOT_FOUND", f"Route {route_id!r} not found")
    return catalog.route_json(spec)


@router.post("/routes", response_model=RouteOut, status_code=201, summary="Create a route")
async def create_route(
    request: Request,
    body: RouteBody = Body(...),
    principal: Principal = Depends(require("write:*")),
) -> dict[str, Any]:
    data, icon = _body(body)
    if not data.get("route_id"):
        app_id = data.get("app_id")
        if not app_id:
            raise ApiError(400, "VALIDATION_ERROR", "routeId: is required")
        data["route_id"] = f"route_{app_id}"
    catalog = _catalog(request)
    spec = await catalog.create_route(_spec(data), icon=icon, actor=principal.id, ip=client_ip(request))
    return catalog.route_json(spec)


@router.put("/routes/{route_id}", response_model=RouteOut, summary="Replace a route")
async def replace_route(
    route_id: str,
    request: Request,
    body: RouteBody = Body(...),
    principal: Principal = Depends(require("write:*")),
) -> dict[str, Any]:
    catalog = _catalog(request)
    if catalog.route(route_id) is None:
        raise ApiError(404, "ROUTE_NOT_FOUND", f"Route {route_id!r} not found")
    data, icon = _body(body)
    data["route_id"] = route_id
    spec = await catalog.replace_route(_spec(data), icon=icon, actor=principal.id, ip=client_ip(request))
    return catalog.route_json(spec)


@router.patch("/routes/{route_id}", response_model=RouteOut, summary="Change some fields of a route")
async def patch_route(
    route_id: str,
    request: Request,
    body: RouteBody = Body(...),
    principal: Principal = Depends(require("write:*")),
) -> dict[str, Any]:
    catalog = _catalog(request)
    current = catalog.route(route_id)
    if current is None:
        raise ApiError(404, "ROUTE_NOT_FOUND", f"Route {route_id!r} not found")
    data, icon = _body(body)
    merged = {**current.model_dump(), **{k: v for k, v in data.items() if v is not None}}
    merged["route_id"] = route_id
    if current.strip_prefix and data.get("strip_prefix") is False and "rewrite_html" not in data:
        merged["rewrite_html"] = False
    spec = await catalog.replace_route(
        _spec(merged), icon=icon, actor=principal.id, ip=client_ip(request), fields=sorted(data)
    )
    return catalog.route_json(spec)


@router.delete("/routes/{route_id}", status_code=204, summary="Delete a route", response_class=Response)
async def delete_route(
    route_id: str, request: Request, principal: Principal = Depends(require("write:*"))
) -> Response:
    await _catalog(request).remove_route(route_id, actor=principal.id, ip=client_ip(request))
    return Response(status_code=204)


def install(api: FastAPI, services: Services) -> None:
    api.include_router(router)
