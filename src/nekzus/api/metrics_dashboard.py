"""`GET /api/v1/metrics/dashboard`: the Prometheus figures aggregated into one JSON document for the
dashboard's metrics tab (HTTP, proxy, WebSocket, auth, discovery, health and system sections).

Read straight from this instance's metric registry, so the numbers are the ones `/metrics` exposes.
Latency percentiles are estimated from histogram buckets (the upper bound of the bucket holding them).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from prometheus_client.metrics import MetricWrapperBase

from nekzus.api.deps import services_of
from nekzus.api.models import ERROR_RESPONSES
from nekzus.api.security import require
from nekzus.services import Services
from nekzus.timefmt import rfc3339

router = APIRouter(tags=["metrics"], responses=ERROR_RESPONSES)

Sample = tuple[str, dict[str, str], float]


def _samples(metric: MetricWrapperBase) -> Iterator[Sample]:
    for family in metric.collect():
        for sample in family.samples:
            yield sample.name, dict(sample.labels), float(sample.value)


def _sum(metric: MetricWrapperBase, suffix: str = "", **match: str) -> float:
    total = 0.0
    for name, labels, value in _samples(metric):
        if suffix and not name.endswith(suffix):
            continue
        if all(labels.get(k) == v for k, v in match.items()):
            total += value
    return total


def _by(metric: MetricWrapperBase, label: str, suffix: str = "_total") -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for name, labels, value in _samples(metric):
        if name.endswith(suffix) and label in labels:
            out[labels[label]] += value
    return dict(out)


def _quantile(metric: MetricWrapperBase, q: float) -> float:
    """Milliseconds below which `q` of the observations fall (bucket upper bound)."""
    buckets: dict[float, float] = defaultdict(float)
    for name, labels, value in _samples(metric):
        if name.endswith("_bucket"):
            buckets[float(labels["le"])] += value
    if not buckets:
        return 0.0
    total = buckets.get(float("inf"), 0.0)
    if total <= 0:
        return 0.0
    for bound in sorted(buckets):
        if buckets[bound] >= q * total:
            return 0.0 if bound == float("inf") else round(bound * 1000, 2)
    return 0.0


def _ratio(part: float, whole: float) -> float:
    return round(part / whole * 100, 2) if whole else 0.0


def _avg_ms(metric: MetricWrapperBase, **match: str) -> float:
    count = _sum(metric, "_count", **match)
    return round(_sum(metric, "_sum", **match) / count * 1000, 2) if count else 0.0


def dashboard(services: Services) -> dict[str, Any]:
    m = services.metrics
    uptime = time.time() - services.started_at
    total_http = _sum(m.http_requests_total, "_total")
    by_status = _by(m.http_requests_total, "status")
    errors = sum(v for k, v in by_status.items() if k.startswith("5"))
    proxy_by_app = _by(m.proxy_requests_total, "app_id")
    jwt = _by(m.auth_jwt_validations_total, "status")
    pairing = _by(m.auth_pairing_total, "status")
    jwt_total = sum(jwt.values())
    pair_total = sum(pairing.values())
    return {
        "http": {
            "totalRequests": int(total_http),
            "requestsPerSec": round(total_http / uptime, 3) if uptime > 0 else 0.0,
            "errorRate": _ratio(errors, total_http),
            "avgLatencyMs": _avg_ms(m.http_request_duration_seconds),
            "p50LatencyMs": _quantile(m.http_request_duration_seconds, 0.5),
            "p95LatencyMs": _quantile(m.http_request_duration_seconds, 0.95),
            "p99LatencyMs": _quantile(m.http_request_duration_seconds, 0.99),
            "inFlightRequests": int(_sum(m.http_requests_in_flight)),
            "byStatus": {k: int(v) for k, v in by_status.items()},
            "byMethod": {k: int(v) for k, v in _by(m.http_requests_total, "method").items()},
            "topPaths": [
                {"path": p, "count": int(n), "avgMs": _avg_ms(m.http_request_duration_seconds, path=p)}
                for p, n in sorted(_by(m.http_requests_total, "path").items(), key=lambda i: -i[1])[:10]
            ],
        },
        "proxy": {
            "totalRequests": int(sum(proxy_by_app.values())),
            "activeSessions": int(_sum(m.proxy_active_sessions)),
            "bytesIn": int(_sum(m.proxy_bytes_transferred_total, "_total", direction="in")),
            "bytesOut": int(_sum(m.proxy_bytes_transferred_total, "_total", direction="out")),
            "upstreamErrors": int(_sum(m.proxy_upstream_errors_total, "_total")),
            "byApp": [
                {
                    "appId": app,
                    "requests": int(n),
                    "errors": int(_sum(m.proxy_upstream_errors_total, "_total", app_id=app)),
                    "avgMs": _avg_ms(m.proxy_request_duration_seconds, app_id=app),
                }
                for app, n in sorted(proxy_by_app.items())
            ],
        },
        "websocket": {
            "activeConnections": int(_sum(m.websocket_connections_active)),
            "totalConnections": int(_sum(m.websocket_connections_total, "_total", status="accepted")),
            "avgDurationSec": round(_avg_ms(m.websocket_connection_duration_seconds) / 1000, 3),
            "totalMessages": int(_sum(m.websocket_messages_total, "_total")),
            "totalBytesIn": int(_sum(m.websocket_bytes_transferred_total, "_total", direction="in")),
            "totalBytesOut": int(_sum(m.websocket_bytes_transferred_total, "_total", direction="out")),
        },
        "auth": {
            "pairingSuccess": int(pairing.get("success", 0)),
            "pairingFailure": int(pair_total - pairing.get("success", 0)),
            "pairingSuccessRate": _ratio(pairing.get("success", 0), pair_total),
            "jwtValidations": int(jwt_total),
            "jwtFailures": int(jwt_total - jwt.get("success", 0)),
            "jwtSuccessRate": _ratio(jwt.get("success", 0), jwt_total),
            "tokenRefreshes": int(_sum(m.auth_refresh_total, "_total")),
            "localAuthBypasses": int(_sum(m.auth_local_auth_total, "_total")),
            "activeBootstrap": int(_sum(m.auth_bootstrap_tokens_active)),
        },
        "discovery": {
            "totalScans": int(_sum(m.discovery_scans_total, "_total")),
            "totalProposals": int(_sum(m.discovery_proposals_total, "_total")),
            "pendingProposals": int(_sum(m.discovery_proposals_pending)),
            "activeWorkers": int(_sum(m.discovery_workers_active)),
        },
        "health": {
            "totalChecks": int(_sum(m.health_checks_total, "_total")),
            "healthyChecks": int(_sum(m.health_checks_total, "_total", status="healthy")),
            "componentStatus": [
                {"component": labels["component"], "status": int(value)}
                for _, labels, value in _samples(m.health_check_status)
            ],
            "serviceStatus": [
                {"appId": labels["app_id"], "status": int(value)}
                for _, labels, value in _samples(m.service_health_status)
            ],
        },
        "system": {
            "uptimeSeconds": round(uptime, 1),
            "startTime": rfc3339(services.started_at),
            "configReloads": int(_sum(m.config_reloads_total, "_total")),
            "lastReloadStatus": int(_sum(m.config_last_reload_status)),
            "notificationQueue": int(_sum(m.notification_queue_depth)),
        },
    }


@router.get("/api/v1/metrics/dashboard", summary="Metrics aggregated for the dashboard")
async def metrics_dashboard(request: Request, _principal: Any = Depends(require())) -> dict[str, Any]:
    return dashboard(services_of(request))


def install(api: FastAPI, services: Services) -> None:
    api.include_router(router)
