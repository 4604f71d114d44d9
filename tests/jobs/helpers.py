"""A real database and bus for in-process job runner tests (no server, no network)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from nekzus.events import Event, EventBus
from nekzus.jobs import JobRunner
from nekzus.store import Database


class Tasks:
    """The spawn collaborator: keeps references, cancels the leftovers at the end."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


@asynccontextmanager
async def runner_env(
    tmp: Path, **limits: Any
) -> AsyncIterator[tuple[JobRunner, list[Event], Database, Tasks]]:
    db = Database(str(tmp / "jobs.db"))
    await db.open()
    bus = EventBus()
    events: list[Event] = []
    bus.subscribe(events.append)
    tasks = Tasks()
    runner = JobRunner(db, bus, tasks.spawn, **limits)
    await runner.start()
    try:
        yield runner, events, db, tasks
    finally:
        await runner.stop()
        await tasks.close()
        await db.close()
