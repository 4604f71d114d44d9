"""`GET /api/v1/metrics/dashboard` aggregation, in process over a real metric registry."""

from __future__ import annotations

from nekzus.api.metrics_dashboard import dashboard
from nekzus.config import Config
from nekzus.services import Services


def test_dashboard_sections_follow_the_registry() -> None:
    services = Services.build(Config(), base_url="http://127.0.0.1")
    m = services.metrics
    m.http_requests_total.labels("GET", "/api/v1/apps", "200").inc(3)
    m.http_requests_total.labels("POST", "/api/v1/routes", "500").inc()
    m.proxy_requests_total.labels("grafana", "200").inc(2)
    m.auth_jwt_validations_total.labels("success").inc(3)
    m.auth_jwt_validations_total.labels("invalid").inc()
    body = dashboard(services)
    assert set(body) == {"http", "proxy", "websocket", "auth", "discovery", "health", "system"}
    assert body["http"]["totalRequests"] == 4
    assert body["http"]["byStatus"] == {"200": 3, "500": 1}
    assert body["http"]["errorRate"] == 25.0
    assert body["http"]["topPaths"][0] == {"path": "/api/v1/apps", "count": 3, "avgMs": 0.0}
    assert body["proxy"]["byApp"][0]["appId"] == "grafana" and body["proxy"]["totalRequests"] == 2
    assert body["auth"]["jwtValidations"] == 4 and body["auth"]["jwtSuccessRate"] == 75.0
    assert body["system"]["startTime"].endswith("Z")
