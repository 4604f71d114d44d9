"""Route and app specifications: validation, normalisation and the API's JSON shape.

Input accepts the API's camelCase and the older snake_case spellings (and `websockets` for
`websocket`); output uses the API's names. The spec is also what is persisted, so every field
survives a restart.
"""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from nekzus.config.model import parse_duration

_SUBDOMAIN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")
_BAD_PATH_CHARS = re.compile(r"[\s\x00-\x1f\x7f?#%\\]")


def _alias(*names: str) -> Any:
    return AliasChoices(*names)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"


def _duration_or_none(value: Any) -> float | None:
    if value in (None, "", 0):
        return None
    return parse_duration(value)


def check_id(value: str, what: str) -> str:
    value = value.strip()
    if not _ID.match(value):
        raise ValueError(f"{what} must be 1-128 characters of letters, digits, '.', '_', ':' or '-'")
    return value


def check_target(value: str) -> str:
    value = value.strip()
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"invalid target URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL")
    if parts.username or parts.password:
        raise ValueError("must not contain credentials")
    if parts.query or parts.fragment:
        raise ValueError("must not contain a query or fragment")
    if port == 0:
        raise ValueError("port must be between 1 and 65535")
    if any(c in value for c in "\r\n\x00 \t"):
        raise ValueError("must not contain whitespace or control characters")
    return value.rstrip("/") if parts.path in ("", "/") else value


def check_path_base(value: str) -> str:
    value = value.strip()
    if not value.startswith("/"):
        raise ValueError("must start with /")
    if _BAD_PATH_CHARS.search(value):
        raise ValueError("must not contain whitespace, control characters, '?', '#', '%' or '\\'")
    segments = value.split("/")
    if any(s in (".", "..") for s in segments) or "//" in value:
        raise ValueError("must not contain '.', '..' or empty segments")
    return value


