"""The per-device notification queue with acknowledgement and offline delivery.

Life of a row: `pending` → sent to every live connection of the device (carrying `notificationId` at the
top level of the envelope) → `delivered` when the client answers `notification_ack`. Unacknowledged rows
are re-sent when the device reconnects and by the retry timer (every `notifications.queue.retry_interval`,
for rows whose last attempt is at least that old). Each re-send that reaches a connection counts one
retry (a pass that sends nothing counts none); past `max_retries` the row becomes `failed`, past
`expires_at` it becomes `expired`. `notifications.queue.max_retries` is the ceiling: per-type defaults
and a caller's own value only apply below it. Admins may dismiss or retry rows.

All timestamps are UTC and leave as RFC3339 with `Z`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, delete, func, insert, select, update

from nekzus.errors import Gone, NotFound
from nekzus.events.bus import Event
from nekzus.events.hub import Client, envelope
from nekzus.events.models import Notification, notifications
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
    return datetime.now(UTC)


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


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
        t = notifications
        async with self._lock:
            async with self.db.transaction() as tx:
                row = await tx.first(
                    select(t.c.id, t.c.type, t.c.status).where(
                        t.c.uid == nid[:64], t.c.device_id == client.principal.id
                    )
                )
                if row is not None and row.status in ("pending", "failed"):
                    await tx.execute(
                        update(t).where(t.c.id == row.id).values(status="delivered", delivered_at=now_utc())
                    )
                    self.metrics.notifications_delivered_total.labels(row.type).inc()
            if row is None:
                await client.send("error", {"error": "unknown notificationId", "code": "NOT_FOUND"})

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
        values: dict[str, Any] = {
            "uid": str(uuid.uuid4()),
            "device_id": device_id,
            "type": type_,
            "payload": json.dumps(payload, separators=(",", ":"), default=str),
            "status": "pending",
            "retry_count": 0,
            "max_retries": retries,
            "created_at": created,
            "expires_at": created + timedelta(seconds=default_ttl if ttl is None else ttl),
        }
        new_id = await self.db.scalar(insert(notifications).values(**values).returning(notifications.c.id))
        row = Notification(id=int(new_id), **values)
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
        t = notifications
        sent_count = 0
        async with self._lock, self.db.transaction() as tx:
            now = now_utc()
            query = select(t).where(t.c.device_id == device_id, t.c.status == "pending")
            if only_id is not None:
                query = query.where(t.c.id == only_id)
            if due_only:
                due = now - timedelta(seconds=self.retry_interval * 0.9)
                query = query.where(t.c.last_attempt_at.is_(None) | (t.c.last_attempt_at <= due))
            changes: list[dict[str, Any]] = []
            for found in await tx.rows(query.order_by(t.c.id).limit(500)):
                row = Notification.from_row(found)
                status, retries = row.status, row.retry_count
                attempt, error = row.last_attempt_at, row.error_message
                resend = row.last_attempt_at is not None
                if row.expires_at <= now:
                    status = "expired"
                    self.metrics.notifications_expired_total.inc()
                elif resend and row.retry_count >= row.max_retries:
                    status = "failed"
                    error = f"not acknowledged after {row.retry_count} retries"
                    self.metrics.notifications_failed_total.labels(row.type, "max_retries").inc()
                elif self._send(row):
                    if resend:  # only a re-send that went out is a retry
                        retries += 1
                        self.metrics.notifications_retried_total.inc()
                    attempt, error = now, None
                    sent_count += 1
                else:
                    error = "device not reachable"
                changes.append(
                    {
                        "row_id": row.id,
                        "status": status,
                        "retry_count": retries,
                        "last_attempt_at": attempt,
                        "error_message": error,
                    }
                )
            if changes:
                # One statement for the whole batch; the SET columns come from the parameter names.
                await tx.execute(update(t).where(t.c.id == bindparam("row_id")), changes)
        return sent_count

    async def expire_old(self) -> int:
        t = notifications
        result = await self.db.execute(
            update(t)
            .where(t.c.status.in_(("pending", "failed")), t.c.expires_at <= now_utc())
            .values(status="expired")
        )
        count = int(result.rowcount)
        if count:
            self.metrics.notifications_expired_total.inc(count)
        return count

    async def _devices_with_pending(self) -> list[str]:
        t = notifications
        return [
            str(device)
            for device in await self.db.scalars(
                select(t.c.device_id).where(t.c.status == "pending").distinct()
            )
        ]

    async def delete_device(self, device_id: str) -> int:
        t = notifications
        result = await self.db.execute(delete(t).where(t.c.device_id == device_id))
        return int(result.rowcount)

    async def refresh_metrics(self) -> None:
        if not self.db.ready:
            return
        t = notifications
        depth = await self.db.scalar(select(func.count()).select_from(t).where(t.c.status == "pending"))
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
        t = notifications
        conditions = []
        if status:
            conditions.append(t.c.status == status)
        if device_id:
            conditions.append(t.c.device_id == device_id)
        if type_:
            conditions.append(t.c.type == type_)
        async with self.db.transaction() as tx:
            total = await tx.scalar(select(func.count()).select_from(t).where(*conditions))
            rows = await tx.rows(
                select(t)
                .where(*conditions)
                .order_by(t.c.created_at.desc(), t.c.id.desc())
                .limit(limit)
                .offset(offset)
            )
        return [self.to_json(Notification.from_row(r)) for r in rows], int(total or 0)

    async def stats(self) -> dict[str, Any]:
        t = notifications
        async with self.db.transaction() as tx:
            counts = {
                str(row.status): int(row.total)
                for row in await tx.rows(select(t.c.status, func.count().label("total")).group_by(t.c.status))
            }
            stale = await tx.scalar(
                select(func.count())
                .select_from(t)
                .where(t.c.status == "pending", t.c.created_at <= now_utc() - STALE_AFTER)
            )
        return {
            "totalPending": counts.get("pending", 0),
            "totalDelivered": counts.get("delivered", 0),
            "totalFailed": counts.get("failed", 0),
            "totalExpired": counts.get("expired", 0),
            "totalDismissed": counts.get("dismissed", 0),
            "staleCount": int(stale or 0),
            "enabled": self.enabled,
        }

    async def stale(self) -> dict[str, Any]:
        t = notifications
        rows = [
            Notification.from_row(row)
            for row in await self.db.rows(
                select(t)
                .where(t.c.status == "pending", t.c.created_at <= now_utc() - STALE_AFTER)
                .order_by(t.c.device_id, t.c.created_at)
            )
        ]
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
        t = notifications
        result = await self.db.execute(
            update(t)
            .where(t.c.id == notification_id, t.c.status.in_(("pending", "failed")))
            .values(status="dismissed")
        )
        if result.rowcount == 0:
            raise NotFound("Notification not found or not pending")

    async def dismiss_device(self, device_id: str) -> int:
        t = notifications
        result = await self.db.execute(
            update(t)
            .where(t.c.device_id == device_id, t.c.status.in_(("pending", "failed")))
            .values(status="dismissed")
        )
        return int(result.rowcount)

    async def retry(self, notification_id: int) -> str:
        """Reset one row to pending and try it now: `sent`, `offline` or `queued`. An expired row stays
        as it is (the retry pass marks pending rows expired on its own)."""
        t = notifications
        async with self.db.transaction() as tx:
            row = await tx.first(
                select(t.c.status, t.c.expires_at, t.c.device_id).where(t.c.id == notification_id)
            )
            if row is None:
                raise NotFound("Notification not found")
            if row.status == "expired" or row.expires_at <= now_utc():
                raise Gone("Notification has expired and cannot be retried", code="EXPIRED")
            await tx.execute(
                update(t)
                .where(t.c.id == notification_id)
                .values(status="pending", retry_count=0, last_attempt_at=None, error_message=None)
            )
            device_id = str(row.device_id)
        if not self.enabled:
            return "queued"
        if not self.hub.is_online(device_id):
            return "offline"
        sent = await self.deliver_pending(device_id, due_only=False, only_id=notification_id)
        return "sent" if sent else "queued"

    async def retry_many(self, ids: list[int]) -> int:
        t = notifications
        async with self.db.transaction() as tx:
            result = await tx.execute(
                update(t)
                .where(t.c.id.in_(ids), t.c.status != "expired", t.c.expires_at > now_utc())
                .values(status="pending", retry_count=0, last_attempt_at=None, error_message=None)
            )
            count = int(result.rowcount)
            devices = [
                str(device)
                for device in await tx.scalars(select(t.c.device_id).where(t.c.id.in_(ids)).distinct())
            ]
        if self.enabled:
            for device_id in devices:
                if self.hub.is_online(device_id):
                    await self.deliver_pending(device_id, due_only=False)
        return count

    async def clear_delivered(self) -> int:
        t = notifications
        result = await self.db.execute(delete(t).where(t.c.status == "delivered"))
        return int(result.rowcount)
