"""Every Prometheus metric Nekzus exports, on one registry per app instance.

Features instrument through `services.metrics`; label values are kept to bounded sets (route templates,
app ids, fixed status words), never raw paths or user input.
"""

from __future__ import annotations

import platform
from collections.abc import Awaitable, Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from nekzus import __version__

NS = "nekzus"
_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_SIZES = tuple(100.0 * 10**n for n in range(8))


class Metrics:
    def __init__(self) -> None:
        # Async callbacks run before each scrape, to refresh gauges that are cheaper to compute on demand.
        self.refreshers: list[Callable[[], Awaitable[None]]] = []
        r = self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)

        def c(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labels, namespace=NS, registry=r)

        def g(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, doc, labels, namespace=NS, registry=r)

        def h(
            name: str, doc: str, labels: tuple[str, ...] = (), buckets: tuple[float, ...] = _LATENCY
        ) -> Histogram:
            return Histogram(name, doc, labels, namespace=NS, registry=r, buckets=buckets)

        # HTTP (API; proxied traffic has its own family)
        self.http_requests_total = c("http_requests_total", "HTTP requests", ("method", "path", "status"))
        self.http_request_duration_seconds = h(
            "http_request_duration_seconds", "HTTP latency", ("method", "path")
        )
        self.http_requests_in_flight = g("http_requests_in_flight", "HTTP requests being served")
        self.http_request_size_bytes = h(
            "http_request_size_bytes", "Request sizes", ("method", "path"), _SIZES
        )
        self.http_response_size_bytes = h(
            "http_response_size_bytes", "Response sizes", ("method", "path"), _SIZES
        )
        self.rate_limit_rejections_total = c(
            "rate_limit_rejections_total", "Requests refused by rate limits", ("category",)
        )
        # Auth
        self.auth_pairing_total = c("auth_pairing_total", "Pairing attempts", ("status", "platform"))
        self.auth_pairing_duration_seconds = h("auth_pairing_duration_seconds", "Pairing duration")
        self.auth_refresh_total = c("auth_refresh_total", "Token refreshes", ("status",))
        self.auth_jwt_validations_total = c(
            "auth_jwt_validations_total", "Credential validations", ("status",)
        )
        self.auth_local_auth_total = c(
            "auth_local_auth_total", "Trusted-network authentications", ("status",)
        )
        self.auth_login_total = c("auth_login_total", "Dashboard logins", ("status",))
        self.auth_bootstrap_tokens_active = g("auth_bootstrap_tokens_active", "Unexpired bootstrap tokens")
        self.devices_total = g("devices_total", "Paired devices")
        self.devices_online = g("devices_online", "Devices seen in the last 5 minutes")
        self.devices_offline = g("devices_offline", "Devices not seen in the last 5 minutes")
        self.device_operations_total = c(
            "device_operations_total", "Device operations", ("operation", "status")
        )
        # Proxy
        self.proxy_requests_total = c("proxy_requests_total", "Proxied requests", ("app_id", "status"))
        self.proxy_request_duration_seconds = h(
            "proxy_request_duration_seconds", "Proxy latency", ("app_id",)
        )
        self.proxy_upstream_latency_seconds = h(
            "proxy_upstream_latency_seconds", "Time to upstream response headers", ("app_id",)
        )
        self.proxy_upstream_errors_total = c(
            "proxy_upstream_errors_total", "Upstream errors", ("app_id", "error_type")
        )
        self.proxy_active_sessions = g("proxy_active_sessions", "Proxied requests in flight")
        self.proxy_bytes_transferred_total = c(
            "proxy_bytes_transferred_total", "Proxied bytes", ("app_id", "direction")
        )
        # WebSocket
        self.websocket_connections_active = g("websocket_connections_active", "Open WebSocket connections")
        self.websocket_connections_total = c(
            "websocket_connections_total", "WebSocket connections", ("app_id", "status")
        )
        self.websocket_connection_duration_seconds = h(
            "websocket_connection_duration_seconds",
            "WebSocket connection lifetimes",
            buckets=(1, 10, 60, 300, 1800, 3600, 21600, 86400),
        )
        self.websocket_messages_total = c(
            "websocket_messages_total", "WebSocket messages", ("app_id", "direction")
        )
        self.websocket_bytes_transferred_total = c(
            "websocket_bytes_transferred_total", "WebSocket bytes", ("app_id", "direction")
        )
        # Webhooks
        self.webhook_requests_total = c("webhook_requests_total", "Webhook calls", ("endpoint", "status"))
        self.webhook_request_duration_seconds = h(
            "webhook_request_duration_seconds", "Webhook latency", ("endpoint",)
        )
        # Discovery
        self.discovery_proposals_total = c(
            "discovery_proposals_total", "Discovery proposals", ("source", "status")
        )
        self.discovery_scans_total = c("discovery_scans_total", "Discovery scans", ("source", "status"))
        self.discovery_scan_duration_seconds = h(
            "discovery_scan_duration_seconds", "Scan duration", ("source",)
        )
        self.discovery_proposals_pending = g("discovery_proposals_pending", "Pending proposals")
        self.discovery_workers_active = g("discovery_workers_active", "Running discovery workers")
        # Storage
        self.storage_apps_total = g("storage_apps_total", "Apps in the catalog")
        self.storage_routes_total = g("storage_routes_total", "Routes in the catalog")
        # Build / process
        self.build_info = g("build_info", "Build information", ("version", "python_version"))
        self.build_info.labels(__version__, platform.python_version()).set(1)
        self.start_time_seconds = g("start_time_seconds", "Process start time")
        self.start_time_seconds.set_to_current_time()
        self.uptime_seconds = g("uptime_seconds", "Seconds since start")
        # Health
        self.health_check_status = g(
            "health_check_status",
            "Component health (0 unknown, 1 healthy, 2 degraded, 3 unhealthy)",
            ("component",),
        )
        self.health_checks_total = c(
            "health_checks_total", "Component health checks", ("component", "status")
        )
        self.service_health_status = g(
            "service_health_status", "App health (0 unknown, 1 healthy, 2 unhealthy)", ("app_id",)
        )
        self.service_health_checks_total = c(
            "service_health_checks_total", "App health checks", ("app_id", "status")
        )
        self.service_health_check_duration_seconds = h(
            "service_health_check_duration_seconds", "App health check duration", ("app_id",)
        )
        # Config
        self.config_reloads_total = c("config_reloads_total", "Config reloads", ("status",))
        self.config_reload_duration_seconds = h("config_reload_duration_seconds", "Config reload duration")
        self.config_last_reload_time_seconds = g(
            "config_last_reload_time_seconds", "Unix time of the last config reload attempt"
        )
        self.config_last_reload_status = g(
            "config_last_reload_status", "Outcome of the last config reload (1 success, 0 failure)"
        )
        # Notifications
        self.notification_queue_depth = g("notification_queue_depth", "Queued notifications")
        self.notifications_enqueued_total = c("notifications_enqueued_total", "Notifications queued")
        self.notifications_delivered_total = c(
            "notifications_delivered_total", "Notifications delivered", ("type",)
        )
        self.notifications_failed_total = c(
            "notifications_failed_total", "Notifications failed", ("type", "reason")
        )
        self.notifications_expired_total = c("notifications_expired_total", "Notifications expired")
        self.notifications_retried_total = c("notifications_retried_total", "Notification retries")
