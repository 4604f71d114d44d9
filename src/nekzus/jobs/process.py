"""Run a child program in its own session, capture capped output, and kill its whole process group.

Never through a shell: `argv` is executed directly. The child becomes the leader of a new session
(`start_new_session=True`), so everything it forks shares its process group; on timeout or cancellation
the whole group gets SIGTERM, then SIGKILL after a grace period, and a child that ignores SIGTERM or
outlives its parent still dies. When the leader exits normally, whatever it left behind in the group is
killed too: a job owns its processes and nothing outlives it (a program that detaches with its own
`setsid` is out of reach, as with any supervisor).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["ProcessResult", "run_process"]

KILL_GRACE = 2.0
_CHUNK = 64 * 1024
# After the leader exits, how long to keep reading output its leftovers may still write.
_DRAIN_AFTER_EXIT = 0.5
_SLICE = 0.25


@dataclass(frozen=True, slots=True)
class ProcessResult:
    exit_code: int | None  # None when the program was killed (timeout, cancel) or could not start
    output: str  # stdout and stderr interleaved, capped, with a truncation note when cut
    truncated: bool
    timed_out: bool
    duration: float


def truncation_note(limit: int) -> str:
    return f"\n\n[Output truncated at {limit} bytes]"


def _signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _group_alive(pgid: int) -> bool:
    return _signal_group(pgid, 0)


async def _terminate_group(pgid: int, proc: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM to the group, then SIGKILL to what is left after `grace` seconds."""
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if proc.returncode is not None and not _group_alive(pgid):
            return
        await asyncio.sleep(0.05)
    _signal_group(pgid, signal.SIGKILL)


async def run_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str | None = None,
    timeout: float | None = None,
    max_output_bytes: int = 10 * 1024 * 1024,
    on_output: Callable[[str], None] | None = None,
    kill_grace: float = KILL_GRACE,
) -> ProcessResult:
    """Run `argv` (no shell) with exactly `env`; raise OSError when it cannot start.

    Cancelling the awaiting task terminates the process group before the CancelledError propagates.
    """
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=dict(env),
        cwd=cwd,
        start_new_session=True,
    )
    pgid = proc.pid  # the session leader's pid is the group id
    assert proc.stdout is not None
    capture = _Capture(max_output_bytes, on_output)
    deadline = None if timeout is None else started + timeout
    timed_out = False
    try:
        timed_out = await _pump(proc, proc.stdout, capture, deadline)
        if timed_out:
            await _terminate_group(pgid, proc, kill_grace)
        # Whatever the leader left running in its group goes with it; then read to the end of the pipe
        # (its last writer is gone now), which also lets the transport close cleanly.
        if _group_alive(pgid):
            _signal_group(pgid, signal.SIGKILL)
        await _drain(proc.stdout, capture, 2.0)
        if proc.returncode is None:
            await proc.wait()
    except asyncio.CancelledError:
        await asyncio.shield(_terminate_group(pgid, proc, kill_grace))
        raise
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
    text = capture.text()
    code = None if timed_out else proc.returncode
    return ProcessResult(code, text, capture.truncated, timed_out, time.monotonic() - started)


class _Capture:
    """Keeps the first `limit` bytes; later output is read (so the child never blocks) and dropped."""

    def __init__(self, limit: int, on_output: Callable[[str], None] | None) -> None:
        self.limit = limit
        self.kept = bytearray()
        self.truncated = False
        self.on_output = on_output

    def feed(self, chunk: bytes) -> None:
        room = self.limit - len(self.kept)
        if room > 0:
            self.kept.extend(chunk[:room])
        if len(chunk) > room:
            self.truncated = True
        if self.on_output is not None:
            self.on_output(chunk.decode("utf-8", "replace"))

    def text(self) -> str:
        out = self.kept.decode("utf-8", "replace")
        return out + truncation_note(self.limit) if self.truncated else out


async def _read_some(stdout: asyncio.StreamReader, wait: float) -> bytes | None:
    """A chunk, b"" at end of file, or None when nothing arrived within `wait` seconds."""
    try:
        return await asyncio.wait_for(stdout.read(_CHUNK), max(wait, 0.0))
    except TimeoutError:
        return None


async def _pump(
    proc: asyncio.subprocess.Process, stdout: asyncio.StreamReader, capture: _Capture, deadline: float | None
) -> bool:
    """Read output until the leader exited and the pipe is drained; True when the deadline passed first."""
    exited_at: float | None = None
    while True:
        now = time.monotonic()
        if deadline is not None and now >= deadline and proc.returncode is None:
            return True
        if proc.returncode is not None and exited_at is None:
            exited_at = now
        if exited_at is not None and now - exited_at > _DRAIN_AFTER_EXIT:
            return False  # leftovers of the group still hold the pipe open: stop reading
        wait = _SLICE if deadline is None else min(_SLICE, deadline - now)
        chunk = await _read_some(stdout, wait)
        if chunk == b"":
            break
        if chunk:
            capture.feed(chunk)
    # End of output: the leader may still be running (it closed stdout); wait for it within the deadline.
    remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
    try:
        await asyncio.wait_for(proc.wait(), remaining)
    except TimeoutError:
        return True
    return False


async def _drain(stdout: asyncio.StreamReader, capture: _Capture, budget: float) -> None:
    end = time.monotonic() + budget
    while time.monotonic() < end:
        chunk = await _read_some(stdout, end - time.monotonic())
        if chunk == b"":
            return
        if chunk:
            capture.feed(chunk)
