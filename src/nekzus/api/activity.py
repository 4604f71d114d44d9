"""The dashboard's activity feed (`GET /api/v1/activity/recent`), persisted and paginated."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from nekzus.api.deps import services_of
from nekzus.api.models import ERROR_RESPONSES
from nekzus.api.requests import page_window
from nekzus.api.security import require
from nekzus.auth.principal import Principal

router = APIRouter(tags=["activity"], responses=ERROR_RESPONSES)

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000


@router.get(
    "/api/v1/activity/recent",
    summary="Recent activity, newest first (array; a page object when limit/offset are given)",
)
async def recent(
    request: Request,
    limit: str | None = Query(None, description="max events (default 50)"),
    offset: str | None = Query(None, description="events to skip"),
    _principal: Principal = Depends(require("read:events")),
) -> Any:
    lim, off = page_window(limit, offset, default=DEFAULT_LIMIT, maximum=MAX_LIMIT, minimum=0)
    service = services_of(request).domains.activity
    items, total = await service.recent(lim, off)
    if limit is None and offset is None:
        return items
    return {"activities": items, "total": total, "limit": lim, "offset": off}
