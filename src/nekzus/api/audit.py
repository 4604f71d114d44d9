"""Audit log reads (`GET /api/v1/audit-logs`): strict JWT with access:admin."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict

from nekzus.api.deps import services_of
from nekzus.api.models import ERROR_RESPONSES
from nekzus.api.requests import listing, page_window
from nekzus.api.security import require
from nekzus.auth.principal import ADMIN, Principal

router = APIRouter(tags=["audit"], responses=ERROR_RESPONSES)

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class AuditEntry(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: int
    action: str
    actor: str
    target: str
    details: str
    ip: str
    timestamp: str | None


class AuditPage(BaseModel):
    model_config = ConfigDict(extra="allow")
    logs: list[AuditEntry]
    limit: int
    offset: int
    count: int


@router.get("/api/v1/audit-logs", summary="Security audit log, newest first", response_model=AuditPage)
async def audit_logs(
    request: Request,
    action: str = Query("", max_length=64, description="only this action"),
    actor: str = Query("", max_length=255, description="only this actor (device id, user-<name>, …)"),
    limit: str | None = Query(None, description="max rows (default 100, max 1000)"),
    offset: str | None = Query(None, description="rows to skip"),
    _principal: Principal = Depends(require(ADMIN, strict=True)),
) -> dict[str, Any]:
    lim, off = page_window(limit, offset, default=DEFAULT_LIMIT, maximum=MAX_LIMIT)
    service = services_of(request).domains.audit
    logs, total = await service.query(action=action.strip(), actor=actor.strip(), limit=lim, offset=off)
    return listing("logs", logs, limit=lim, offset=off, total=total)
