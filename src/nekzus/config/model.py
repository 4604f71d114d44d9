"""The typed configuration model: one place for every key, its default and its rule.

Defaults follow the existing Nekzus, so its config files keep working, except where this project chose
safer ones (trusted networks are loopback only, for example).
"""

from __future__ import annotations

import ipaddress
import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}


def parse_duration(value: Any) -> float:
    """Turn `30s`, `5m`, `1h30m`, `500ms` or a bare number of seconds into seconds."""
    if isinstance(value, bool):
        raise ValueError("must be a duration like 30s, 5m or 1h")
    if isinstance(value, int | float):
        try:
            return _finite(float(value))
        except OverflowError:  # an int beyond a float's range
            raise ValueError("must be a finite duration") from None
    if not isinstance(value, str):
        raise ValueError("must be a duration like 30s, 5m or 1h")
    text = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return _finite(float(text))
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"invalid duration {value!r} (use e.g. 30s, 5m, 1h)")
    return _finite(total)


def _finite(seconds: float) -> float:
    """NaN (`.nan` in YAML) compares false with everything and infinity overflows timers: refuse both."""
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError("must be a finite duration")
    if seconds < 0:
        raise ValueError("must not be negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


def _comma_list(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if value is None:
        return []
    return value


StrList = Annotated[list[str], BeforeValidator(_comma_list)]


class Section(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, validate_default=True)


def _check_addr(value: str, *, allow_empty: bool = False) -> str:
    if value == "" and allow_empty:
        return value
    if " " in value or ":" not in value:
        raise ValueError(f"must be host:port or :port, got {value!r}")
    host, _, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"port must be a number between 0 and 65535, got {port!r}")
    return value


class ServerConfig(Section):
    addr: str = ":8443"
    base_url: str = ""
    http_redirect_addr: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    routing_mode: Literal["", "path", "subdomain"] = ""
    base_domain: str = ""
    # Extra host names this instance is reached by (besides localhost, its addresses and host name,
    # base_url's host and base_domain): requests for any other Host are refused (DNS rebinding).
    allowed_hosts: StrList = Field(default_factory=list)
    trusted_proxies: StrList = Field(default_factory=list)
    log_format: Literal["text", "json"] = "text"
    max_body_bytes: int = Field(default=1 << 20, ge=1024)
    shutdown_timeout: Duration = 5.0
    # A proxied connection with no byte from the upstream for this long is closed (504 before the head).
    proxy_idle_timeout: Annotated[Duration, Field(gt=0, le=86400)] = 300.0
    # Extra request headers the proxy never passes to an upstream (HTTP and WebSocket), on top of its
    # built-in list (credentials, hop-by-hop, forwarding and identity headers such as Remote-User).
    # Matched case-insensitively with `_` read as `-`.
    proxy_strip_headers: StrList = Field(default_factory=list)
    # A WebSocket client must authenticate within this window after connecting.
    ws_auth_timeout: Annotated[Duration, Field(ge=0.1, le=300)] = 15.0
    # Concurrent long-lived connections (hub sockets, proxied WebSockets) one credential may hold.
    ws_max_per_principal: int = Field(default=32, ge=1, le=10000)
    # A request head must arrive within this long of its first byte; a request body may not stall longer.
    read_header_timeout: Duration = Field(default=10.0, gt=0)
    read_body_timeout: Duration = Field(default=60.0, gt=0)
    # Worker processes sharing the listening socket; 0 = one per core, 1 = a single process.
    workers: int = Field(default=0, ge=0, le=256)

    @field_validator("addr")
    @classmethod
    def _addr(cls, value: str) -> str:
        return _check_addr(value)

    @field_validator("http_redirect_addr")
    @classmethod
    def _redirect_addr(cls, value: str) -> str:
        return _check_addr(value, allow_empty=True)

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        if value and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an absolute http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("proxy_strip_headers")
    @classmethod
    def _strip_headers(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _HEADER_NAME.fullmatch(name.strip()):
                raise ValueError(f"{name!r} is not an HTTP header name")
        return [name.strip() for name in value]

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        return [_cidr(v) for v in value]

    @model_validator(mode="after")
    def _tls_pair(self) -> ServerConfig:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls_key: tls_cert and tls_key must be set together")
        return self


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value.strip(), strict=False))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an IP network (CIDR)") from exc


