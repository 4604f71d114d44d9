"""`GET /api/v1/ws`: the real-time event hub (REF WebSocket; behaviour B §12)."""

from __future__ import annotations

from fastapi import FastAPI, WebSocket

from nekzus.services import Services


def install(api: FastAPI, services: Services) -> None:
    from nekzus.events.hub import Hub

    hub = Hub(services)
    services.domains["ws"] = hub
    if "websocket" not in services.capabilities:
        services.capabilities.append("websocket")
    hub.start()
    services.on_shutdown("ws", hub.stop)

    @api.websocket("/api/v1/ws")
    async def websocket_endpoint(websocket: WebSocket) -> None:
        await hub.serve(websocket)
