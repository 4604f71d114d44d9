"""Tables of the events domain: the per-device notification queue.

`device_id` is plain text on purpose (no FK into the identity domain); the queue deletes a device's rows
itself when the bus publishes `device_revoked`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Column, Index, Integer, String, Table, Text

from nekzus.store.base import Record, UtcDateTime, metadata, utcnow

notifications = Table(
    "notifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("uid", String(36), unique=True, nullable=False),
    Column("device_id", String(255), nullable=False),
    Column("type", String(128), nullable=False),
    Column("payload", Text, nullable=False, default="null"),
    Column("status", String(16), nullable=False, default="pending"),
    Column("retry_count", Integer, nullable=False, default=0),
    Column("max_retries", Integer, nullable=False, default=3),
    Column("created_at", UtcDateTime(), nullable=False, default=utcnow),
    Column("expires_at", UtcDateTime(), nullable=False),
    Column("delivered_at", UtcDateTime(), nullable=True),
    Column("last_attempt_at", UtcDateTime(), nullable=True),
    Column("error_message", Text, nullable=True),
    Index("ix_notifications_device_status", "device_id", "status"),
    Index("ix_notifications_status", "status"),
)


@dataclass(frozen=True, slots=True)
class Notification(Record):
    """One queued notification as read back (times in UTC)."""

    id: int
    uid: str
    device_id: str
    type: str
    payload: str
    status: str
    retry_count: int
    max_retries: int
    created_at: datetime
    expires_at: datetime
    delivered_at: datetime | None = None
    last_attempt_at: datetime | None = None
    error_message: str | None = None
