"""Admin view of the WebSocket hub: list connections, force-disconnect a device."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from pydantic import BaseModel

from nekzus.api.deps import services_of
from nekzus.api.security import require
from nekzus.http.errors import ApiError
from nekzus.services import Services

if TYPE_CHECKING:
    from nekzus.events.hub import Hub

router = APIRouter(prefix="/api/v1/admin/websocket", tags=["admin"])


class ClientInfo(BaseModel):
    id: str
    deviceId: str
    kind: str
    name: str
    remoteAddr: str
    userAgent: str
    connectedAt: str
    subscriptions: list[str]
    queued: int
    messagesSent: int
    messagesReceived: int
    dropped: int


class ClientsReply(BaseModel):
    totalConnections: int
    devices: dict[str, int]
    clients: list[ClientInfo]


class DisconnectReply(BaseModel):
    deviceId: str
    disconnectedCount: int


def _hub(request: Request) -> Hub:
    return services_of(request).domains.hub


@router.get(
    "/clients",
    response_model=ClientsReply,
    dependencies=[Depends(require("access:admin"))],
    summary="Open WebSocket connections",
)
async def websocket_clients(request: Request) -> dict[str, Any]:
    summary: dict[str, Any] = _hub(request).summary()
    return summary


@router.delete(
    "/disconnect/{device_id}",
    response_model=DisconnectReply,
    dependencies=[Depends(require("access:admin"))],
    summary="Close every WebSocket connection of a device",
)
async def websocket_disconnect(request: Request, device_id: str) -> dict[str, Any]:
    if not device_id or len(device_id) > 255:
        raise ApiError(400, "INVALID_DEVICE_ID", "Device ID required")
    count = await _hub(request).close_device(device_id, "disconnected by administrator")
    return {"deviceId": device_id, "disconnectedCount": count}


def install(api: FastAPI, services: Services) -> None:
    api.include_router(router)