WEAK_SECRET_WORDS = ("change-me", "changeme", "example", "password", "secret", "dev", "test")


class AuthConfig(Section):
    hs256_secret: str = ""
    issuer: str = "nekzus"
    audience: str = "nekzus-mobile"
    default_scopes: StrList = Field(default_factory=lambda: ["read:catalog", "read:events"])
    local_networks: StrList = Field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    token_ttl: Duration = 43200.0
    refresh_grace: Duration = 7 * 86400.0

    @field_validator("hs256_secret")
    @classmethod
    def _secret(cls, value: str) -> str:
        if value and len(value) < 32:
            raise ValueError("must be at least 32 characters")
        return value

    @field_validator("local_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        return [_cidr(v) for v in value]

    @field_validator("issuer", "audience")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value


MIN_BOOTSTRAP_TOKEN_LENGTH = 32


class BootstrapConfig(Section):
    # Permanent pairing tokens: anyone holding one can pair a device, so they must be unguessable.
    tokens: StrList = Field(default_factory=list)
    allow_any: bool = False

    @field_validator("tokens")
    @classmethod
    def _long_enough(cls, value: list[str]) -> list[str]:
        for token in value:
            if len(token) < MIN_BOOTSTRAP_TOKEN_LENGTH:
                raise ValueError(f"each token must be at least {MIN_BOOTSTRAP_TOKEN_LENGTH} characters")
        return value


class StorageConfig(Section):
    database_path: str = "./data/nexus.db"

    @field_validator("database_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value


class QueueConfig(Section):
    worker_count: int = Field(default=4, ge=1, le=64)
    buffer_size: int = Field(default=1000, ge=1)
    retry_interval: Duration = 300.0
    max_retries: int = Field(default=3, ge=0)


class OfflineDetectionConfig(Section):
    enabled: bool = False
    check_interval: Duration = 60.0
    offline_threshold: Duration = 300.0


class DevicesConfig(Section):
    # A paired device shows as online while its last authenticated request is at most this old.
    offline_threshold: Annotated[Duration, Field(gt=0)] = 300.0


class NotificationsConfig(Section):
    enabled: bool = False
    ack_timeout: Duration = 30.0
    queue: QueueConfig = Field(default_factory=QueueConfig)
    offline_detection: OfflineDetectionConfig = Field(default_factory=OfflineDetectionConfig)


class BackupConfig(Section):
    enabled: bool = False
    directory: str = ""
    schedule: Duration = 86400.0
    retention: int = Field(default=7, ge=1)
    # Seals the secrets kept outside the database into backups; without it they are left out.
    passphrase: str = Field(default="", repr=False)

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: float) -> float:
        if value < 0.2:
            raise ValueError("must be at least 200ms")
        return value

    @field_validator("passphrase")
    @classmethod
    def _passphrase(cls, value: str) -> str:
        if value and len(value) < 12:
            raise ValueError("must be at least 12 characters")
        return value


class ToolboxConfig(Section):
    enabled: bool = False
    catalog_dir: str = "./toolbox"
    catalog_path: str = ""
    data_dir: str = "./data/toolbox"
    host_data_dir: str = ""
    auto_route: bool = False
    auto_start: bool = True
    # Also offer the templates shipped with Nekzus (catalog_dir entries override them by id).
    include_bundled: bool = True
    # Path of the Compose v2 binary; empty = the one installed with Nekzus, else `docker-compose` on PATH.
    compose_binary: str = ""


class ScriptsConfig(Section):
    enabled: bool = False
    directory: str = ""
    host_directory: str = ""
    default_timeout: int = Field(default=300, ge=1)
    max_output_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    # IANA zone for schedules' cron expressions; empty = the server's zone.
    timezone: str = ""
    workers: int = Field(default=3, ge=1, le=64)
    queue_size: int = Field(default=100, ge=0, le=10000)
    max_executions: int = Field(default=1000, ge=10)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if value:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    f"unknown time zone {value!r} (use an IANA name such as Europe/Berlin)"
                ) from None
        return value


