"""Time as a collaborator, so the scheduler and job timestamps can be driven by tests.

`SystemClock` is the real one. `ManualClock` only moves when a test calls `advance()`/`set()`, and wakes
every sleeper then, so a cron test runs in microseconds instead of waiting for the minute to turn.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...

    async def sleep_until(self, when: datetime, wake: asyncio.Event) -> None:
        """Return at `when`, or earlier as soon as `wake` is set (the caller re-plans then)."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, when: datetime, wake: asyncio.Event) -> None:
        delay = (when - self.now()).total_seconds()
        if delay <= 0 or wake.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), delay)


class ManualClock:
    """A clock for tests: time stands still until `advance()` or `set()`."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2030, 1, 1, tzinfo=UTC)
        self._sleepers: set[asyncio.Event] = set()

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        self._now = when
        for event in list(self._sleepers):
            event.set()

    def advance(self, seconds: float) -> None:
        self.set(self._now + timedelta(seconds=seconds))

    async def sleep_until(self, when: datetime, wake: asyncio.Event) -> None:
        if self._now >= when or wake.is_set():
            return
        self._sleepers.add(wake)
        try:
            await wake.wait()
        finally:
            self._sleepers.discard(wake)
