"""Bounded waits for a condition. Tests wait for the signal that something happened (a state, a
counter, a message), never for a fixed time: a fixed sleep is either too short on a loaded machine or
wasted time on an idle one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    check: Callable[[], T | None], *, timeout: float = 15.0, interval: float = 0.05, what: str = ""
) -> T:
    """Call `check` until it returns something truthy and return that; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}; last: {value!r}")
        time.sleep(interval)


async def until(
    check: Callable[[], T | None], *, timeout: float = 15.0, interval: float = 0.02, what: str = ""
) -> T:
    """`wait_until` for coroutines: polls without blocking the event loop the checked code runs on."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}; last: {value!r}")
        await asyncio.sleep(interval)
