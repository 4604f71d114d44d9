"""Scheduled backups: one at start-up, then every `backup.schedule`, pruned to `backup.retention` newest.

The work is one async function taking a progress callback (`run_once`), so it can move onto a job runner;
the loop that paces it is the only thing that knows about time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from nekzus.backup.service import BackupService, Progress, iso

log = logging.getLogger("nekzus.backup")

# The job kind a backup runs as (scheduled, triggered or manual).
BACKUP_JOB = "backup.create"
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
        self, service: BackupService, interval: float, retention: int, run_job: RunJob = run_inline
    ) -> None:
        self.service = service
        self.run_job = run_job
        self.interval = interval
        self.retention = retention
        self.running = False
        self.last_backup_time: float | None = None
        self.next_backup_time: float | None = None
        self.last_error: str | None = None

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
                self.next_backup_time = time.time() + self.interval
                await asyncio.sleep(self.interval)
        finally:
            self.running = False

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
            "retention": self.retention,
            "backup_count": self.service.count(),
        }
        if self.last_backup_time is not None:
            status["last_backup_time"] = iso(self.last_backup_time)
        if self.next_backup_time is not None:
            status["next_backup_time"] = iso(self.next_backup_time)
        if self.last_error:
            status["last_error"] = self.last_error
        return {"enabled": True, "status": status}
