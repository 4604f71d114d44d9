"""The job runner in-process: states, progress events, timeout, cancel, bounded queue, crash recovery."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from enum import StrEnum
from pathlib import Path

import pytest
from sqlalchemy import insert

from nekzus.jobs import (
    JOB_CANCELLED,
    JOB_FAILED,
    JOB_PROGRESS,
    JOB_QUEUED,
    JOB_STARTED,
    JOB_SUCCEEDED,
    Job,
    JobContext,
    JobEvent,
    JobFailed,
    JobState,
    QueueFull,
)
from nekzus.jobs.models import jobs_table
from tests.jobs.helpers import runner_env
from tests.waiting import until


class DemoEvent(StrEnum):
    """A feature's own events, published as twins of the runner's."""

    PROGRESS = "demo.thing.progress"
    COMPLETED = "demo.thing.completed"


def test_success_progress_and_record(tmp_path: Path) -> None:
    async def main() -> None:
        async with runner_env(tmp_path) as (runner, events, _db, _tasks):

            async def work(ctx: JobContext) -> str:
                ctx.progress(10, "first", "starting")
                ctx.log("hello\n")
                ctx.progress(60, "second")
                return "done"

            twins = {JobEvent.PROGRESS: DemoEvent.PROGRESS, JobEvent.SUCCEEDED: DemoEvent.COMPLETED}
            job = await runner.submit("demo", work, triggered_by="tester", twins=twins)
            finished = await runner.wait(job.id)
            assert finished.state is JobState.SUCCEEDED and finished.result == "done"
            types = [e.type for e in events if e.data["jobId"] == job.id]
            assert (
                types[0] == JOB_QUEUED
                and JOB_STARTED in types
                and types[-1] in (JOB_SUCCEEDED, "demo.thing.completed")
            )
            assert (
                JOB_SUCCEEDED in types and "demo.thing.completed" in types and "demo.thing.progress" in types
            )
            progress = [e.data for e in events if e.type == JOB_PROGRESS]
            assert progress[0]["percent"] == 10 and progress[0]["phase"] == "first"
            row = await runner.record(job.id)
            assert row is not None
            assert row.state == "succeeded" and row.percent == 100 and row.triggered_by == "tester"
            assert row.output_tail == "hello\n" and row.started_at and row.finished_at

    asyncio.run(main())


def test_failure_timeout_and_cancel(tmp_path: Path) -> None:
    async def main() -> None:
        async with runner_env(tmp_path) as (runner, events, _db, _tasks):

            async def fails(ctx: JobContext) -> None:
                raise JobFailed("disk full")

            running = asyncio.Event()

            async def slow(ctx: JobContext) -> None:
                running.set()
                await asyncio.sleep(30)  # never finishes by itself: only the timeout or a cancel ends it

            failed = await runner.wait((await runner.submit("demo", fails)).id)
            assert failed.state is JobState.FAILED and failed.error == "disk full"

            timed = await runner.wait((await runner.submit("demo", slow, timeout=0.05)).id)
            assert timed.state is JobState.FAILED and "timed out" in (timed.error or "")

            running.clear()
            job = await runner.submit("demo", slow)
            await asyncio.wait_for(running.wait(), 5)
            assert job.state is JobState.RUNNING
            assert runner.cancel(job.id)
            done = await runner.wait(job.id)
            assert done.state is JobState.CANCELLED
            row = await runner.record(job.id)
            assert row is not None and row.state == "cancelled"
            assert any(e.type == JOB_FAILED for e in events) and any(e.type == JOB_CANCELLED for e in events)

    asyncio.run(main())


def test_bounded_concurrency_and_queue(tmp_path: Path) -> None:
    async def main() -> None:
        async with runner_env(tmp_path) as (runner, _events, _db, _tasks):
            runner.set_limit("q", concurrency=1, max_queued=1)
            gate = asyncio.Event()
            running = 0
            peak = 0

            async def work(ctx: JobContext) -> None:
                nonlocal running, peak
                running += 1
                peak = max(peak, running)
                await gate.wait()
                running -= 1

            first = await runner.submit("q", work)
            second = await runner.submit("q", work)
            with pytest.raises(QueueFull) as info:
                await runner.submit("q", work)
            assert info.value.status == 503 and info.value.code == "QUEUE_FULL"
            other = await runner.submit("other-kind", work)  # other kinds have their own pool
            # Both pools have started what they may: the first "q" job and the other kind run, the
            # second "q" job waits for the first.
            await until(lambda: running == 2, timeout=5, what="one job of each kind running")
            assert second.state is JobState.PENDING
            gate.set()
            for job in (first, second, other):
                assert (await runner.wait(job.id)).state is JobState.SUCCEEDED
            assert peak <= 2  # one of "q" plus the other kind
            third = await runner.submit("q", work)  # room again
            assert (await runner.wait(third.id)).state is JobState.SUCCEEDED

    asyncio.run(main())


def test_interrupted_jobs_are_marked_failed_at_start(tmp_path: Path) -> None:
    async def main() -> None:
        async with runner_env(tmp_path) as (_runner, _events, db, _tasks):
            await db.execute(
                insert(jobs_table),
                [
                    {"id": f"old-{state}", "kind": "demo", "state": state, "created_at": time.time()}
                    for state in ("running", "pending", "succeeded")
                ],
            )
        async with runner_env(tmp_path) as (runner, _events, _db, _tasks):
            rows = {r.id: r for r in await runner.records(kind="demo")}
            assert rows["old-running"].state == "failed" and "restart" in (rows["old-running"].error or "")
            assert rows["old-pending"].state == "failed"
            assert rows["old-succeeded"].state == "succeeded"

    asyncio.run(main())


CHILD_IGNORES_TERM = r"""
import os, signal, sys, time
pid = os.fork()
if pid == 0:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.stdout.write(f"child {os.getpid()}\n"); sys.stdout.flush()
    while True:
        time.sleep(0.1)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie of an exited child of another parent is gone for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_cancel_kills_the_whole_process_group(tmp_path: Path) -> None:
    async def main() -> None:
        async with runner_env(tmp_path) as (runner, _events, _db, _tasks):

            async def work(ctx: JobContext) -> None:
                await ctx.run_process(
                    [sys.executable, "-c", CHILD_IGNORES_TERM], env={"PATH": "/usr/bin:/bin"}
                )

            job = await runner.submit("proc", work)
            deadline = time.monotonic() + 10
            while "child" not in job.output_tail and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            child = int(job.output_tail.split()[1])
            assert _alive(child)
            runner.cancel(job.id)
            done = await runner.wait(job.id)
            assert done.state is JobState.CANCELLED
            deadline = time.monotonic() + 5
            while _alive(child) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert not _alive(child)

    asyncio.run(main())


def test_cancel_right_after_submit(tmp_path: Path) -> None:
    async def main() -> None:
        async with runner_env(tmp_path) as (runner, events, _db, _tasks):
            runner.set_limit("c", concurrency=1, max_queued=1)

            async def work(ctx: JobContext) -> None:
                await asyncio.sleep(30)  # never runs to the end: cancelled before it starts

            skipped: list[str] = []

            async def cleanup(job: Job) -> None:
                skipped.append(job.id)

            job = await runner.submit("c", work, on_skipped=cleanup)
            assert runner.cancel(job.id)  # before its task ever ran
            done = await asyncio.wait_for(runner.wait(job.id), 5)
            assert done.state is JobState.CANCELLED
            deadline = time.monotonic() + 5
            while (row := await runner.record(job.id)) is not None and row.state != "cancelled":
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            assert any(e.type == JOB_CANCELLED and e.data["jobId"] == job.id for e in events)
            assert skipped == [job.id]
            # its slot was given back: two more fit again (one running, one queued)
            first = await runner.submit("c", work)
            second = await runner.submit("c", work)
            for other in (first, second):
                runner.cancel(other.id)
                assert (await asyncio.wait_for(runner.wait(other.id), 5)).state is JobState.CANCELLED

    asyncio.run(main())
