"""Standard 5-field cron on croniter, with a stated missed-run policy and an injectable clock.

Expressions: `minute hour day-of-month month day-of-week`, the usual `*`, lists, ranges and steps
(`*/15`, `1-5`, `MON-FRI`), evaluated in one time zone (`scripts.timezone`, else the server's zone).
Day-of-month and day-of-week follow cron's usual rule: when both are restricted, either may match.

Missed-run policy: an entry registered with a due time in the past (a run missed while the server was
down) fires **once** as soon as the scheduler runs, then continues from the next time after "now"; any
number of missed runs collapse into that one. A run is never fired twice for the same due time.

Firing never blocks: each due entry's callback is started through `spawn` and the loop goes on, so a
slow run delays neither other entries nor the next tick.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from nekzus.errors import Invalid
from nekzus.jobs.clock import Clock
from nekzus.tasks import Spawn

__all__ = ["CronScheduler", "local_zone", "next_fire", "resolve_zone", "validate_cron"]

log = logging.getLogger("nekzus.jobs.cron")

MAX_CRON_LENGTH = 100
RECHECK = timedelta(seconds=60)
Fire = Callable[[datetime], Awaitable[None]]


_NUMERIC_FIELD = re.compile(r"[0-9*/,\-?]+")


def validate_cron(expression: str) -> str:
    """The normalised expression (single spaces), or Invalid(code=INVALID_CRON)."""
    text = " ".join(str(expression).split())
    if not text:
        raise Invalid("cronExpression is required", code="MISSING_CRON")
    if len(text) > MAX_CRON_LENGTH:
        raise Invalid(f"Cron expression longer than {MAX_CRON_LENGTH} characters", code="INVALID_CRON")
    fields = text.split(" ")
    if len(fields) != 5:
        raise Invalid(
            "Cron expression must have 5 fields: minute hour day month weekday", code="INVALID_CRON"
        )
    # Standard cron: minute, hour and day of month are numbers, ranges, steps and lists only (croniter
    # would also take its own extensions there, such as `R` for a random minute).
    if any(not _NUMERIC_FIELD.fullmatch(field) for field in fields[:3]) or not croniter.is_valid(text):
        raise Invalid(f"Invalid cron expression: {text}", code="INVALID_CRON")
    try:
        next_fire(text, datetime.now(UTC), UTC)
    except Exception:  # e.g. "0 0 31 2 *" never happens
        raise Invalid(f"Cron expression never fires: {text}", code="INVALID_CRON") from None
    return text


def next_fire(expression: str, after: datetime, zone: tzinfo) -> datetime:
    """The first fire time strictly after `after`, in UTC."""
    start = after.astimezone(zone)
    nxt = croniter(expression, start, max_years_between_matches=5).get_next(datetime)
    assert isinstance(nxt, datetime)
    return nxt.astimezone(UTC)


def local_zone() -> tzinfo:
    """The server's zone: /etc/localtime when readable (keeps DST rules), else the current offset."""
    path = Path("/etc/localtime")
    try:
        with path.open("rb") as handle:
            return ZoneInfo.from_file(handle, key="localtime")
    except (OSError, ValueError):
        zone = datetime.now().astimezone().tzinfo
        return zone if zone is not None else UTC


def resolve_zone(name: str) -> tzinfo:
    """`name` as an IANA zone (Invalid on an unknown one); empty means the server's zone."""
    if not name:
        return local_zone()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid(f"Unknown time zone: {name}", code="INVALID_TIMEZONE") from None


@dataclass(slots=True)
class _Entry:
    key: str
    expression: str
    fire: Fire
    due: datetime


class CronScheduler:
    """Fires registered callbacks at their cron times. `add`/`remove` may be called at any time."""

    def __init__(self, *, clock: Clock, zone: tzinfo, spawn: Spawn) -> None:
        self.clock = clock
        self.zone = zone
        self._spawn = spawn
        self._entries: dict[str, _Entry] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[Any] | None = None
        self.fired = 0

    def add(self, key: str, expression: str, fire: Fire, *, due: datetime | None = None) -> datetime:
        """Register or replace an entry; a past `due` is a missed run, fired once. Returns the due time."""
        expression = validate_cron(expression)
        when = due if due is not None else next_fire(expression, self.clock.now(), self.zone)
        self._entries[key] = _Entry(key, expression, fire, when)
        self._wake.set()
        return when

    def remove(self, key: str) -> None:
        if self._entries.pop(key, None) is not None:
            self._wake.set()

    def due(self, key: str) -> datetime | None:
        entry = self._entries.get(key)
        return entry.due if entry else None

    def start(self) -> None:
        if self._task is None:
            self._task = self._spawn(self._loop(), "cron-scheduler")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def tick(self) -> list[str]:
        """Fire every entry that is due now; returns their keys (the loop calls this; tests may too)."""
        now = self.clock.now()
        fired: list[str] = []
        for entry in list(self._entries.values()):
            if entry.due > now:
                continue
            scheduled = entry.due
            entry.due = next_fire(entry.expression, now, self.zone)
            fired.append(entry.key)
            self.fired += 1
            self._spawn(self._safe(entry, scheduled), f"cron:{entry.key}")
        return fired

    async def _safe(self, entry: _Entry, scheduled: datetime) -> None:
        try:
            await entry.fire(scheduled)
        except Exception:
            log.exception("scheduled run %s failed to start", entry.key)

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            self.tick()
            upcoming = min((e.due for e in self._entries.values()), default=None)
            if upcoming is None:
                await self._wake.wait()
                continue
            # Re-check at least every minute so a jump of the wall clock (suspend, NTP) is noticed.
            await self.clock.sleep_until(min(upcoming, self.clock.now() + RECHECK), self._wake)
