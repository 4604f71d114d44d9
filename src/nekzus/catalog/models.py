"""Catalog tables. Every route field lives in `spec` (JSON) so nothing is lost across restarts."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Float,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from nekzus.store.base import UtcDateTime, metadata, utcnow

catalog_apps = Table(
    "catalog_apps",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("spec", Text, nullable=False, default="{}"),
    Column("source", String(32), nullable=False, default="api"),
    Column("created_at", UtcDateTime(), default=utcnow),
    Column("updated_at", UtcDateTime(), default=utcnow, onupdate=utcnow),
)

catalog_routes = Table(
    "catalog_routes",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("app_id", String(128), nullable=False, index=True),
    Column("path_base", String(512), nullable=False),
    Column("target", Text, nullable=False),
    Column("spec", Text, nullable=False, default="{}"),
    Column("source", String(32), nullable=False, default="api"),
    Column("created_at", UtcDateTime(), default=utcnow),
    Column("updated_at", UtcDateTime(), default=utcnow, onupdate=utcnow),
)

catalog_service_health = Table(
    "catalog_service_health",
    metadata,
    Column("app_id", String(128), primary_key=True),
    Column("status", String(16), nullable=False, default="unknown"),
    Column("message", Text, nullable=False, default=""),
    Column("last_check", Float, nullable=True),
    Column("last_success", Float, nullable=True),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    Column("response_time_ms", Float, nullable=True),
    Column("status_code", Integer, nullable=True),
)

# A cookie an app set for one device's webview; the value is AES-GCM encrypted (nonce prepended).
# `device_id` is plain text on purpose (no FK into the identity domain); rows go when the bus says
# `device_revoked`.
proxy_session_cookies = Table(
    "proxy_session_cookies",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("device_id", String(128), nullable=False, index=True),
    Column("app_id", String(128), nullable=False),
    Column("name", String(256), nullable=False),
    Column("value", LargeBinary, nullable=False),
    Column("expires_at", Float, nullable=True),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("device_id", "app_id", "name", name="uq_proxy_session_cookie"),
)