class JobsConfig(Section):
    """Defaults of the background job runner (a feature may give its kind of job its own limits)."""

    max_concurrent: int = Field(default=4, ge=1, le=64)
    max_queued: int = Field(default=100, ge=0, le=10000)
    keep_records: int = Field(default=1000, ge=10)


class SystemConfig(Section):
    host_root_path: str = ""


class DockerRuntimeConfig(Section):
    enabled: bool = False
    socket_path: str = "unix:///var/run/docker.sock"


class KubernetesRuntimeConfig(Section):
    enabled: bool = False
    kubeconfig: str = ""
    context: str = ""
    in_cluster: bool = False
    namespaces: StrList = Field(default_factory=list)
    metrics_server: bool = True  # false: the cluster has no metrics-server, pod usage is never asked for
    metrics_cache_ttl: Duration = 30.0


class RuntimesConfig(Section):
    primary: Literal["docker", "kubernetes"] = "docker"
    docker: DockerRuntimeConfig = Field(default_factory=DockerRuntimeConfig)
    kubernetes: KubernetesRuntimeConfig = Field(default_factory=KubernetesRuntimeConfig)


class DockerDiscoveryConfig(Section):
    enabled: bool = False
    socket_path: str = "unix:///var/run/docker.sock"
    poll_interval: Duration = 30.0
    network_mode: Literal["all", "first", "preferred", "published"] = "all"
    networks: StrList = Field(default_factory=list)
    exclude_networks: StrList = Field(default_factory=list)

    @model_validator(mode="after")
    def _preferred(self) -> DockerDiscoveryConfig:
        if self.network_mode == "preferred" and not self.networks:
            raise ValueError("networks: network_mode 'preferred' needs a networks list")
        return self


class MdnsDiscoveryConfig(Section):
    enabled: bool = False
    scan_interval: Duration = 60.0
    # Interface addresses mDNS browses and advertises on (empty: all); federation peer discovery too.
    interfaces: StrList = Field(default_factory=list)
    services: StrList = Field(
        default_factory=lambda: [
            "_http._tcp",
            "_https._tcp",
            "_ssh._tcp",
            "_smb._tcp",
            "_printer._tcp",
            "_workstation._tcp",
        ]
    )
    advertise: bool = True  # announce Nekzus itself as _nekzus._tcp


class KubernetesDiscoveryConfig(Section):
    enabled: bool = False
    kubeconfig: str = ""  # empty: the runtimes.kubernetes settings, then the client's defaults
    context: str = ""
    in_cluster: bool = False
    namespaces: StrList = Field(default_factory=list)
    poll_interval: Duration = 30.0  # full re-list period; changes arrive through watches meanwhile


class DiscoveryConfig(Section):
    enabled: bool = False
    docker: DockerDiscoveryConfig = Field(default_factory=DockerDiscoveryConfig)
    mdns: MdnsDiscoveryConfig = Field(default_factory=MdnsDiscoveryConfig)
    kubernetes: KubernetesDiscoveryConfig = Field(default_factory=KubernetesDiscoveryConfig)
    # Approve new proposals whose confidence (in percent) is at least this, exactly like a manual approval.
    # 0 = off. A value set at run time (PUT /api/v1/discovery/settings) wins until it is reset.
    auto_approve_confidence: int = Field(default=0, ge=0, le=100)


class MetricsConfig(Section):
    enabled: bool = True
    path: str = "/metrics"

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value:
            return "/metrics"
        if not value.startswith("/"):
            raise ValueError("must start with /")
        if value.startswith(("/api/", "/apps/")) or value in ("/healthz", "/livez", "/readyz"):
            raise ValueError("must not collide with /api/, /apps/ or the health probes")
        return value


