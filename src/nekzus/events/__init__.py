"""The internal event bus: features publish typed events; the WebSocket hub and others subscribe."""

from __future__ import annotations

from nekzus.events.bus import Event, EventBus

__all__ = ["Event", "EventBus"]
