"""Identity feature: installs the auth, audit and activity services and mounts every identity router.

This module also holds the user endpoints (setup, login, me, logout), device pairing with a bootstrap
token (`POST /auth/pair`) and token refresh.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from nekzus.api.deps import services_of
from nekzus.api.models import ERROR_RESPONSES
from nekzus.api.requests import auth_service, ip_of, read_json, validate
from nekzus.api.security import require
from nekzus.auth.enrollment import DEVICE_TOKEN_HEADER, NewDevice
from nekzus.auth.login import login as login_user
from nekzus.auth.login import setup_first_user
from nekzus.auth.models import User
from nekzus.auth.principal import Principal
from nekzus.auth.service import SUPPORTED_PLATFORMS, valid_device_id
from nekzus.http.errors import ApiError
from nekzus.services import Services
from nekzus.timefmt import rfc3339_or_none

router = APIRouter(prefix="/api/v1/auth", tags=["auth"], responses=ERROR_RESPONSES)

PAIR_BODY_LIMIT = 10 * 1024


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


def user_json(user: User) -> dict[str, Any]:
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


@router.post("/setup", status_code=201, summary="Create the first admin user")
async def setup(request: Request, body: Credentials) -> dict[str, str]:
    # Missing fields are reported only after the setup gate: a finished setup says so first.
    username, password = body.username, body.password
    setup_token = request.headers.get("x-setup-token") or body.setup_token or ""
    await setup_first_user(
        auth_service(request), username, password, setup_token=setup_token, ip=ip_of(request)
    )
    return {"message": "Setup completed successfully. Please log in.", "username": username or ""}


@router.post("/login", summary="Log in with username and password")
async def login(request: Request, body: Credentials) -> Any:
    service = auth_service(request)
    username, password = _fields(body)
    token, user = await login_user(service, username, password, ip=ip_of(request))
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
    token = _bearer(request)
    if not token:
        raise ApiError(401, "UNAUTHORIZED", "A bootstrap token is required")
    # The body is read and validated before the token is looked at: a malformed request must not spend it.
    body = validate(PairRequest, await read_json(request, PAIR_BODY_LIMIT))
    device = body.device
    new = NewDevice(
        id=device.id,
        name=device.name,
        platform=device.platform,
        platform_version=device.platform_version,
        model=device.model,
        push_token=device.push_token,
    )
    flow = services_of(request).domains.enrollment
    proof = request.headers.get(DEVICE_TOKEN_HEADER, "")
    return await flow.pair(token, new, proof=proof, ip=ip_of(request))


def _bearer(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def install(api: FastAPI, services: Services) -> None:
    from nekzus.api import activity, admin, apikeys, audit, devices, pairing, stats

    api.include_router(router)
    for module in (pairing, devices, apikeys, audit, activity, admin, stats):
        api.include_router(module.router)
