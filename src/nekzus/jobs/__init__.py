"""The job runner: background work with a lifetime (deploys, script runs, backups, syncs).

Public API (everything else in this package is internal):

    runner = services.domains.features.require(JOBS)   # built once by nekzus.compose
    job = await runner.submit(
        "toolbox.deploy",                  # kind: a short dotted name; each kind may get its own pool
        work,                              # async def work(ctx: JobContext) -> Any
        timeout=600,                       # seconds, None = no limit; expiry cancels the work -> failed
        triggered_by="dev-1234",           # who asked: device id, user, api_key:<id>, scheduler:<id>
        twins={JobEvent.PROGRESS: Mine.PROGRESS},  # optional: also publish a feature's own events
        on_skipped=cleanup,                # optional: async cleanup(job) if cancelled before it started
    )                                      # raises QueueFull (503 QUEUE_FULL) when the kind's queue is full
    job.id, job.state                      # live view; pending → running → succeeded|failed|cancelled
    await runner.wait(job.id)              # the finished Job (job.result = what `work` returned)
    runner.cancel(job.id)                  # cancels the work; its process groups are killed
    runner.set_limit(kind, concurrency=3, max_queued=100)
    await runner.record(job_id) / runner.records(kind=..., state=...)   # persisted JobRecord(s)

Inside `work`:

    ctx.progress(percent=40, phase="pulling", message="pulling image")   # published as JobEvent.PROGRESS
    ctx.log("text")                                                       # kept in the record's output tail
    result = await ctx.run_process(argv, env=env, timeout=30, max_output_bytes=1 << 20)
    # ProcessResult(exit_code, output, truncated, timed_out, duration); never a shell; own process group
    raise JobFailed("clear reason")                                       # -> failed with this error

Events (the `JobEvent` StrEnum in `nekzus.jobs.events`, data = `JobSnapshot.wire()`): job.queued,
job.started, job.progress, job.succeeded, job.failed, job.cancelled. The WebSocket hub forwards them to
clients that read events.

Records: table `jobs` (id, kind, state, percent, phase, message, error, output tail, triggered_by,
created/started/finished). Jobs found `pending`/`running` at start-up were interrupted by a crash and are
marked failed. The newest `jobs.keep_records` records are kept.

Cron (`nekzus.jobs.cron`): `CronScheduler(clock=, zone=, spawn=)`, `add(key, expr, fire, due=)`,
`validate_cron(expr)` (Invalid INVALID_CRON), `next_fire(expr, after, zone)`. A run missed while the
server was down fires once at start-up. `nekzus.jobs.clock.ManualClock` drives it in tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nekzus.domains import Key
from nekzus.jobs.clock import Clock, ManualClock, SystemClock
from nekzus.jobs.events import (
    JOB_CANCELLED,
    JOB_EVENT_TYPES,
    JOB_FAILED,
    JOB_PROGRESS,
    JOB_QUEUED,
    JOB_STARTED,
    JOB_SUCCEEDED,
    JobEvent,
    JobSnapshot,
)
from nekzus.jobs.models import JobRecord, JobState
from nekzus.jobs.process import ProcessResult, run_process
from nekzus.jobs.runner import Job, JobContext, JobFailed, JobRunner, QueueFull, Work

if TYPE_CHECKING:
    from nekzus.jobs.cron import CronScheduler, next_fire, resolve_zone, validate_cron

# Cron pulls in croniter and dateutil: loaded on first use (scripts' schedules), not by every server
# that only runs jobs.
_CRON = frozenset({"CronScheduler", "next_fire", "resolve_zone", "validate_cron"})


def __getattr__(name: str) -> Any:
    if name in _CRON:
        from nekzus.jobs import cron

        return getattr(cron, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# The server's one job runner (built by the composition root), for every domain and feature that runs
# background work: `services.domains.features.require(JOBS)`.
JOBS: Key[JobRunner] = Key("jobs")

__all__ = [
    "JOBS",
    "JOB_CANCELLED",
    "JOB_EVENT_TYPES",
    "JOB_FAILED",
    "JOB_PROGRESS",
    "JOB_QUEUED",
    "JOB_STARTED",
    "JOB_SUCCEEDED",
    "Clock",
    "CronScheduler",
    "Job",
    "JobContext",
    "JobEvent",
    "JobFailed",
    "JobRecord",
    "JobRunner",
    "JobSnapshot",
    "JobState",
    "ManualClock",
    "ProcessResult",
    "QueueFull",
    "SystemClock",
    "Work",
    "next_fire",
    "resolve_zone",
    "run_process",
    "validate_cron",
]
