"""Identity feature: installs the auth, audit and activity services and mounts every identity router.

This module also holds the user endpoints (setup, login, me, logout), device pairing with a bootstrap
token (`POST /auth/pair`) and token refresh.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from nekzus.api.models import ERROR_RESPONSES
from nekzus.api.requests import auth_service, ip_of, read_json, validate
from nekzus.api.security import require
from nekzus.auth.principal import Principal
from nekzus.auth.service import SUPPORTED_PLATFORMS, USERNAME_RE, valid_device_id
from nekzus.errors import NekzusError
from nekzus.events.types import EventType
from nekzus.http.errors import ApiError
from nekzus.services import Services
from nekzus.timefmt import rfc3339_or_none

router = APIRouter(prefix="/api/v1/auth", tags=["auth"], responses=ERROR_RESPONSES)

PAIR_BODY_LIMIT = 10 * 1024
MIN_PASSWORD = 8
MAX_PASSWORD = 1024


class Credentials(BaseModel):
    username: str | None = None
    password: str | None = None
    setup_token: str | None = Field(default=None, validation_alias=AliasChoices("setupToken", "setup_token"))


class UserOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: int
    username: str
    createdAt: str | None
    isActive: bool


class SetupStatus(BaseModel):
    setupRequired: bool
    hasUsers: bool


class TokenResponse(BaseModel):
    model_config = ConfigDict(extra="allow")
    accessToken: str
    expiresIn: int
    scopes: list[str]
    deviceId: str


def user_json(user: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": user.id,
        "username": user.username,
        "createdAt": rfc3339_or_none(user.created_at),
        "isActive": bool(user.is_active),
    }
    if user.last_login is not None:
        out["lastLogin"] = rfc3339_or_none(user.last_login)
    return out


def _fields(body: Credentials) -> tuple[str, str]:
    if not body.username or not body.password:
        raise ApiError(400, "MISSING_FIELDS", "username and password are required")
    return body.username, body.password


@router.get("/setup-status", summary="Whether first-run setup is still needed", response_model=SetupStatus)
async def setup_status(request: Request) -> dict[str, bool]:
    count = await auth_service(request).user_count()
    return {"setupRequired": count == 0, "hasUsers": count > 0}


@router.post("/setup", status_code=201, summary="Create the first admin user (Part A §8)")
async def setup(request: Request, body: Credentials) -> dict[str, str]:
    service = auth_service(request)
    ip = ip_of(request)
    if await service.user_count() > 0:
        await service.audit("auth.setup", actor="anonymous", ip=ip, details={"reason": "done"}, success=False)
        raise ApiError(
            400, "SETUP_ALREADY_COMPLETED", "Setup has already been completed. Please use the login page."
        )
    token = request.headers.get("x-setup-token") or body.setup_token or ""
    if not service.trusted(ip) and not service.setup_token_ok(token):
        await service.audit(
            "auth.setup", actor="anonymous", ip=ip, details={"reason": "untrusted"}, success=False
        )
        raise ApiError(
            403,
            "FORBIDDEN",
            "Setup is only allowed from a trusted network or with the setup token from the server log",
        )
    username, password = _fields(body)
    if not USERNAME_RE.match(username):
        raise ApiError(
            400, "USER_CREATION_FAILED", "username must be 1-255 characters of letters, digits, _ . -"
        )
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ApiError(
            400,
            "USER_CREATION_FAILED",
            f"password must be between {MIN_PASSWORD} and {MAX_PASSWORD} characters",
        )
    await service.create_first_user(username, password)
    await service.audit("auth.setup", actor=f"user-{username}", target=f"user-{username}", ip=ip)
    return {"message": "Setup completed successfully. Please log in.", "username": username}


@router.post("/login", summary="Log in with username and password")
async def login(request: Request, body: Credentials) -> Any:
    service = auth_service(request)
    ip = ip_of(request)
    username, password = _fields(body)
    if len(password) > MAX_PASSWORD or len(username) > 255:
        raise ApiError(401, "INVALID_CREDENTIALS", "Invalid username or password")
    locked = service.lockout.locked_for(username)
    if locked > 0:
        service.metrics.auth_login_total.labels("locked").inc()
        await service.audit(
            "auth.login", actor=f"user-{username}", ip=ip, details={"reason": "locked"}, success=False
        )
        raise ApiError(
            429,
            "RATE_LIMITED",
            "Too many failed login attempts, try again later",
            headers={"Retry-After": str(max(1, int(locked)))},
        )
    user = await service.find_user(username)
    usable = user is not None and user.is_active
    ok = await service.passwords.verify(user.password_hash if usable and user else None, password)
    if not ok or user is None:
        just_locked = service.lockout.failed(username)
        service.metrics.auth_login_total.labels("failure").inc()
        await service.audit(
            "auth.login",
            actor=f"user-{username}",
            ip=ip,
            details={"reason": "bad credentials", "locked": just_locked},
            success=False,
        )
        raise ApiError(401, "INVALID_CREDENTIALS", "Invalid username or password")
    service.lockout.succeeded(username)
    await service.mark_login(user)
    token = service.issue_user_token(username)
    service.metrics.auth_login_total.labels("success").inc()
    await service.audit("auth.login", actor=f"user-{username}", target=f"user-{username}", ip=ip)
    return {"token": token, "expiresIn": round(service.codec.ttl), "user": user_json(user)}


@router.get("/me", summary="The logged-in dashboard user")
async def me(request: Request, principal: Principal = Depends(require(strict=True))) -> Any:
    if principal.kind != "user":
        raise ApiError(401, "INVALID_TOKEN", "Not a user session token")
    user = await auth_service(request).find_user(principal.name)
    if user is None:
        raise ApiError(401, "USER_NOT_FOUND", "User not found")
    if not user.is_active:
        raise ApiError(401, "USER_DISABLED", "User account is disabled")
    return {"user": user_json(user)}


@router.post("/logout", summary="Log out: the presented token is revoked server-side")
async def logout(request: Request, principal: Principal = Depends(require(strict=True))) -> dict[str, str]:
    service = auth_service(request)
    await service.revoke_token(principal)
    await service.audit("auth.logout", actor=principal.id, target=principal.token_id or "", ip=ip_of(request))
    return {"message": "Logged out successfully"}


@router.post(
    "/refresh", summary="A fresh token for a valid or recently expired one", response_model=TokenResponse
)
async def refresh(request: Request) -> dict[str, Any]:
    token = _bearer(request)
    if not token or token.startswith("nekzus_"):
        raise ApiError(401, "UNAUTHORIZED", "A device or user JWT is required")
    service = auth_service(request)
    result: dict[str, Any] = await service.refresh(token, ip_of(request))
    return result


class PairDevice(BaseModel):
    id: str | None = Field(default=None, max_length=255)
    model: str = Field(default="", max_length=255)
    name: str = Field(
        default="", max_length=255, validation_alias=AliasChoices("name", "deviceName", "device_name")
    )
    platform: str
    platform_version: str = Field(
        default="", max_length=64, validation_alias=AliasChoices("platformVersion", "platform_version")
    )
    push_token: str = Field(
        default="", max_length=512, validation_alias=AliasChoices("pushToken", "push_token")
    )

    @field_validator("platform")
    @classmethod
    def _platform(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in SUPPORTED_PLATFORMS:
            raise ValueError(f"must be one of {', '.join(SUPPORTED_PLATFORMS)}")
        return value

    @field_validator("id")
    @classmethod
    def _id(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not valid_device_id(value):
            raise ValueError("must be 1-100 printable characters without '/', '\\' or '..'")
        return value


class PairRequest(BaseModel):
    device: PairDevice


@router.post(
    "/pair",
    summary="Pair a device with a bootstrap token",
    response_model=TokenResponse,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": PairRequest.model_json_schema()}},
        }
    },
)
async def pair(request: Request) -> dict[str, Any]:
    import secrets

    service = auth_service(request)
    services: Services = request.app.state.services
    ip = ip_of(request)
    token = _bearer(request)
    if not token:
        raise ApiError(401, "UNAUTHORIZED", "A bootstrap token is required")
    try:
        grant = service.pairing.authorize(token)
    except NekzusError as exc:
        services.metrics.auth_pairing_total.labels("failure", "unknown").inc()
        await service.audit(
            "device.pair", actor="anonymous", ip=ip, details={"code": exc.code}, success=False
        )
        raise
    body = validate(PairRequest, await read_json(request, PAIR_BODY_LIMIT))
    device = body.device
    device_id = device.id or "dev-" + secrets.token_urlsafe(8)
    name = device.name.strip() or device.model.strip() or f"{device.platform} Device"
    existed = device_id in service.devices
    started = time.monotonic()
    result: dict[str, Any] = await service.pair_device(
        {
            "id": device_id,
            "name": name,
            "platform": device.platform,
            "platformVersion": device.platform_version,
            "model": device.model,
            "pushToken": device.push_token,
        }
    )
    service.pairing.consume(grant)
    if existed:
        with contextlib.suppress(Exception):  # closing stale sockets is best effort
            await services.domains.hub.close_device(device_id, "device re-paired")
    services.bus.emit(
        EventType.DEVICE_PAIRED, {"deviceId": device_id, "deviceName": name, "platform": device.platform}
    )
    services.metrics.auth_pairing_total.labels("success", device.platform).inc()
    services.metrics.auth_pairing_duration_seconds.observe(time.monotonic() - started)
    await service.activity(
        "device_paired", f"Device paired: {name}", icon="Smartphone", icon_class="success", key=device_id
    )
    await service.audit(
        "device.paired",
        actor=device_id,
        target=device_id,
        ip=ip,
        details={"platform": device.platform, "model": device.model, "bootstrap": grant.kind},
    )
    return result


def _bearer(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def install(api: FastAPI, services: Services) -> None:
    from nekzus.api import activity, admin, apikeys, audit, devices, pairing, stats

    api.include_router(router)
    for module in (pairing, devices, apikeys, audit, activity, admin, stats):
        api.include_router(module.router)
