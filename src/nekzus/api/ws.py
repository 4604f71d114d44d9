"""`GET /api/v1/ws`: the real-time event hub."""

from __future__ import annotations

from fastapi import FastAPI, WebSocket

from nekzus.services import Services


def install(api: FastAPI, services: Services) -> None:
    hub = services.domains.hub

    @api.websocket("/api/v1/ws")
    async def websocket_endpoint(websocket: WebSocket) -> None:
        await hub.serve(websocket)
