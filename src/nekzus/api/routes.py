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


async def _after_change(
    request: Request,
    principal: Principal,
    action: str,
    route_id: str,
    details: dict[str, Any] | None = None,
    *,
    apps_before: set[str] | None = None,
) -> None:
    """Audit a route change (route.created/updated/deleted), and the apps it created or removed."""
    audit = services_of(request).domains.audit
    actor = principal.id
    ip = client_ip(request)
    await audit.record(action, actor=actor, target=route_id, ip=ip, details=details)
    if apps_before is None:
        return
    apps_now = set(_catalog(request).apps)
    for app_id in sorted(apps_now - apps_before):
        await audit.record("app.registered", actor=actor, target=app_id, ip=ip, details={"routeId": route_id})
    for app_id in sorted(apps_before - apps_now):
        await audit.record("app.deleted", actor=actor, target=app_id, ip=ip, details={"routeId": route_id})


async def _save(request: Request, spec: RouteSpec, icon: str | None) -> RouteSpec:
    return await _catalog(request).save_route(spec, icon=icon)


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
    if catalog.route(str(data["route_id"]).strip()) is not None:
        raise ApiError(409, "ROUTE_CONFLICT", f"route {data['route_id']!r} already exists")
    apps_before = set(catalog.apps)
    spec = await _save(request, _spec(data), icon)
    await _after_change(
        request,
        principal,
        "route.created",
        spec.route_id,
        {"pathBase": spec.path_base, "appId": spec.app_id, "to": spec.to},
        apps_before=apps_before,
    )
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
    apps_before = set(catalog.apps)
    spec = await _save(request, _spec(data), icon)
    await _after_change(
        request,
        principal,
        "route.updated",
        route_id,
        {"replaced": True, "pathBase": spec.path_base, "appId": spec.app_id, "to": spec.to},
        apps_before=apps_before,
    )
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
    apps_before = set(catalog.apps)
    spec = await _save(request, _spec(merged), icon)
    await _after_change(
        request, principal, "route.updated", route_id, {"fields": sorted(data)}, apps_before=apps_before
    )
    return catalog.route_json(spec)


@router.delete("/routes/{route_id}", status_code=204, summary="Delete a route", response_class=Response)
async def delete_route(
    route_id: str, request: Request, principal: Principal = Depends(require("write:*"))
) -> Response:
    catalog = _catalog(request)
    current = catalog.route(route_id)
    apps_before = set(catalog.apps)
    if not await catalog.delete_route(route_id):
        raise ApiError(404, "ROUTE_NOT_FOUND", f"Route {route_id!r} not found")
    details = {"pathBase": current.path_base, "appId": current.app_id} if current is not None else None
    await _after_change(request, principal, "route.deleted", route_id, details, apps_before=apps_before)
    return Response(status_code=204)


def install(api: FastAPI, services: Services) -> None:
    api.include_router(router)
