"""An in-process publish/subscribe bus.

Publishing never blocks: each subscriber is a plain callback run synchronously, so a slow consumer
must queue on its own side (the WebSocket hub does). Subscribers that raise are logged and skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

log = logging.getLogger("nekzus.events")


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened. `type` is the WebSocket message type (e.g. `device_paired`).

    Audience: `device_id` set → only the connections of that principal id (a device id, `user-<name>`
    or `local`); `connection_id` set → only that connection (e.g. the client that asked); neither →
    everyone allowed to read events. `include_admins` additionally delivers a targeted event to every
    dashboard connection (user or trusted-network principals).
    """

    type: str
    data: Any = None
    device_id: str | None = None
    connection_id: str | None = None
    include_admins: bool = False
    topic: str | None = None
    timestamp: float = field(default_factory=time.time)


Subscriber = Callable[[Event], None]


class EventBus:
    def __init__(self) -> None:
        self._subscribers: list[tuple[Subscriber, frozenset[str] | None]] = []
        self._remote: list[Subscriber] = []
        # With several worker processes: sends each locally published event to the other workers.
        self.relay: Subscriber | None = None

    def subscribe(
        self, callback: Subscriber, types: set[str] | None = None, *, remote: bool = False
    ) -> Callable[[], None]:
        """Register a callback (optionally only for some event types); returns an unsubscribe function.

        `remote=True` also delivers the events published in the other worker processes: only for live
        delivery (the WebSocket hub), never for durable side effects, which happen in the worker where
        the event was published.
        """
        entry = (callback, frozenset(types) if types else None)
        self._subscribers.append(entry)
        if remote:
            self._remote.append(callback)

        def unsubscribe() -> None:
            if entry in self._subscribers:
                self._subscribers.remove(entry)
            if callback in self._remote:
                self._remote.remove(callback)

        return unsubscribe

    def publish(self, event: Event) -> None:
        for callback, types in list(self._subscribers):
            if types is not None and event.type not in types:
                continue
            try:
                callback(event)
            except Exception:
                log.exception("event subscriber failed on %s", event.type)
        if self.relay is not None:
            self.relay(event)

    def deliver_remote(self, event: Event) -> None:
        """An event another worker published: to the `remote=True` subscribers only."""
        for callback in list(self._remote):
            try:
                callback(event)
            except Exception:
                log.exception("event subscriber failed on relayed %s", event.type)

    def emit(self, type_: StrEnum, data: Any = None, **audience: Any) -> Event:
        """Publish an event whose type is a constant (`EventType` or a feature's own `StrEnum`)."""
        event = Event(str(type_), data, **audience)
        self.publish(event)
        return event
