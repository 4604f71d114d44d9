"""The job runner: every piece of background work with a lifetime runs here.

See the package docstring for the contract. Internals: each submitted job is one supervised task
(started through the injected `spawn`) that waits for a slot of its kind's pool, runs the work under
the job's timeout and records every state change in the `jobs` table and on the bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, delete, func, insert, select, update

from nekzus.errors import NekzusError, NotFound, Unavailable
from nekzus.events import EventBus
from nekzus.jobs.events import JobEvent, JobSnapshot
from nekzus.jobs.models import JobRecord, JobState, jobs_table
from nekzus.jobs.process import ProcessResult, run_process
from nekzus.store import Database
from nekzus.tasks import Spawn

__all__ = ["Job", "JobContext", "JobFailed", "JobRunner", "QueueFull", "Work"]

log = logging.getLogger("nekzus.jobs")

OUTPUT_TAIL_BYTES = 4096
# Progress is published on every call but written to the database at most this often.
PERSIST_INTERVAL = 1.0


class QueueFull(Unavailable):
    """The kind's pool has as many jobs waiting as it may queue: try again later."""

    default_code = "QUEUE_FULL"
    default_message = "Too many jobs are queued; try again later"


class JobFailed(NekzusError):
    """Raise from a work function to fail the job with exactly this message (no traceback logged)."""

    default_code = "JobEvent.FAILED"
    default_message = "Job failed"


@dataclass(slots=True)
class _Pool:
    concurrency: int
    max_queued: int
    semaphore: asyncio.Semaphore
    waiting: int = 0


@dataclass(slots=True)
class Job:
    """The live view of one job. Read-only for callers; `await runner.wait(job.id)` for the end."""

    id: str
    kind: str
    triggered_by: str
    timeout: float | None
    twins: Mapping[JobEvent, StrEnum]
    state: JobState = JobState.PENDING
    percent: float | None = None
    phase: str = ""
    message: str = ""
    error: str | None = None
    output_tail: str = ""
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    result: Any = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[Any] | None = None
    cancel_requested: bool = False
    # Called once when the job ends without its work ever starting (cancelled while queued).
    on_skipped: Callable[[Job], Awaitable[None]] | None = None

    def snapshot(self) -> JobSnapshot:
        return JobSnapshot(
            self.id,
            self.kind,
            self.state.value,
            self.percent,
            self.phase,
            self.message,
            self.error,
            self.triggered_by,
        )


Work = Callable[["JobContext"], Awaitable[Any]]


class JobContext:
    """What a work function gets: its identity, progress reporting and a process helper."""

    def __init__(self, runner: JobRunner, job: Job) -> None:
        self._runner = runner
        self._job = job
        self._persisted_at = 0.0

    @property
    def id(self) -> str:
        return self._job.id

    @property
    def kind(self) -> str:
        return self._job.kind

    @property
    def triggered_by(self) -> str:
        return self._job.triggered_by

    def progress(
        self, percent: float | None = None, phase: str | None = None, message: str | None = None
    ) -> None:
        """Report progress (percent 0..100, a short phase name, a human message); published at once."""
        job = self._job
        if percent is not None:
            job.percent = max(0.0, min(100.0, float(percent)))
        if phase is not None:
            job.phase = phase[:128]
        if message is not None:
            job.message = message[:1000]
        self._runner._publish(JobEvent.PROGRESS, job)
        now = time.monotonic()
        if now - self._persisted_at >= PERSIST_INTERVAL:
            self._persisted_at = now
            self._runner._persist_soon(job)

    def log(self, text: str) -> None:
        """Append to the job's output tail (the last few KiB are kept in the record)."""
        tail = self._job.output_tail + text
        if len(tail) > OUTPUT_TAIL_BYTES:
            tail = tail[-OUTPUT_TAIL_BYTES:]
        self._job.output_tail = tail

    async def run_process(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: str | None = None,
        timeout: float | None = None,
        max_output_bytes: int = 10 * 1024 * 1024,
    ) -> ProcessResult:
        """Run a program in its own process group (never a shell); output also feeds the job's tail.

        Timeout returns a result with `timed_out`; cancelling the job kills the whole group.
        """
        return await run_process(
            argv, env=env, cwd=cwd, timeout=timeout, max_output_bytes=max_output_bytes, on_output=self.log
        )