class PerServiceHealth(Section):
    path: str = ""
    interval: Duration | None = None
    timeout: Duration | None = None


class HealthChecksConfig(Section):
    enabled: bool = True
    interval: Duration = 10.0
    timeout: Duration = 5.0
    unhealthy_threshold: int = Field(default=2, ge=1)
    path: str = "/"
    max_concurrency: int = Field(default=8, ge=1, le=256)
    per_service: dict[str, PerServiceHealth] = Field(default_factory=dict)


class FederationSyncConfig(Section):
    full_sync_interval: Duration = 300.0
    anti_entropy_period: Duration = 60.0

    @field_validator("full_sync_interval")
    @classmethod
    def _full(cls, value: float) -> float:
        if value < 60:
            raise ValueError("must be at least 1m")
        return value

    @field_validator("anti_entropy_period")
    @classmethod
    def _anti(cls, value: float) -> float:
        if value < 30:
            raise ValueError("must be at least 30s")
        return value


class FederationConfig(Section):
    enabled: bool = False
    cluster_secret: str = ""
    gossip_port: int = Field(default=7946, ge=1, le=65535)
    mdns_enabled: bool = False
    bootstrap_peers: StrList = Field(default_factory=list)
    sync: FederationSyncConfig = Field(default_factory=FederationSyncConfig)
    allow_remote_routes: bool = False
    # A peer not heard from for this long is offline (checked at least every peer_timeout / 2).
    peer_timeout: Duration = Field(default=30.0, ge=1.0)

    @model_validator(mode="after")
    def _secret(self) -> FederationConfig:
        if self.enabled and len(self.cluster_secret) < 32:
            raise ValueError("cluster_secret: must be at least 32 characters when federation is enabled")
        return self


