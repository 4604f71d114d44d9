"""Identity tables: users, devices, API keys, revoked tokens, audit log and activity feed.

Times are stored as Unix seconds (floats) so ordering and arithmetic need no timezone handling;
the API renders them as RFC3339 UTC.

Rows handed outside this package (to the routers, to the login flow) are the frozen records below,
so callers see typed fields instead of untyped database rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Boolean, Column, Float, Index, Integer, String, Table, Text

from nekzus.store.base import Record, metadata

# A dashboard account. Only the argon2id hash of the password is kept.
users_table = Table(
    "auth_users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("username", String(255), unique=True, nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_login", Float, nullable=True),
    Column("is_active", Boolean, nullable=False, default=True),
)

# A paired device. `session_id` is baked into its tokens: re-pairing or deleting cuts old ones off.
# `spki_pins` are the certificate pins (`sha256/...` SPKI hashes) the device received when it paired.
devices_table = Table(
    "auth_devices",
    metadata,
    Column("device_id", String(100), primary_key=True),
    Column("device_name", String(255), nullable=False),
    Column("platform", String(32), nullable=False, default=""),
    Column("platform_version", String(64), nullable=False, default=""),
    Column("model", String(255), nullable=False, default=""),
    Column("push_token", String(512), nullable=False, default=""),
    Column("scopes", Text, nullable=False, default="[]"),
    Column("session_id", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_seen", Float, nullable=True),
    Column("spki_pins", Text, nullable=False, default="[]", server_default="[]"),
)

# Authenticated requests of one device on one local calendar day (`YYYY-MM-DD`), written in batches.
device_requests_table = Table(
    "auth_device_requests",
    metadata,
    Column("device_id", String(100), primary_key=True),
    Column("day", String(10), primary_key=True),
    Column("count", Integer, nullable=False, default=0, server_default="0"),
)

# An API key: only the SHA-256 of the key is stored, plus a short display prefix.
api_keys_table = Table(
    "auth_api_keys",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("key_hash", String(64), unique=True, nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("scopes", Text, nullable=False, default="[]"),
    Column("expires_at", Float, nullable=True),
    Column("last_used_at", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(255), nullable=False, default=""),
    Column("revoked_at", Float, nullable=True),
)

# A JWT id that must never be accepted again (logout). Pruned once past expiry + refresh grace.
revoked_tokens_table = Table(
    "auth_revoked_tokens",
    metadata,
    Column("jti", String(64), primary_key=True),
    Column("subject", String(255), nullable=False, default=""),
    Column("expires_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=False),
)

# One security-relevant event.
audit_log_table = Table(
    "audit_logs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("timestamp", Float, nullable=False),
    Column("action", String(64), nullable=False),
    Column("actor", String(255), nullable=False, default=""),
    Column("target", String(512), nullable=False, default=""),
    Column("ip", String(64), nullable=False, default=""),
    Column("details", Text, nullable=False, default="{}"),
    Column("success", Boolean, nullable=False, default=True),
    Index("ix_audit_logs_action", "action"),
    Index("ix_audit_logs_actor", "actor"),
)

# One entry of the dashboard's activity feed; `timestamp` is Unix milliseconds.
activity_table = Table(
    "activity_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(255), unique=True, nullable=False),
    Column("type", String(64), nullable=False),
    Column("icon", String(64), nullable=False, default=""),
    Column("icon_class", String(64), nullable=False, default=""),
    Column("message", Text, nullable=False),
    Column("details", Text, nullable=True),
    Column("timestamp", Integer, nullable=False),
)


@dataclass(frozen=True, slots=True)
class User(Record):
    id: int
    username: str
    password_hash: str
    created_at: float
    last_login: float | None
    is_active: bool


@dataclass(frozen=True, slots=True)
class Device(Record):
    device_id: str
    device_name: str
    platform: str
    platform_version: str
    model: str
    push_token: str
    scopes: str  # a JSON list
    session_id: str
    created_at: float
    last_seen: float | None
    spki_pins: str  # a JSON list


@dataclass(frozen=True, slots=True)
class ApiKey(Record):
    id: str
    name: str
    key_hash: str
    prefix: str
    scopes: str  # a JSON list
    expires_at: float | None
    last_used_at: float | None
    created_at: float
    created_by: str
    revoked_at: float | None
