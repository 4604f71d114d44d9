"""run_process: exit codes, interleaved capped output, timeout killing a forked child, no shell."""

from __future__ import annotations

import asyncio
import os
import sys
import time

from nekzus.jobs import run_process
from tests.jobs.test_runner import CHILD_IGNORES_TERM, _alive

ENV = {"PATH": "/usr/bin:/bin"}


def test_exit_code_and_interleaved_output() -> None:
    code = "import sys; print('out'); sys.stdout.flush(); print('err', file=sys.stderr); sys.exit(3)"
    result = asyncio.run(run_process([sys.executable, "-c", code], env=ENV))
    assert result.exit_code == 3 and not result.timed_out
    assert "out" in result.output and "err" in result.output


def test_environment_is_exactly_what_was_given() -> None:
    code = "import os; print(sorted(k for k in os.environ if k != 'LC_CTYPE'))"
    result = asyncio.run(run_process([sys.executable, "-c", code], env={"PATH": "/bin", "ONLY": "1"}))
    assert result.output.strip() == "['ONLY', 'PATH']"


def test_no_shell_interpretation() -> None:
    result = asyncio.run(run_process(["/bin/echo", "$HOME; rm -rf /"], env=ENV))
    assert result.output == "$HOME; rm -rf /\n"


def test_output_is_capped_and_the_child_is_not_blocked() -> None:
    code = "import sys; sys.stdout.write('x' * 3_000_000)"
    result = asyncio.run(run_process([sys.executable, "-c", code], env=ENV, max_output_bytes=2048))
    assert result.exit_code == 0 and result.truncated
    assert result.output.startswith("x" * 2048) and result.output.endswith("[Output truncated at 2048 bytes]")


def test_timeout_kills_a_child_that_ignores_sigterm() -> None:
    started = time.monotonic()
    result = asyncio.run(
        run_process([sys.executable, "-c", CHILD_IGNORES_TERM], env=ENV, timeout=1.0, kill_grace=0.5)
    )
    assert result.timed_out and result.exit_code is None
    assert time.monotonic() - started < 6
    child = int(result.output.split()[1])
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def test_leftover_background_child_does_not_hang_the_run() -> None:
    code = "import os, time\nif os.fork() == 0:\n    time.sleep(60)\nprint('parent done')"
    started = time.monotonic()
    result = asyncio.run(run_process([sys.executable, "-c", code], env=ENV, timeout=20))
    assert result.exit_code == 0 and "parent done" in result.output
    assert time.monotonic() - started < 5
    assert os.getpgid(os.getpid()) != 0  # sanity: we are still here