class RouteConfig(Section):
    id: str
    app_id: str = ""
    path_base: str
    to: str
    container_id: str = ""
    scopes: StrList = Field(default_factory=list)
    public_access: bool = False
    websockets: bool = False
    websocket: bool | None = None
    strip_prefix: bool = False
    strip_response_cookies: bool = False
    rewrite_cookie_paths: bool = False
    rewrite_html: bool = False
    persist_cookies: bool = False
    routing_mode: Literal["", "path", "subdomain", "both"] = ""
    subdomain: str = ""
    exclude_paths: StrList = Field(default_factory=lambda: ["/api/v1/"])
    health_check_path: str = ""
    health_check_timeout: Duration | None = None
    health_check_interval: Duration | None = None
    expected_status_codes: list[int] = Field(default_factory=list)
    skip_health_check: bool = False
    tls_skip_verify: bool = False
    cache: bool = False

    @field_validator("path_base")
    @classmethod
    def _path_base(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with /")
        return value

    @field_validator("to")
    @classmethod
    def _to(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is required")
        return value

    @model_validator(mode="after")
    def _websocket_alias(self) -> RouteConfig:
        if self.websocket is not None:
            self.websockets = self.websockets or self.websocket
        return self


class AppConfig(Section):
    id: str
    name: str
    icon: str = ""
    tags: StrList = Field(default_factory=list)
    endpoints: dict[str, str] = Field(default_factory=dict)


_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_RATE_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


def parse_rate(value: Any) -> float:
    """Turn `30/min` or `1/s` into tokens per second."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError("must be positive")
        return float(value)
    if isinstance(value, str):
        match = _RATE.match(value)
        if match:
            rate = float(match.group(1)) / _RATE_UNITS[match.group(2)]
            if rate <= 0:
                raise ValueError("must be positive")
            return rate
    raise ValueError(f"invalid rate {value!r} (use e.g. 30/min or 1/s)")


Rate = Annotated[float, BeforeValidator(parse_rate)]


class DashboardConfig(Section):
    """The web dashboard served at `/`: on by default; sessions end after this long without a request."""

    enabled: bool = True
    session_idle_timeout: Duration = 1800.0

    @field_validator("session_idle_timeout")
    @classmethod
    def _positive_idle(cls, value: float) -> float:
        if value < 60:
            raise ValueError("must be at least 1m")
        return value


class RateLimit(Section):
    enabled: bool = True
    rate: Rate
    burst: int = Field(ge=1)


def _limit(rate: str, burst: int, enabled: bool = True) -> Any:
    return Field(
        default_factory=lambda: RateLimit.model_validate({"rate": rate, "burst": burst, "enabled": enabled})
    )


class RateLimitsConfig(Section):
    enabled: bool = True
    health: RateLimit = _limit("10/s", 50)
    auth: RateLimit = _limit("10/min", 10)
    qr: RateLimit = _limit("1/s", 5)
    websocket: RateLimit = _limit("6/min", 3)
    device: RateLimit = _limit("30/min", 30)
    container: RateLimit = _limit("30/min", 20)
    general: RateLimit = _limit("30/min", 30)
    metrics: RateLimit = _limit("30/min", 30)
    proxy: RateLimit = _limit("100/s", 200, enabled=False)


class Config(Section):
    server: ServerConfig = Field(default_factory=ServerConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    bootstrap: BootstrapConfig = Field(default_factory=BootstrapConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    notifications: NotificationsConfig = Field(default_factory=NotificationsConfig)
    devices: DevicesConfig = Field(default_factory=DevicesConfig)
    backup: BackupConfig = Field(default_factory=BackupConfig)
    toolbox: ToolboxConfig = Field(default_factory=ToolboxConfig)
    scripts: ScriptsConfig = Field(default_factory=ScriptsConfig)
    jobs: JobsConfig = Field(default_factory=JobsConfig)
    system: SystemConfig = Field(default_factory=SystemConfig)
    runtimes: RuntimesConfig = Field(default_factory=RuntimesConfig)
    discovery: DiscoveryConfig = Field(default_factory=DiscoveryConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    health_checks: HealthChecksConfig = Field(default_factory=HealthChecksConfig)
    routes: list[RouteConfig] = Field(default_factory=list)
    apps: list[AppConfig] = Field(default_factory=list)
    federation: FederationConfig = Field(default_factory=FederationConfig)
    rate_limits: RateLimitsConfig = Field(default_factory=RateLimitsConfig)
    dashboard: DashboardConfig = Field(default_factory=DashboardConfig)

    # Set by the loader, not by the file: where the config came from and runtime flags.
    insecure_http: bool = False
    debug: bool = False
    debug_tokens: bool = False
    environment: str = ""

    @property
    def data_dir(self) -> str:
        import os

        return os.path.dirname(os.path.abspath(self.storage.database_path))

    @property
    def tls_enabled(self) -> bool:
        return not self.insecure_http

    @property
    def dev_environment(self) -> bool:
        return self.environment.strip().lower() in ("development", "dev", "test")

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        ids: set[str] = set()
        for index, route in enumerate(self.routes):
            if route.id in ids:
                raise ValueError(f"routes[{index}].id: duplicate route id {route.id!r}")
            ids.add(route.id)
        app_ids: set[str] = set()
        for index, app in enumerate(self.apps):
            if app.id in app_ids:
                raise ValueError(f"apps[{index}].id: duplicate app id {app.id!r}")
            app_ids.add(app.id)
        secret = self.auth.hs256_secret
        if secret and not self.dev_environment:
            lowered = secret.lower()
            for word in WEAK_SECRET_WORDS:
                if word in lowered:
                    raise ValueError(
                        f"auth.hs256_secret: looks like a placeholder (contains {word!r}); "
                        "use a random value or set ENVIRONMENT=dev"
                    )
        if self.bootstrap.allow_any and not self.dev_environment:
            raise ValueError(
                "bootstrap.allow_any: NEKZUS_BOOTSTRAP_ALLOW_ANY needs ENVIRONMENT=development, dev or test"
            )
        return self
