"""Small helpers shared by routers."""

from __future__ import annotations

from fastapi import Request

from nekzus.services import Services


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def client_ip(request: Request) -> str:
    ip = request.scope.get("state", {}).get("client_ip")
    if ip:
        return str(ip)
    return request.client.host if request.client else "unknown"