class RouteSpec(BaseModel):
    """A route as stored and served (snake_case attributes, API names on output)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    route_id: str = Field(validation_alias=_alias("routeId", "route_id", "id"))
    app_id: str = Field(default="", validation_alias=_alias("appId", "app_id"))
    path_base: str = Field(validation_alias=_alias("pathBase", "path_base", "path"))
    to: str = Field(validation_alias=_alias("to", "target"))
    container_id: str = Field(default="", validation_alias=_alias("containerId", "container_id"))
    scopes: list[str] = Field(default_factory=list)
    public_access: bool = Field(default=False, validation_alias=_alias("publicAccess", "public_access"))
    websocket: bool = Field(default=False, validation_alias=_alias("websocket", "websockets"))
    strip_prefix: bool = Field(default=False, validation_alias=_alias("stripPrefix", "strip_prefix"))
    strip_response_cookies: bool = Field(
        default=False, validation_alias=_alias("stripResponseCookies", "strip_response_cookies")
    )
    rewrite_cookie_paths: bool = Field(
        default=False, validation_alias=_alias("rewriteCookiePaths", "rewrite_cookie_paths")
    )
    rewrite_html: bool = Field(
        default=False, validation_alias=_alias("rewriteHTML", "rewriteHtml", "rewrite_html")
    )
    persist_cookies: bool = Field(default=False, validation_alias=_alias("persistCookies", "persist_cookies"))
    routing_mode: Literal["", "path", "subdomain", "both"] = Field(
        default="", validation_alias=_alias("routingMode", "routing_mode")
    )
    subdomain: str = ""
    exclude_paths: list[str] = Field(
        default_factory=lambda: ["/api/v1/"], validation_alias=_alias("excludePaths", "exclude_paths")
    )
    health_check_path: str = Field(
        default="", validation_alias=_alias("healthCheckPath", "health_check_path")
    )
    health_check_timeout: float | None = Field(
        default=None, validation_alias=_alias("healthCheckTimeout", "health_check_timeout")
    )
    health_check_interval: float | None = Field(
        default=None, validation_alias=_alias("healthCheckInterval", "health_check_interval")
    )
    expected_status_codes: list[int] = Field(
        default_factory=list, validation_alias=_alias("expectedStatusCodes", "expected_status_codes")
    )
    skip_health_check: bool = Field(
        default=False, validation_alias=_alias("skipHealthCheck", "skip_health_check")
    )
    tls_skip_verify: bool = Field(default=False, validation_alias=_alias("tlsSkipVerify", "tls_skip_verify"))
    cache: bool = False

    @field_validator("route_id")
    @classmethod
    def _route_id(cls, value: str) -> str:
        return check_id(value, "routeId")

    @field_validator("app_id")
    @classmethod
    def _app_id(cls, value: str) -> str:
        return check_id(value, "appId") if value.strip() else ""

    @field_validator("path_base")
    @classmethod
    def _path_base(cls, value: str) -> str:
        return check_path_base(value)

    @field_validator("to")
    @classmethod
    def _to(cls, value: str) -> str:
        return check_target(value)

    @field_validator("scopes", "exclude_paths", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return value

    @field_validator("subdomain")
    @classmethod
    def _subdomain(cls, value: str) -> str:
        value = value.strip().lower()
        if value and not _SUBDOMAIN.match(value):
            raise ValueError("must be lowercase letters, digits and '-', at most 63 characters")
        return value

    @field_validator("health_check_timeout", "health_check_interval", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> float | None:
        return _duration_or_none(value)

    @field_validator("health_check_path")
    @classmethod
    def _hc_path(cls, value: str) -> str:
        if value and (not value.startswith("/") or any(c in value for c in "\r\n\x00 ")):
            raise ValueError("must start with / and contain no whitespace")
        return value

    @field_validator("expected_status_codes")
    @classmethod
    def _codes(cls, value: list[int]) -> list[int]:
        for code in value:
            if not 100 <= code <= 599:
                raise ValueError("status codes must be between 100 and 599")
        return value

    @model_validator(mode="after")
    def _normalise(self) -> RouteSpec:
        if not self.app_id:
            self.app_id = self.route_id
        if self.strip_prefix:
            if not self.path_base.endswith("/"):
                self.path_base += "/"
            # Older clients expect it: HTML rewriting cannot be disabled on strip-prefix routes.
            self.rewrite_html = True
        if self.routing_mode in ("subdomain", "both") and not self.subdomain:
            raise ValueError("subdomain: is required when routingMode is subdomain or both")
        if self.routing_mode in ("", "path", "both") and not self.path_base.startswith("/apps/"):
            raise ValueError("pathBase: must start with /apps/ (the proxy serves /apps/...)")
        return self

    @property
    def path_routed(self) -> bool:
        return self.routing_mode in ("", "path", "both")

    @property
    def subdomain_routed(self) -> bool:
        return self.routing_mode in ("subdomain", "both") and bool(self.subdomain)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "routeId": self.route_id,
            "appId": self.app_id,
            "pathBase": self.path_base,
            "to": self.to,
            "scopes": list(self.scopes),
            "websocket": self.websocket,
            "stripPrefix": self.strip_prefix,
            "rewriteHTML": self.rewrite_html,
            "publicAccess": self.public_access,
            "skipHealthCheck": self.skip_health_check,
            "stripResponseCookies": self.strip_response_cookies,
            "rewriteCookiePaths": self.rewrite_cookie_paths,
            "persistCookies": self.persist_cookies,
            "excludePaths": list(self.exclude_paths),
            "expectedStatusCodes": list(self.expected_status_codes),
            "tlsSkipVerify": self.tls_skip_verify,
            "cache": self.cache,
        }
        if self.container_id:
            out["containerId"] = self.container_id
        if self.routing_mode:
            out["routingMode"] = self.routing_mode
        if self.subdomain:
            out["subdomain"] = self.subdomain
        if self.health_check_path:
            out["healthCheckPath"] = self.health_check_path
        if self.health_check_timeout is not None:
            out["healthCheckTimeout"] = format_duration(self.health_check_timeout)
        if self.health_check_interval is not None:
            out["healthCheckInterval"] = format_duration(self.health_check_interval)
        return out

    def storage(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class AppSpec(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    id: str = Field(validation_alias=_alias("id", "appId", "app_id"))
    name: str = ""
    icon: str = ""
    tags: list[str] = Field(default_factory=list)
    endpoints: dict[str, str] = Field(default_factory=dict)
    discovery_meta: dict[str, Any] | None = Field(
        default=None, validation_alias=_alias("discoveryMeta", "discovery_meta")
    )

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return check_id(value, "id")

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return value

    @field_validator("endpoints", mode="before")
    @classmethod
    def _endpoints(cls, value: Any) -> Any:
        return value or {}

    @model_validator(mode="after")
    def _name(self) -> AppSpec:
        if not self.name.strip():
            self.name = self.id
        return self

    def storage(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
