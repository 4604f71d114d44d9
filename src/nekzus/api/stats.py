"""Dashboard figures: `GET /api/v1/stats` (cards) and `GET /api/v1/stats/quick` (strict JWT)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from nekzus.api.deps import services_of
from nekzus.api.models import ERROR_RESPONSES
from nekzus.api.requests import auth_service
from nekzus.api.security import require
from nekzus.api.system import SYSTEM
from nekzus.auth.principal import Principal
from nekzus.services import Services

router = APIRouter(tags=["stats"], responses=ERROR_RESPONSES)


class Card(BaseModel):
    value: int
    trend: str
    trendUp: bool


class Stats(BaseModel):
    routes: Card
    devices: Card
    discoveries: Card
    requests: Card


async def _pending_proposals(services: Services) -> int:
    """Pending discovery proposals; 0 when discovery is switched off."""
    discovery = services.domains.discovery
    return await discovery.count_pending() if discovery is not None else 0


def _metric_sum(metric: Any, suffix: str) -> float:
    total = 0.0
    for family in metric.collect():
        for sample in family.samples:
            if sample.name.endswith(suffix):
                total += sample.value
    return total


def total_requests(services: Services) -> int:
    return int(_metric_sum(services.metrics.http_requests_total, "_total"))


@router.get("/api/v1/stats", summary="Dashboard overview cards", response_model=Stats)
async def stats(request: Request, _principal: Principal = Depends(require())) -> dict[str, Any]:
    services = services_of(request)
    service = auth_service(request)
    routes = services.domains.catalog.count_routes()
    pending = await _pending_proposals(services)
    devices = len(service.devices)
    online = service.online_count()
    requests = total_requests(services)
    if online:
        device_trend = f"{online} online now"
    elif devices:
        device_trend = f"{devices} paired"
    else:
        device_trend = "No devices"
    return {
        "routes": {"value": routes, "trend": f"{routes} active", "trendUp": routes > 0},
        "devices": {"value": devices, "trend": device_trend, "trendUp": online > 0},
        "discoveries": {
            "value": pending,
            "trend": f"{pending} pending review" if pending else "No pending",
            "trendUp": False,
        },
        "requests": {
            "value": requests,
            "trend": f"{requests} total" if requests else "No data",
            "trendUp": requests > 0,
        },
    }


@router.get("/api/v1/stats/quick", summary="Compact figures for the mobile app (JWT only)")
async def quick(request: Request, _principal: Principal = Depends(require(strict=True))) -> dict[str, Any]:
    services = services_of(request)
    service = auth_service(request)
    catalog = services.domains.catalog
    apps = len(await catalog.list_apps())
    duration = services.metrics.http_request_duration_seconds
    count = _metric_sum(duration, "_count")
    seconds = _metric_sum(duration, "_sum")
    system = services.domains.features.get(SYSTEM)
    figures: dict[str, Any] = {}
    if system is not None:
        # Widgets show machine load next to the counts: the same figures as /system/resources.
        snap = await asyncio.to_thread(system.snapshot)
        figures = {k: snap[k] for k in ("cpu", "ram", "disk", "ram_used", "ram_total", "storage_size")}
    return {
        "servicesTotal": apps,
        "servicesOnline": apps,
        "servicesOffline": 0,
        "devicesTotal": len(service.devices),
        "devicesOnline": service.online_count(),
        "routesTotal": catalog.count_routes(),
        "requestsToday": total_requests(services),
        "avgLatency": round(seconds / count * 1000, 2) if count else 0.0,
        "uptimePercent": 100.0,
        "system": figures,
    }
