"""Paired devices: list, get, rename or rescope, revoke.

The same handlers serve /api/v1/admin/devices, the path the dashboard uses.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from nekzus.api.deps import services_of
from nekzus.api.models import ERROR_RESPONSES
from nekzus.api.requests import (
    MAX_INT_PARAM,
    auth_service,
    deny,
    ip_of,
    page_window,
    read_json,
    require_self_or,
    validate,
)
from nekzus.api.security import require
from nekzus.auth.principal import ADMIN, Principal
from nekzus.auth.service import valid_device_id, valid_scope
from nekzus.http.errors import ApiError
from nekzus.timefmt import rfc3339

router = APIRouter(tags=["devices"], responses=ERROR_RESPONSES)

PATCH_BODY_LIMIT = 10 * 1024
PREFIXES = ("/api/v1/devices", "/api/v1/admin/devices")


class DeviceOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    deviceId: str
    deviceName: str
    scopes: list[str]
    createdAt: str | None
    lastSeenAt: str | None


class DevicePage(BaseModel):
    devices: list[DeviceOut]
    total: int
    limit: int
    offset: int


class DevicePatch(BaseModel):
    device_name: str | None = Field(
        default=None, validation_alias=AliasChoices("deviceName", "device_name", "name")
    )
    scopes: list[str] | None = None

    @field_validator("device_name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value or len(value) > 255 or not value.isprintable():
            raise ValueError("must be 1-255 printable characters")
        return value

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if len(value) > 50:
            raise ValueError("at most 50 scopes")
        bad = [s for s in value if not valid_scope(s)]
        if bad:
            raise ValueError(f"invalid scope {bad[0]!r}")
        return value


def _device_id(raw: str) -> str:
    device_id = raw.rstrip("/")
    if not valid_device_id(device_id):
        raise ApiError(400, "INVALID_DEVICE_ID", "Device ID required")
    return device_id


async def list_devices(
    request: Request,
    limit: str | None = Query(None, description="max devices (-1 = all)"),
    offset: str | None = Query(None, description="devices to skip"),
    _principal: Principal = Depends(require()),
) -> Any:
    lim, off = page_window(limit, offset, default=-1, maximum=MAX_INT_PARAM, minimum=-1)  # -1 = all
    items, total = await auth_service(request).list_devices(lim, off)
    if limit is None and offset is None:
        return items
    return {"devices": items, "total": total, "limit": lim, "offset": off}


async def get_device(
    request: Request, device_id: str, _principal: Principal = Depends(require())
) -> dict[str, Any]:
    result: dict[str, Any] = await auth_service(request).get_device(_device_id(device_id))
    return result


async def patch_device(
    request: Request, device_id: str, principal: Principal = Depends(require_self_or("write:*"))
) -> dict[str, Any]:
    target = _device_id(device_id)
    body = validate(DevicePatch, await read_json(request, PATCH_BODY_LIMIT))
    if body.scopes is not None and not principal.allows(ADMIN):
        await deny(request, principal, (ADMIN,))
        raise ApiError(403, "FORBIDDEN", "Changing device scopes requires access:admin")
    if body.device_name is None and body.scopes is None:
        raise ApiError(400, "VALIDATION_ERROR", "deviceName: is required")
    enrollment = services_of(request).domains.enrollment
    return await enrollment.update(
        target, body.device_name, body.scopes, actor=principal.id, ip=ip_of(request)
    )


async def delete_device(
    request: Request, device_id: str, principal: Principal = Depends(require_self_or("write:*"))
) -> dict[str, Any]:
    target = _device_id(device_id)
    await services_of(request).domains.enrollment.revoke(target, actor=principal.id, ip=ip_of(request))
    return {
        "status": "revoked",
        "deviceId": target,
        "message": "Device access has been revoked. Existing tokens are now invalid.",
        "revokedAt": rfc3339(),
    }


for _prefix in PREFIXES:
    router.add_api_route(
        _prefix,
        list_devices,
        methods=["GET"],
        summary="List paired devices (array, or a page with limit/offset)",
        responses={200: {"model": list[DeviceOut] | DevicePage}},
    )
    router.add_api_route(
        _prefix + "/{device_id:path}",
        get_device,
        methods=["GET"],
        summary="One device",
        response_model=DeviceOut,
    )
    router.add_api_route(
        _prefix + "/{device_id:path}",
        patch_device,
        methods=["PATCH"],
        summary="Rename a device (itself or write:*); change scopes (access:admin)",
        response_model=DeviceOut,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": DevicePatch.model_json_schema(by_alias=False)}},
            }
        },
    )
    router.add_api_route(
        _prefix + "/{device_id:path}",
        delete_device,
        methods=["DELETE"],
        summary="Revoke a device: every token it holds stops working at once",
    )
