"""Scheduled backups: one at start-up, then every `backup.schedule`, pruned to `backup.retention` newest.

The work is one async function taking a progress callback (`run_once`), so it can move onto a job runner;
the loop that paces it is the only thing that knows about time.

The interval and retention may be changed at run time (from the dashboard). Such a change is kept in a
small JSON file beside the backups so it survives a restart; while that file exists it wins over the
configured values.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from nekzus.backup.service import BackupService, Progress, iso
from nekzus.errors import Invalid

log = logging.getLogger("nekzus.backup")

# The job kind a backup runs as (scheduled, triggered or manual).
BACKUP_JOB = "backup.create"
# The shortest interval accepted at run time: the same floor as the `backup.schedule` setting.
MIN_INTERVAL = 0.2
BackupWork = Callable[[Progress], Awaitable[dict[str, Any]]]
# Runs a backup's work (as a job of the server's runner when there is one) and returns its manifest.
RunJob = Callable[[str, BackupWork], Awaitable[dict[str, Any]]]


async def run_inline(_kind: str, work: BackupWork) -> dict[str, Any]:
    return await work(lambda _step, _fraction: None)


def go_duration(seconds: float) -> str:
    """Render like Go's time.Duration (`24h0m0s`, `1m30s`, `500ms`): the wire format clients know."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole = int(seconds)
    frac = seconds - whole
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    sec_text = f"{secs + frac:g}s"
    if hours:
        return f"{hours}h{minutes}m{sec_text}"
    if minutes:
        return f"{minutes}m{sec_text}"
    return sec_text


class BackupScheduler:
    def __init__(
        self,
        service: BackupService,
        interval: float,
        retention: int,
        run_job: RunJob = run_inline,
        settings_path: Path | None = None,
    ) -> None:
        self.service = service
        self.run_job = run_job
        self.interval = interval
        self.retention = retention
        self.settings_path = settings_path
        self.overridden = False
        self.running = False
        self.last_backup_time: float | None = None
        self.next_backup_time: float | None = None
        self.last_error: str | None = None
        self._last_scheduled: float | None = None
        self._changed = asyncio.Event()
        self._load_settings()

    def _load_settings(self) -> None:
        if self.settings_path is None or not self.settings_path.is_file():
            return
        try:
            saved = json.loads(self.settings_path.read_text(encoding="utf-8"))
            interval, retention = _checked(saved.get("interval_seconds"), saved.get("retention"))
        except (OSError, ValueError, AttributeError, Invalid):
            log.warning("ignoring unreadable backup schedule %s", self.settings_path)
            return
        self.interval, self.retention, self.overridden = interval, retention, True

    def update(self, interval: float | None = None, retention: int | None = None) -> dict[str, Any]:
        """Change the interval and/or retention now; the next run moves to last run + new interval."""
        new_interval, new_retention = _checked(
            self.interval if interval is None else interval,
            self.retention if retention is None else retention,
        )
        if self.settings_path is not None:
            self.settings_path.parent.mkdir(parents=True, exist_ok=True)
            body = {"interval_seconds": new_interval, "retention": new_retention}
            self.settings_path.write_text(json.dumps(body), encoding="utf-8")
        self.interval, self.retention, self.overridden = new_interval, new_retention, True
        if self._last_scheduled is not None:
            self.next_backup_time = self._last_scheduled + self.interval
        self._changed.set()
        return self.status()

    async def run_once(self, progress: Progress, description: str = "") -> dict[str, Any]:
        """Take a scheduled backup, then prune to the retention count."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        meta = await self.service.create(
            description or f"Scheduled backup at {stamp}", trigger="scheduled", progress=progress
        )
        self.last_backup_time = time.time()
        removed = await self.service.prune(self.retention)
        if removed:
            log.info("backup retention removed %s", ", ".join(removed))
        return meta

    async def loop(self) -> None:
        self.running = True
        try:
            while True:
                try:
                    await self.run_job(BACKUP_JOB, self.run_once)
                    self.last_error = None
                except Exception as exc:
                    self.last_error = str(exc)
                    log.exception("scheduled backup failed")
                self._last_scheduled = time.time()
                self.next_backup_time = self._last_scheduled + self.interval
                await self._wait_for_next()
        finally:
            self.running = False

    async def _wait_for_next(self) -> None:
        """Sleep until the next run is due; a schedule change wakes the loop to re-aim."""
        while True:
            remaining = (self.next_backup_time or 0.0) - time.time()
            if remaining <= 0:
                return
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=remaining)
            except TimeoutError:
                return

    async def trigger(self, description: str = "") -> dict[str, Any]:
        """A manual run on the scheduler's behalf; not pruned right away (only scheduled runs prune)."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        text = description or f"Manual trigger at {stamp}"

        async def work(progress: Progress) -> dict[str, Any]:
            return await self.service.create(text, trigger="triggered", progress=progress)

        meta = await self.run_job(BACKUP_JOB, work)
        self.last_backup_time = time.time()
        return meta

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "running": self.running,
            "interval": go_duration(self.interval),
            "interval_seconds": self.interval,
            "retention": self.retention,
            "source": "dashboard" if self.overridden else "config",
            "backup_count": self.service.count(),
        }
        if self.last_backup_time is not None:
            status["last_backup_time"] = iso(self.last_backup_time)
        if self.next_backup_time is not None:
            status["next_backup_time"] = iso(self.next_backup_time)
        if self.last_error:
            status["last_error"] = self.last_error
        return {"enabled": True, "status": status}


def _checked(interval: Any, retention: Any) -> tuple[float, int]:
    if isinstance(interval, bool) or not isinstance(interval, int | float) or not math.isfinite(interval):
        raise Invalid("interval must be a duration like 30m, 6h or 24h", code="INVALID_REQUEST")
    if interval < MIN_INTERVAL:
        raise Invalid("interval must be at least 200ms", code="INVALID_REQUEST")
    if isinstance(retention, bool) or not isinstance(retention, int) or retention < 1:
        raise Invalid("retention must be a whole number of at least 1", code="INVALID_REQUEST")
    return float(interval), retention
