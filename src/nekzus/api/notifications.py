"""Admin view of the notification queue: `/api/v1/notifications...`.

Registered even when `notifications.enabled` is false (the stats then say `enabled: false`).
Every route needs `access:admin`: the queue spans all devices.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from nekzus.api.deps import services_of
from nekzus.api.security import require
from nekzus.http.errors import ApiError
from nekzus.services import Services

if TYPE_CHECKING:
    from nekzus.events.notifications import NotificationQueue

ADMIN = Depends(require("access:admin"))

router = APIRouter(prefix="/api/v1/notifications", tags=["notifications"])


class NotificationOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: int
    notificationId: str
    deviceId: str
    deviceName: str
    type: str
    status: str
    retryCount: int
    maxRetries: int
    createdAt: str | None
    expiresAt: str | None
    deliveredAt: str | None
    lastAttemptAt: str | None
    errorMessage: str | None = None
    isStale: bool


class NotificationList(BaseModel):
    notifications: list[NotificationOut]
    total: int
    limit: int
    offset: int


class NotificationStats(BaseModel):
    totalPending: int
    totalDelivered: int
    totalFailed: int
    totalExpired: int
    totalDismissed: int
    staleCount: int
    enabled: bool


class StaleDevice(BaseModel):
    deviceId: str
    deviceName: str
    count: int
    oldestAt: str | None
    newestAt: str | None
    types: list[str]
    totalRetries: int


class StaleReport(BaseModel):
    staleThresholdHours: int
    devices: list[StaleDevice]


class StatusReply(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: str
    message: str


class RetryMany(BaseModel):
    ids: list[int] = Field(default_factory=list)


def _queue(request: Request) -> NotificationQueue:
    return services_of(request).domains.notifications


def _parse_id(raw: str) -> int:
    if not raw.isdigit() or len(raw) > 18:
        raise ApiError(400, "INVALID_ID", "Notification id must be a number")
    return int(raw)


def _clamp(value: str | None, default: int, low: int, high: int) -> int:
    try:
        number = int(value) if value is not None else default
    except ValueError:
        return default
    return default if number < low else min(number, high)


@router.get("", response_model=NotificationList, dependencies=[ADMIN], summary="List notifications")
async def list_notifications(
    request: Request,
    status: str | None = Query(None, max_length=32),
    device_id: str | None = Query(None, max_length=255, alias="device_id"),
    deviceId: str | None = Query(None, max_length=255),
    type: str | None = Query(None, max_length=128),
    limit: str | None = Query(None),
    offset: str | None = Query(None),
) -> dict[str, Any]:
    lim = _clamp(limit, 50, 1, 200)
    off = _clamp(offset, 0, 0, 1 << 31)
    rows, total = await _queue(request).list_rows(
        status=status or None,
        device_id=device_id or deviceId or None,
        type_=type or None,
        limit=lim,
        offset=off,
    )
    return {"notifications": rows, "total": total, "limit": lim, "offset": off}


@router.get("/stats", response_model=NotificationStats, dependencies=[ADMIN], summary="Queue counters")
async def notification_stats(request: Request) -> dict[str, Any]:
    stats: dict[str, Any] = await _queue(request).stats()
    return stats


@router.get("/stale", response_model=StaleReport, dependencies=[ADMIN], summary="Pending for over 24 h")
async def stale_notifications(request: Request) -> dict[str, Any]:
    report: dict[str, Any] = await _queue(request).stale()
    return report


@router.delete("/delivered", response_model=StatusReply, dependencies=[ADMIN], summary="Clear delivered")
async def clear_delivered(request: Request) -> dict[str, Any]:
    count = await _queue(request).clear_delivered()
    return {"status": "cleared", "count": count, "message": "Delivered notifications cleared"}


@router.delete(
    "/device/{device_id}",
    response_model=StatusReply,
    dependencies=[ADMIN],
    summary="Dismiss a device's queue",
)
async def dismiss_device(request: Request, device_id: str) -> dict[str, Any]:
    if not device_id or len(device_id) > 255:
        raise ApiError(400, "INVALID_DEVICE_ID", "Device ID required")
    count = await _queue(request).dismiss_device(device_id)
    return {
        "status": "dismissed",
        "deviceId": device_id,
        "count": count,
        "message": "Notifications dismissed for device",
    }


@router.post("/retry", response_model=StatusReply, dependencies=[ADMIN], summary="Retry several")
async def retry_many(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, RecursionError):  # malformed, or nested deeper than the parser will go
        raise ApiError(400, "INVALID_REQUEST", "Invalid JSON payload") from None
    ids = body.get("ids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not ids:
        raise ApiError(400, "INVALID_REQUEST", "ids must be a non-empty list")
    if len(ids) > 1000 or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise ApiError(400, "INVALID_REQUEST", "ids must be at most 1000 numbers")
    count = await _queue(request).retry_many(ids)
    return {"status": "queued", "count": count, "message": "Notifications queued for retry"}


@router.delete("/{notification_id}", response_model=StatusReply, dependencies=[ADMIN], summary="Dismiss one")
async def dismiss_one(request: Request, notification_id: str) -> dict[str, Any]:
    nid = _parse_id(notification_id)
    await _queue(request).dismiss(nid)
    return {"status": "dismissed", "id": nid, "message": "Notification dismissed"}


@router.post(
    "/{notification_id}/retry", response_model=StatusReply, dependencies=[ADMIN], summary="Retry one"
)
async def retry_one(request: Request, notification_id: str) -> dict[str, Any]:
    nid = _parse_id(notification_id)
    outcome = await _queue(request).retry(nid)
    messages = {
        "sent": "Notification sent to device (awaiting confirmation)",
        "offline": "Device not connected",
        "queued": "Notification queued for retry",
    }
    return {"status": outcome, "id": nid, "message": messages[outcome]}


def install(api: FastAPI, services: Services) -> None:
    api.include_router(router)
