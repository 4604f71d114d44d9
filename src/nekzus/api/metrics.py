"""Prometheus exposition at `metrics.path` (default `/metrics`; the path setting is honoured).

No authentication, as scrapers expect; the rate limiter gives it its own `metrics` category.
`metrics.enabled: false` → 404 in the JSON error shape (checked per request, so a config reload toggles it).
"""

from __future__ import annotations

import logging
import time

from fastapi import FastAPI
from fastapi.responses import Response

from nekzus.http.errors import error_response
from nekzus.services import Services

log = logging.getLogger("nekzus.metrics")


def install(api: FastAPI, services: Services) -> None:
    path = services.config.metrics.path
    metrics = services.metrics

    # `metrics.enabled` is read per request: a config reload toggles the endpoint live.
    @api.get(path, include_in_schema=False)
    async def prometheus_metrics() -> Response:
        if not services.config.metrics.enabled:
            return error_response(404, "NOT_FOUND", "Metrics are disabled")
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        metrics.uptime_seconds.set(time.time() - services.started_at)
        for refresh in list(metrics.refreshers):
            try:
                await refresh()
            except Exception:
                log.warning("metrics refresher failed", exc_info=True)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
