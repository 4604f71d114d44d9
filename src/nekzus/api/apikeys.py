"""API keys: create (key shown once), list, get, revoke or delete. access:admin only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from nekzus.api.models import ERROR_RESPONSES
from nekzus.api.requests import auth_service, ip_of
from nekzus.api.security import require
from nekzus.auth.principal import ADMIN, Principal
from nekzus.auth.service import valid_scope
from nekzus.http.errors import ApiError
from nekzus.timefmt import parse_rfc3339

router = APIRouter(prefix="/api/v1/apikeys", tags=["apikeys"], responses=ERROR_RESPONSES)


class ApiKeyCreate(BaseModel):
    name: str
    scopes: list[str]
    expires_at: str | None = Field(default=None, validation_alias=AliasChoices("expiresAt", "expires_at"))

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        value = value.strip()
        if not value or len(value) > 255:
            raise ValueError("must be 1-255 characters")
        return value

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one scope is required")
        if len(value) > 50:
            raise ValueError("at most 50 scopes")
        bad = [s for s in value if not valid_scope(s)]
        if bad:
            raise ValueError(f"invalid scope {bad[0]!r}")
        return value


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    name: str
    prefix: str
    scopes: list[str]
    expiresAt: str | None
    lastUsedAt: str | None = None
    createdAt: str | None
    createdBy: str
    revokedAt: str | None = None


class ApiKeyCreated(ApiKeyOut):
    key: str


@router.get("", summary="All API keys (never the key itself)", response_model=list[ApiKeyOut])
async def list_keys(request: Request, _p: Principal = Depends(require(ADMIN))) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = await auth_service(request).list_api_keys()
    return result


@router.post(
    "",
    status_code=201,
    summary="Create an API key; the key is returned only here",
    response_model=ApiKeyCreated,
)
async def create_key(
    request: Request, body: ApiKeyCreate, principal: Principal = Depends(require(ADMIN))
) -> dict[str, Any]:
    expires_at: float | None = None
    if body.expires_at:
        try:
            expires_at = parse_rfc3339(body.expires_at)
        except ValueError:
            raise ApiError(400, "VALIDATION_ERROR", "expiresAt: must be an RFC3339 timestamp") from None
    service = auth_service(request)
    if expires_at is not None and expires_at <= service.clock():
        raise ApiError(400, "VALIDATION_ERROR", "expiresAt: must be in the future")
    row, key = await service.create_api_key(body.name, body.scopes, expires_at, principal.id)
    await service.audit(
        "apikey.created",
        actor=principal.id,
        target=row.id,
        ip=ip_of(request),
        details={"name": row.name, "scopes": sorted(set(body.scopes)), "prefix": row.prefix},
    )
    out: dict[str, Any] = service.api_key_json(row)
    out["key"] = key
    return out


@router.get("/{key_id}", summary="One API key (never the key itself)", response_model=ApiKeyOut)
async def get_key(request: Request, key_id: str, _p: Principal = Depends(require(ADMIN))) -> dict[str, Any]:
    service = auth_service(request)
    result: dict[str, Any] = service.api_key_json(await service.get_api_key(key_id))
    return result


@router.delete("/{key_id}", summary="Revoke an API key (?permanent=true deletes it)")
async def delete_key(
    request: Request,
    key_id: str,
    permanent: bool = Query(False, description="delete the key instead of revoking it"),
    principal: Principal = Depends(require(ADMIN)),
) -> dict[str, str]:
    service = auth_service(request)
    row = await service.revoke_api_key(key_id, permanent)
    await service.audit(
        "apikey.deleted" if permanent else "apikey.revoked",
        actor=principal.id,
        target=key_id,
        ip=ip_of(request),
        details={"name": row.name, "permanent": permanent},
    )
    return {"message": "API key revoked successfully"}
