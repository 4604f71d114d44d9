"""Names of the events on the bus (they are also the WebSocket message `type` clients receive).

Event types are constants, never free strings: `EventBus.emit` takes a `StrEnum` member. Core domains use
`EventType`; a feature with its own events declares its own `StrEnum` next to its code (for example
`class JobEvent(StrEnum): PROGRESS = "job.progress"`), so every name is greppable and typo-proof while
the wire value stays the plain string.
"""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    APP_REGISTERED = "app_registered"
    CONFIG_RELOAD = "config_reload"
    CONFIG_WARNING = "config_warning"
    DEVICE_PAIRED = "device_paired"
    DEVICE_REVOKED = "device_revoked"
    DEVICE_STATUS = "device_status"
    DEVICE_UPDATED = "device_updated"  # renamed or re-scoped
    DISCOVERY = "discovery"
    HEALTH_CHANGE = "health_change"
    PORT_EXPOSURE_WARNING = "port_exposure_warning"
    PROPOSAL_DISMISSED = "proposal_dismissed"
    PROPOSAL_WITHDRAWN = "proposal_withdrawn"  # a pending proposal's service went away
    REDISCOVERY_TRIGGERED = "rediscovery_triggered"
    DISCOVERY_SETTINGS = "discovery_settings"  # the auto-approval threshold changed at run time
    WEBHOOK = "webhook"
    CONTAINER_START_COMPLETED = "container.start.completed"
    CONTAINER_START_FAILED = "container.start.failed"
    CONTAINER_STOP_COMPLETED = "container.stop.completed"
    CONTAINER_STOP_FAILED = "container.stop.failed"
    CONTAINER_RESTART_COMPLETED = "container.restart.completed"
    CONTAINER_RESTART_FAILED = "container.restart.failed"


def container_outcome(action: str, *, ok: bool) -> EventType:
    """The event announcing how a container action ended (`container.<action>.completed|failed`)."""
    return EventType(f"container.{action}.{'completed' if ok else 'failed'}")