class JobRunner:
    """Bounded, persisted, observable background work. One per server."""

    def __init__(
        self,
        db: Database,
        bus: EventBus,
        spawn: Spawn,
        *,
        max_concurrent: int = 4,
        max_queued: int = 100,
        keep_records: int = 1000,
    ) -> None:
        self._db = db
        self._bus = bus
        self._spawn = spawn
        self._default = (max_concurrent, max_queued)
        self._pools: dict[str, _Pool] = {}
        self._jobs: dict[str, Job] = {}
        self._keep = keep_records
        self._closing = False
        # With several worker processes: ask the others to cancel a job this one does not run (a job
        # runs in the worker whose request started it); True when the request was sent.
        self.cancel_elsewhere: Callable[[str], bool] = lambda _job_id: False

    # -- configuration ----------------------------------------------------------------------------
    def set_limit(self, kind: str, *, concurrency: int, max_queued: int) -> None:
        """Give a kind its own pool (otherwise it gets the runner's default limits)."""
        self._pools[kind] = _Pool(concurrency, max_queued, asyncio.Semaphore(concurrency))

    def _pool(self, kind: str) -> _Pool:
        pool = self._pools.get(kind)
        if pool is None:
            concurrency, queued = self._default
            pool = self._pools[kind] = _Pool(concurrency, queued, asyncio.Semaphore(concurrency))
        return pool

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> int:
        """Mark jobs left pending/running by a crash as failed; returns how many."""
        result = await self._db.execute(
            update(jobs_table)
            .where(jobs_table.c.state.in_([JobState.PENDING.value, JobState.RUNNING.value]))
            .values(
                state=JobState.FAILED.value,
                error="interrupted by a server restart",
                finished_at=time.time(),
            )
        )
        count = int(result.rowcount or 0)
        if count:
            log.warning("%d job(s) were interrupted by a restart and are marked failed", count)
        return count

    async def stop(self, grace: float = 2.5) -> None:
        """Cancel every live job (their process groups are killed) and wait briefly for them."""
        self._closing = True
        live = [job for job in self._jobs.values() if not job.state.final]
        for job in live:
            job.cancel_requested = True
            if job.task is not None:
                job.task.cancel()
        if live:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(j.done.wait() for j in live)), grace)

    # -- public API -------------------------------------------------------------------------------
    async def submit(
        self,
        kind: str,
        work: Work,
        *,
        timeout: float | None = None,
        triggered_by: str = "",
        job_id: str | None = None,
        twins: Mapping[JobEvent, StrEnum] | None = None,
        on_skipped: Callable[[Job], Awaitable[None]] | None = None,
    ) -> Job:
        """Queue `work`; raises QueueFull (503 QUEUE_FULL) when the kind's queue is at its bound."""
        if self._closing:
            raise Unavailable("The server is shutting down", code="SHUTTING_DOWN")
        pool = self._pool(kind)
        if pool.waiting >= pool.max_queued + pool.concurrency:
            raise QueueFull()
        pool.waiting += 1  # counted before any await, so concurrent submits cannot overshoot
        job = Job(
            id=job_id or f"job_{secrets.token_hex(8)}",
            kind=kind,
            triggered_by=triggered_by,
            timeout=timeout,
            twins=dict(twins or {}),
            on_skipped=on_skipped,
        )
        self._jobs[job.id] = job
        try:
            await self._insert(job)
        except BaseException:
            pool.waiting -= 1
            self._jobs.pop(job.id, None)
            raise
        self._publish(JobEvent.QUEUED, job)
        job.task = self._spawn(self._run(job, work, pool), f"job:{job.id}")
        job.task.add_done_callback(lambda _task: self._task_ended(job, pool))
        return job

    def get(self, job_id: str) -> Job | None:
        """The live job (in memory while the server runs); finished ones stay until pruned."""
        return self._jobs.get(job_id)

    async def wait(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"Job {job_id} not found", code="JOB_NOT_FOUND")
        await job.done.wait()
        return job

    def cancel(self, job_id: str) -> bool:
        """Ask a job to stop; True if it was still live. Its process group is killed by run_process."""
        job = self._jobs.get(job_id)
        if job is None or job.state.final:
            return False
        job.cancel_requested = True
        if job.task is not None:
            job.task.cancel()
        return True

    async def record(self, job_id: str) -> JobRecord | None:
        row = await self._db.first(select(jobs_table).where(jobs_table.c.id == job_id))
        return None if row is None else JobRecord.from_row(row)

    async def records(
        self, *, kind: str | None = None, state: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[JobRecord]:
        query = select(jobs_table).where(*self._filters(kind, state))
        rows = await self._db.rows(query.order_by(jobs_table.c.seq.desc()).limit(limit).offset(offset))
        return [JobRecord.from_row(row) for row in rows]

    async def count_records(self, *, kind: str | None = None, state: str | None = None) -> int:
        """How many records `records` pages through with the same filters (for page controls)."""
        query = select(func.count()).select_from(jobs_table).where(*self._filters(kind, state))
        return int(await self._db.scalar(query) or 0)

    @staticmethod
    def _filters(kind: str | None, state: str | None) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = []
        if kind:
            conditions.append(jobs_table.c.kind == kind)
        if state:
            conditions.append(jobs_table.c.state == state)
        return conditions

    # -- internals --------------------------------------------------------------------------------
    async def _run(self, job: Job, work: Work, pool: _Pool) -> None:
        ctx = JobContext(self, job)
        try:
            async with pool.semaphore:
                if job.cancel_requested:
                    raise asyncio.CancelledError
                job.state = JobState.RUNNING
                job.started_at = time.time()
                await self._save(job)
                self._publish(JobEvent.STARTED, job)
                async with asyncio.timeout(job.timeout):
                    job.result = await work(ctx)
            job.state = JobState.SUCCEEDED
            job.percent = 100.0
        except asyncio.CancelledError:
            job.state = JobState.CANCELLED
            job.error = "cancelled" if not self._closing else "cancelled: server shutting down"
        except TimeoutError:
            job.state = JobState.FAILED
            job.error = f"timed out after {job.timeout:g}s"
        except NekzusError as exc:
            job.state = JobState.FAILED
            job.error = exc.message
        except Exception as exc:
            log.exception("job %s (%s) failed", job.id, job.kind)
            job.state = JobState.FAILED
            job.error = f"{type(exc).__name__}: {exc}"
        finally:
            job.finished_at = time.time()
            if not job.state.final:
                job.state = JobState.CANCELLED
            try:
                await asyncio.shield(self._finish(job))
            finally:
                job.done.set()

    def _task_ended(self, job: Job, pool: _Pool) -> None:
        """Runs exactly once per job, even when its task was cancelled before it ever started."""
        pool.waiting -= 1
        if job.done.is_set():
            return
        job.state = JobState.CANCELLED
        job.error = job.error or "cancelled"
        job.finished_at = job.finished_at or time.time()
        job.done.set()
        if not self._closing:
            self._spawn(self._finish(job), f"job-end:{job.id}")

    async def _finish(self, job: Job) -> None:
        try:
            await self._save(job)
        except Exception:
            log.exception("could not record the end of job %s", job.id)
        if job.started_at is None and job.on_skipped is not None:
            try:
                await job.on_skipped(job)
            except Exception:
                log.exception("clean-up of skipped job %s failed", job.id)
        topic = {JobState.SUCCEEDED: JobEvent.SUCCEEDED, JobState.FAILED: JobEvent.FAILED}.get(
            job.state, JobEvent.CANCELLED
        )
        self._publish(topic, job)
        self._forget_finished()
        with contextlib.suppress(Exception):
            await self._prune()

    def _forget_finished(self) -> None:
        finished = [j for j in self._jobs.values() if j.state.final]
        for job in finished[: max(len(finished) - 200, 0)]:
            self._jobs.pop(job.id, None)

    def _publish(self, type_: JobEvent, job: Job) -> None:
        data = job.snapshot().wire()
        self._bus.emit(type_, data)
        twin = job.twins.get(type_)
        if twin is not None:
            self._bus.emit(twin, data)

    def _persist_soon(self, job: Job) -> None:
        self._spawn(self._save_quietly(job), f"job-progress:{job.id}")

    async def _save_quietly(self, job: Job) -> None:
        with contextlib.suppress(Exception):
            await self._save(job)

    async def _insert(self, job: Job) -> None:
        await self._db.execute(
            insert(jobs_table).values(
                id=job.id,
                kind=job.kind,
                state=job.state.value,
                percent=job.percent,
                error=None,
                triggered_by=job.triggered_by,
                created_at=job.created_at,
            )
        )

    async def _save(self, job: Job) -> None:
        await self._db.execute(
            update(jobs_table)
            .where(jobs_table.c.id == job.id)
            .values(
                state=job.state.value,
                percent=job.percent,
                phase=job.phase,
                message=job.message,
                error=job.error,
                output_tail=job.output_tail,
                started_at=job.started_at,
                finished_at=job.finished_at,
            )
        )

    async def _prune(self) -> None:
        """Keep the newest `keep_records` job records."""
        async with self._db.transaction() as tx:
            cutoff = await tx.scalar(
                select(jobs_table.c.seq).order_by(jobs_table.c.seq.desc()).offset(self._keep).limit(1)
            )
            if cutoff is not None:
                await tx.execute(
                    delete(jobs_table).where(
                        jobs_table.c.seq <= cutoff, jobs_table.c.finished_at.is_not(None)
                    )
                )
