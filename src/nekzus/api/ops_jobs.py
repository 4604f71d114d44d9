"""Run one piece of certificate or backup work as a job of the server's runner and wait for its end.

The work reports `(step, fraction)` progress the way the backup and certificate services do; the job
shows it as phase and percent (`/api/v1/jobs`, `job.*` events). The caller gets the work's own result
or its own exception back, so a scheduled run and a manual one behave the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from nekzus.errors import NekzusError
from nekzus.jobs import JobContext, JobRunner, JobState

T = TypeVar("T")

StepProgress = Callable[[str, float], None]
ProgressWork = Callable[[StepProgress], Awaitable[T]]


async def run_as_job(
    runner: JobRunner,
    kind: str,
    work: ProgressWork[T],
    *,
    triggered_by: str = "",
    timeout: float | None = None,
) -> T:
    raised: list[BaseException] = []

    async def job_work(ctx: JobContext) -> T:
        loop = asyncio.get_running_loop()

        def progress(step: str, fraction: float) -> None:
            # Backups report from a worker thread: hand the update to the loop (in order, before the
            # thread's result, so the final 100 % is never overwritten).
            try:
                here = asyncio.get_running_loop()
            except RuntimeError:
                here = None
            if here is loop:
                ctx.progress(fraction * 100.0, step)
            else:
                loop.call_soon_threadsafe(ctx.progress, fraction * 100.0, step)

        try:
            return await work(progress)
        except Exception as exc:
            raised.append(exc)
            raise

    job = await runner.submit(kind, job_work, triggered_by=triggered_by, timeout=timeout)
    await job.done.wait()
    if job.state is JobState.SUCCEEDED:
        result: T = job.result
        return result
    if raised:
        raise raised[0]
    raise NekzusError(f"{kind} job {job.id} ended {job.state.value}: {job.error or ''}".strip())
