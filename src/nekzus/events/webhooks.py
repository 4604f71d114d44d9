"""Webhook fan-out: deliver a `webhook` message to everyone or to chosen devices;
targets that are offline get a queued notification when the queue is enabled."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from nekzus.events.types import EventType

if TYPE_CHECKING:
    from nekzus.events.bus import EventBus
    from nekzus.events.hub import Hub
    from nekzus.events.notifications import NotificationQueue

log = logging.getLogger("nekzus.webhooks")

WEBHOOK_TTL = 30 * 86400.0
WEBHOOK_RETRIES = 5


async def deliver(
    bus: EventBus,
    hub: Hub,
    queue: NotificationQueue,
    payload: Any,
    device_ids: list[str],
    queued_type: str,
) -> dict[str, int]:
    """Publish `webhook`; returns counts of devices reached live and queued for later."""
    if not device_ids:
        bus.emit(EventType.WEBHOOK, payload)
        return {"online": -1, "queued": 0}
    online = queued = 0
    for device_id in dict.fromkeys(device_ids):
        if hub.is_online(device_id):
            bus.emit(EventType.WEBHOOK, payload, device_id=device_id)
            online += 1
        elif queue.enabled:
            await queue.enqueue(device_id, queued_type, payload, ttl=WEBHOOK_TTL, max_retries=WEBHOOK_RETRIES)
            queued += 1
    return {"online": online, "queued": queued}
