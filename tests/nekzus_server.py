"""Start the real `nekzus` command as a subprocess on a free loopback port, for tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


class NekzusServer:
    """One running Nekzus. `url` is its base URL; `client()` an httpx client pointed at it."""

    def __init__(
        self,
        config: Mapping[str, Any] | None = None,
        *,
        tls: bool = False,
        env: Mapping[str, str] | None = None,
        data_dir: Path | None = None,
        rate_limits: bool = False,
        extra_args: list[str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="nekzus-test-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.tls = tls
        base: dict[str, Any] = {
            # One process unless a test asks for more (`server.workers`): keeps the suite fast.
            "server": {"addr": f"127.0.0.1:{self.port}", "workers": 1},
            "storage": {"database_path": str(self.data_dir / "nexus.db")},
        }
        if not rate_limits:
            base["rate_limits"] = {"enabled": False}
        self.config = deep_merge(base, config or {})
        self.config_path = self.data_dir / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(self.config))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("NEKZUS_")}
        self.env.update(env or {})
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir / "nekzus.log"
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return self.url.replace("http", "ws", 1)

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "nekzus", "--config", str(self.config_path)]
        if not self.tls:
            cmd.append("--insecure-http")
        return cmd + self.extra_args

    # Start-up is import-bound: well under 10 s on an idle machine, but 45 s has been seen on the shared
    # 2-core box under load. The bound only matters when something is wrong.
    def start(self, wait: bool = True, timeout: float = 120.0) -> NekzusServer:
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        self.proc = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.data_dir
        )
        log.close()
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(verify=False, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"nekzus exited with {self.proc.returncode}:\n{self.logs()}")
                try:
                    if client.get(self.url + "/readyz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        raise TimeoutError(f"nekzus not ready after {timeout}s:\n{self.logs()}")

    def client(self, **kwargs: Any) -> httpx.Client:
        kwargs.setdefault("timeout", 15.0)
        return httpx.Client(base_url=self.url, verify=False, **kwargs)

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        code = self.proc.returncode
        self.proc = None
        return code

    def edit_config(self, change: Callable[[dict[str, Any]], None]) -> None:
        """Rewrite the config file on disk through `change`; the running server reloads it on its own."""
        config = yaml.safe_load(self.config_path.read_text()) or {}
        change(config)
        self.config_path.write_text(yaml.safe_dump(config))

    def restart(self) -> NekzusServer:
        self.stop()
        return self.start()

    def __enter__(self) -> NekzusServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_cli(
    args: list[str], env: Mapping[str, str] | None = None, cwd: Path | None = None, timeout: float = 20.0
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NEKZUS_")}
    environ["NEKZUS_WORKERS"] = "1"  # one process unless the test's env asks for more
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "nekzus", *args],
        capture_output=True,
        text=True,
        env=environ,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
