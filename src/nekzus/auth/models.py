"""Identity tables: users, devices, API keys, revoked tokens, audit log and activity feed.

Times are stored as Unix seconds (floats) so ordering and arithmetic need no timezone handling;
the API renders them as RFC3339 UTC.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from nekzus.store.orm import Base


class User(Base):
    """A dashboard account. Only the argon2id hash of the password is kept."""

    __tablename__ = "auth_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(255), unique=True, nullable=False)
    password_hash: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    last_login: Mapped[float | None] = mapped_column(Float, nullable=True)
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)


class Device(Base):
    """A paired device. `session_id` is baked into its tokens: re-pairing or deleting cuts old ones off."""

    __tablename__ = "auth_devices"

    device_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    device_name: Mapped[str] = mapped_column(String(255), nullable=False)
    platform: Mapped[str] = mapped_column(String(32), nullable=False, default="")
    platform_version: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    model: Mapped[str] = mapped_column(String(255), nullable=False, default="")
    push_token: Mapped[str] = mapped_column(String(512), nullable=False, default="")
    scopes: Mapped[str] = mapped_column(Text, nullable=False, default="[]")
    session_id: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    last_seen: Mapped[float | None] = mapped_column(Float, nullable=True)
    # The certificate pins (`sha256/...` SPKI hashes) the device received when it paired: what it pins.
    spki_pins: Mapped[str] = mapped_column(Text, nullable=False, default="[]")


class DeviceRequests(Base):
    """Authenticated requests of one device on one local calendar day (`YYYY-MM-DD`), written in batches."""

    __tablename__ = "auth_device_requests"

    device_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class ApiKey(Base):
    """An API key: only the SHA-256 of the key is stored, plus a short display prefix."""

    __tablename__ = "auth_api_keys"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    scopes: Mapped[str] = mapped_column(Text, nullable=False, default="[]")
    expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_used_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    created_by: Mapped[str] = mapped_column(String(255), nullable=False, default="")
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class RevokedToken(Base):
    """A JWT id that must never be accepted again (logout). Pruned once past expiry + refresh grace."""

    __tablename__ = "auth_revoked_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject: Mapped[str] = mapped_column(String(255), nullable=False, default="")
    expires_at: Mapped[float] = mapped_column(Float, nullable=False)
    revoked_at: Mapped[float] = mapped_column(Float, nullable=False)


class AuditLog(Base):
    """One security-relevant event."""

    __tablename__ = "audit_logs"
    __table_args__ = (
        Index("ix_audit_logs_action", "action"),
        Index("ix_audit_logs_actor", "actor"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    timestamp: Mapped[float] = mapped_column(Float, nullable=False)
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    actor: Mapped[str] = mapped_column(String(255), nullable=False, default="")
    target: Mapped[str] = mapped_column(String(512), nullable=False, default="")
    ip: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    details: Mapped[str] = mapped_column(Text, nullable=False, default="{}")
    success: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)


class ActivityEvent(Base):
    """One entry of the dashboard's activity feed."""

    __tablename__ = "activity_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(255), unique=True, nullable=False)
    type: Mapped[str] = mapped_column(String(64), nullable=False)
    icon: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    icon_class: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    message: Mapped[str] = mapped_column(Text, nullable=False)
    details: Mapped[str | None] = mapped_column(Text, nullable=True)
    timestamp: Mapped[int] = mapped_column(Integer, nullable=False)
