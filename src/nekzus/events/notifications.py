"""The per-device notification queue with acknowledgement and offline delivery.

Life of a row: `pending` → sent to every live connection of the device (carrying `notificationId` at the
top level of the envelope) → `delivered` when the client answers `notification_ack`. Unacknowledged rows
are re-sent when the device reconnects and by the retry timer (every `notifications.queue.retry_interval`,
for rows whose last attempt is at least that old). Each re-send that reaches a connection counts one
retry (a pass that sends nothing counts none); past `max_retries` the row becomes `failed`, past
`expires_at` it becomes `expired`. `notifications.queue.max_retries` is the ceiling: per-type defaults
and a caller's own value only apply below it. Admins may dismiss or retry rows.

All timestamps are stored as naive UTC (SQLite keeps no zone) and leave as RFC3339 with `Z`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select, update

from nekzus.errors import Gone, NotFound
from nekzus.events.bus import Event
from nekzus.events.hub import Client, envelope
from nekzus.events.models import Notification
from nekzus.events.types import EventType

if TYPE_CHECKING:
    from nekzus.config.model import NotificationsConfig
    from nekzus.events.bus import EventBus
    from nekzus.events.hub import Hub
    from nekzus.metrics import Metrics
    from nekzus.store import Database
    from nekzus.tasks import Spawn

log = logging.getLogger("nekzus.notifications")

DEFAULT_TTL = 30 * 86400.0
STALE_AFTER = timedelta(hours=24)
WIRE_TYPES = {"webhook.notify": "webhook", "webhook.activity": "webhook"}
# Per-type defaults (ttl seconds, max retries), as older clients expect them.
TYPE_DEFAULTS: dict[str, tuple[float, int]] = {
    "repair_required": (DEFAULT_TTL, 20),
    "device_revoked": (DEFAULT_TTL, 10),
    "device_paired": (DEFAULT_TTL, 10),
    "health_change": (DEFAULT_TTL, 10),
    "health_alert": (DEFAULT_TTL, 10),
    "port_exposure_warning": (86400.0, 5),
    "webhook.notify": (DEFAULT_TTL, 5),
    "webhook.activity": (DEFAULT_TTL, 5),
}


def now_utc() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(timespec="seconds") + "Z"


class NotificationQueue:
    """`services.domains.notifications`: enqueue(), plus what the admin endpoints need."""

    def __init__(
        self,
        config: NotificationsConfig,
        hub: Hub,
        *,
        db: Database,
        bus: EventBus,
        metrics: Metrics,
        spawn: Spawn,
        device_name: Callable[[str], str] = str,
    ) -> None:
        self.device_name = device_name
        self.db = db
        self.bus = bus
        self.spawn = spawn
        self.hub = hub
        cfg = config
        self.enabled = cfg.enabled
        self.retry_interval = max(0.2, float(cfg.queue.retry_interval))
        self.default_max_retries = cfg.queue.max_retries
        self.metrics = metrics
        self._lock = asyncio.Lock()
        self._unsubscribe: Any = None

    # --- wiring ----------------------------------------------------------------------------------
    def install(self) -> None:
        """Plug into the hub and the bus (the composition root runs `start` after storage opens)."""
        self.hub.register_handler("notification_ack", self._on_ack)
        self._unsubscribe = self.bus.subscribe(self._on_bus, {EventType.DEVICE_REVOKED})
        if self.enabled:
            self.hub.on_connect(self._on_connect)
        self.metrics.refreshers.append(self.refresh_metrics)

    async def start(self) -> None:
        if self.enabled:
            self.spawn(self._retry_loop(), "notifications-retry")

    def _on_bus(self, event: Event) -> None:
        device_id = event.data.get("deviceId") if isinstance(event.data, dict) else None
        if isinstance(device_id, str) and device_id and self.db.ready:
            self.spawn(self.delete_device(device_id), "notifications-revoke")

    async def _on_connect(self, client: Client) -> None:
        await self.deliver_pending(client.principal.id, due_only=False)

    async def _on_ack(self, client: Client, data: dict[str, Any]) -> None:
        nid = data.get("notificationId")
        if not isinstance(nid, str) or not nid:
            await client.send("error", {"error": "notificationId is required", "code": "INVALID_MESSAGE"})
            return
        async with self._lock, self.db.session() as session:
            row = await session.scalar(
                select(Notification).where(
                    Notification.uid == nid[:64], Notification.device_id == client.principal.id
                )
            )
            if row is None:
                await client.send("error", {"error": "unknown notificationId", "code": "NOT_FOUND"})
                return
            if row.status in ("pending", "failed"):
                row.status = "delivered"
                row.delivered_at = now_utc()
                self.metrics.notifications_delivered_total.labels(row.type).inc()

    async def _retry_loop(self) -> None:
        while True:
            await asyncio.sleep(self.retry_interval)
            try:
                await self.expire_old()
                for device_id in await self._devices_with_pending():
                    if self.hub.is_online(device_id):
                        await self.deliver_pending(device_id, due_only=True)
            except Exception:
                log.exception("notification retry pass failed")

    # --- queue operations ----------------------------------------------------------------------------
    async def enqueue(
        self,
        device_id: str,
        type_: str,
        payload: Any,
        *,
        ttl: float | None = None,
        max_retries: int | None = None,
    ) -> dict[str, Any] | None:
        """Persist a notification for one device and try to deliver it now. None when disabled."""
        if not self.enabled:
            return None
        default_ttl, default_retries = TYPE_DEFAULTS.get(type_, (DEFAULT_TTL, self.default_max_retries))
        # The configured maximum caps every type's own default and what the caller asked for.
        retries = min(default_retries if max_retries is None else max_retries, self.default_max_retries)
        created = now_utc()
        row = Notification(
            uid=str(uuid.uuid4()),
            device_id=device_id,
            type=type_,
            payload=json.dumps(payload, separators=(",", ":"), default=str),
            status="pending",
            retry_count=0,
            max_retries=retries,
            created_at=created,
            expires_at=created + timedelta(seconds=default_ttl if ttl is None else ttl),
        )
        async with self.db.session() as session:
            session.add(row)
        self.metrics.notifications_enqueued_total.inc()
        if self.hub.is_online(device_id):
            await self.deliver_pending(device_id, due_only=False, only_id=row.id)
        return self.to_json(row)

    def _send(self, row: Notification) -> bool:
        wire_type = WIRE_TYPES.get(row.type, row.type)
        try:
            payload = json.loads(row.payload)
        except ValueError:
            payload = None
        text = envelope(wire_type, payload, notificationId=row.uid)
        sent = False
        for client in self.hub.connections_of(row.device_id):
            if client.wants(wire_type) and client.push(text):
                sent = True
        return sent

    async def deliver_pending(self, device_id: str, *, due_only: bool, only_id: int | None = None) -> int:
        """Send the device's pending rows to its live connections; returns how many were sent."""
        sent_count = 0
        async with self._lock, self.db.session() as session:
            now = now_utc()
            query = select(Notification).where(
                Notification.device_id == device_id, Notification.status == "pending"
            )
            if only_id is not None:
                query = query.where(Notification.id == only_id)
            if due_only:
                due = now - timedelta(seconds=self.retry_interval * 0.9)
                query = query.where(
                    (Notification.last_attempt_at.is_(None)) | (Notification.last_attempt_at <= due)
                )
            for row in (await session.scalars(query.order_by(Notification.id).limit(500))).all():
                if row.expires_at <= now:
                    row.status = "expired"
                    self.metrics.notifications_expired_total.inc()
                    continue
                resend = row.last_attempt_at is not None
                if resend and row.retry_count >= row.max_retries:
                    row.status = "failed"
                    row.error_message = f"not acknowledged after {row.retry_count} retries"
                    self.metrics.notifications_failed_total.labels(row.type, "max_retries").inc()
                    continue
                if self._send(row):
                    if resend:  # only a re-send that went out is a retry
                        row.retry_count += 1
                        self.metrics.notifications_retried_total.inc()
                    row.last_attempt_at = now
                    row.error_message = None
                    sent_count += 1
                else:
                    row.error_message = "device not reachable"
        return sent_count

    async def expire_old(self) -> int:
        async with self.db.session() as session:
            result = await session.execute(
                update(Notification)
                .where(Notification.status.in_(("pending", "failed")), Notification.expires_at <= now_utc())
                .values(status="expired")
            )
            count = int(getattr(result, "rowcount", 0) or 0)
        if count:
            self.metrics.notifications_expired_total.inc(count)
        return count

    async def _devices_with_pending(self) -> list[str]:
        async with self.db.session() as session:
            rows = await session.scalars(
                select(Notification.device_id).where(Notification.status == "pending").distinct()
            )
            return list(rows.all())

    async def delete_device(self, device_id: str) -> int:
        async with self.db.session() as session:
            result = await session.execute(delete(Notification).where(Notification.device_id == device_id))
            return int(getattr(result, "rowcount", 0) or 0)

    async def refresh_metrics(self) -> None:
        if not self.db.ready:
            return
        async with self.db.session() as session:
            depth = await session.scalar(
                select(func.count()).select_from(Notification).where(Notification.status == "pending")
            )
        self.metrics.notification_queue_depth.set(int(depth or 0))

    # --- admin -------------------------------------------------------------------------------------------
    def to_json(self, row: Notification) -> dict[str, Any]:
        stale = row.status == "pending" and row.created_at <= now_utc() - STALE_AFTER
        out: dict[str, Any] = {
            "id": row.id,
            "notificationId": row.uid,
            "deviceId": row.device_id,
            "deviceName": self.device_name(row.device_id),
            "type": row.type,
            "status": row.status,
            "retryCount": row.retry_count,
            "maxRetries": row.max_retries,
            "createdAt": iso(row.created_at),
            "expiresAt": iso(row.expires_at),
            "deliveredAt": iso(row.delivered_at),
            "lastAttemptAt": iso(row.last_attempt_at),
            "isStale": stale,
        }
        if row.error_message:
            out["errorMessage"] = row.error_message
        return out

    async def list_rows(
        self, *, status: str | None, device_id: str | None, type_: str | None, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        conditions = []
        if status:
            conditions.append(Notification.status == status)
        if device_id:
            conditions.append(Notification.device_id == device_id)
        if type_:
            conditions.append(Notification.type == type_)
        async with self.db.session() as session:
            total = await session.scalar(select(func.count()).select_from(Notification).where(*conditions))
            rows = await session.scalars(
                select(Notification)
                .where(*conditions)
                .order_by(Notification.created_at.desc(), Notification.id.desc())
                .limit(limit)
                .offset(offset)
            )
            return [self.to_json(r) for r in rows.all()], int(total or 0)

    async def stats(self) -> dict[str, Any]:
        async with self.db.session() as session:
            counts = dict(
                (
                    await session.execute(
                        select(Notification.status, func.count()).group_by(Notification.status)
                    )
                ).all()
            )
            stale = await session.scalar(
                select(func.count())
                .select_from(Notification)
                .where(Notification.status == "pending", Notification.created_at <= now_utc() - STALE_AFTER)
            )
        return {
            "totalPending": int(counts.get("pending", 0)),
            "totalDelivered": int(counts.get("delivered", 0)),
            "totalFailed": int(counts.get("failed", 0)),
            "totalExpired": int(counts.get("expired", 0)),
            "totalDismissed": int(counts.get("dismissed", 0)),
            "staleCount": int(stale or 0),
            "enabled": self.enabled,
        }

    async def stale(self) -> dict[str, Any]:
        async with self.db.session() as session:
            rows = (
                await session.scalars(
                    select(Notification)
                    .where(
                        Notification.status == "pending", Notification.created_at <= now_utc() - STALE_AFTER
                    )
                    .order_by(Notification.device_id, Notification.created_at)
                )
            ).all()
        groups: dict[str, dict[str, Any]] = {}
        for row in rows:
            group = groups.setdefault(
                row.device_id,
                {
                    "deviceId": row.device_id,
                    "deviceName": self.device_name(row.device_id),
                    "count": 0,
                    "oldestAt": iso(row.created_at),
                    "newestAt": iso(row.created_at),
                    "types": [],
                    "totalRetries": 0,
                },
            )
            group["count"] += 1
            group["newestAt"] = iso(row.created_at)
            if row.type not in group["types"]:
                group["types"].append(row.type)
            group["totalRetries"] += row.retry_count
        return {"staleThresholdHours": 24, "devices": list(groups.values())}

    async def dismiss(self, notification_id: int) -> None:
        async with self.db.session() as session:
            row = await session.get(Notification, notification_id)
            if row is None or row.status not in ("pending", "failed"):
                raise NotFound("Notification not found or not pending")
            row.status = "dismissed"

    async def dismiss_device(self, device_id: str) -> int:
        async with self.db.session() as session:
            result = await session.execute(
                update(Notification)
                .where(Notification.device_id == device_id, Notification.status.in_(("pending", "failed")))
                .values(status="dismissed")
            )
            return int(getattr(result, "rowcount", 0) or 0)

    async def retry(self, notification_id: int) -> str:
        """Reset one row to pending and try it now: `sent`, `offline` or `queued`."""
        async with self.db.session() as session:
            row = await session.get(Notification, notification_id)
            if row is None:
                raise NotFound("Notification not found")
            if row.status == "expired" or row.expires_at <= now_utc():
                if row.status != "expired":
                    row.status = "expired"
                raise Gone("Notification has expired and cannot be retried", code="EXPIRED")
            row.status = "pending"
            row.retry_count = 0
            row.last_attempt_at = None
            row.error_message = None
            device_id = row.device_id
        if not self.enabled:
            return "queued"
        if not self.hub.is_online(device_id):
            return "offline"
        sent = await self.deliver_pending(device_id, due_only=False, only_id=notification_id)
        return "sent" if sent else "queued"

    async def retry_many(self, ids: list[int]) -> int:
        async with self.db.session() as session:
            result = await session.execute(
                update(Notification)
                .where(
                    Notification.id.in_(ids),
                    Notification.status != "expired",
                    Notification.expires_at > now_utc(),
                )
                .values(status="pending", retry_count=0, last_attempt_at=None, error_message=None)
            )
            count = int(getattr(result, "rowcount", 0) or 0)
            devices = list(
                (
                    await session.scalars(
                        select(Notification.device_id).where(Notification.id.in_(ids)).distinct()
                    )
                ).all()
            )
        if self.enabled:
            for device_id in devices:
                if self.hub.is_online(device_id):
                    await self.deliver_pending(device_id, due_only=False)
        return count

    async def clear_delivered(self) -> int:
        async with self.db.session() as session:
            result = await session.execute(delete(Notification).where(Notification.status == "delivered"))
            return int(getattr(result, "rowcount", 0) or 0)
