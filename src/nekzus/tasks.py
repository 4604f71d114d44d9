"""The one way to start background work: `spawn(coro, name)` keeps a reference, names the task, logs
its failure and lets shutdown cancel it. Domains receive the `Spawn` callable, never the task set."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterator
from typing import Any, Protocol

log = logging.getLogger("nekzus")


class Spawn(Protocol):
    """Start `coro` as a supervised background task called `name`."""

    def __call__(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]: ...


class TaskSet:
    """Supervised background tasks of one running Nekzus."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)  # noqa: TID251 - the spawn helper itself
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:
        return iter(list(self._tasks))

    async def cancel_all(self, timeout: float) -> None:
        """Cancel every task and give them `timeout` seconds in total to finish."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait for it to end, without swallowing a cancellation of the caller itself."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
    except Exception:
        log.warning("task %s failed while being cancelled", task.get_name(), exc_info=True)
