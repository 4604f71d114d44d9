"""What the benchmarks share: CPU and memory of a process tree (Linux /proc), a Nekzus child process on a
loopback port with its own data dir, an nginx started from a generated config, wrk runs and their
parsing, and waiting for a URL to answer. Each benchmark stays a script of its own (`python bench/x.py`
puts this folder first on `sys.path`, so `import harness` finds this file).

CPU time is user + system of the process and its live descendants (the worker processes of a
multi-worker Nekzus): far less noisy than a rate on a shared machine, because it does not count time the
process spent waiting.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MIB = 1024 * 1024
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- one process tree, from /proc ------------------------------------------------------------------------


def process_tree(pid: int) -> list[int]:
    """The process and its live descendants (a process that ends meanwhile is skipped)."""
    pids = [pid]
    for one in pids:
        try:
            for task in os.listdir(f"/proc/{one}/task"):
                with open(f"/proc/{one}/task/{task}/children") as f:
                    pids.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return pids


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()  # the name may hold spaces and parentheses
    except OSError:
        return None


def cpu_split(pid: int, *, reaped: bool = False) -> tuple[float, float]:
    """User and system CPU seconds of the tree so far (fields 14 and 15 of /proc/<pid>/stat); `reaped`
    adds what its children that already ended and were waited for used (fields 16 and 17)."""
    user = system = 0
    for one in process_tree(pid):
        fields = _stat(one)
        if fields is None:
            continue
        user += int(fields[11]) + (int(fields[13]) if reaped else 0)
        system += int(fields[12]) + (int(fields[14]) if reaped else 0)
    return user / TICK, system / TICK


def cpu_seconds(pid: int, *, reaped: bool = False) -> float:
    """User + system CPU seconds of the tree so far."""
    return sum(cpu_split(pid, reaped=reaped))


def rss_bytes(pid: int) -> int:
    """Resident memory of the tree (pages the workers share after fork count once per process, so this
    is an upper bound of what the instance holds)."""
    total = 0
    for one in process_tree(pid):
        try:
            with open(f"/proc/{one}/status") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for line in lines:
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


def memory_of(pid: int) -> dict[str, float]:
    """One process: RSS and peak RSS from /proc/<pid>/status, PSS and USS (private pages) from
    /proc/<pid>/smaps_rollup, in MiB."""
    out: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024
    fields: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[2] == "kB":
                    fields[parts[0].rstrip(":")] = int(parts[1])
    except OSError:
        pass
    out["Pss"] = fields.get("Pss", 0) / 1024
    out["Uss"] = (fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)) / 1024
    return out


# ---- child processes ---------------------------------------------------------------------------------------


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Signal a child that still runs, wait for it, kill it when it does not stop in time."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll `url` until it answers below 500 (or `proc` exits, or time runs out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status < 500:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def _client_context() -> ssl.SSLContext:
    # No CA store is loaded (the server's certificate is self-signed): cheap enough to poll with.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


CLIENT_TLS = _client_context()


def _get(
    port: int, path: str, tls: bool, headers: dict[str, str] | None = None, timeout: float = 2.0
) -> tuple[int, bytes]:
    """(status, body) of one GET to 127.0.0.1:port on a new connection (HTTPS unverified when `tls`)."""
    conn: http.client.HTTPConnection
    if tls:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=CLIENT_TLS)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": f"127.0.0.1:{port}", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def http_status(port: int, path: str, tls: bool, timeout: float = 2.0) -> int:
    """The status of one GET to 127.0.0.1:port (HTTPS without verification when `tls`)."""
    return _get(port, path, tls, timeout=timeout)[0]


class NekzusProcess:
    """`python -m nekzus` on a loopback port with its data in `data_dir`: the config file names the
    listen address and the database there, plus `config`'s sections. `src` runs another source tree
    (`PYTHONPATH`) with this interpreter for A/B runs. Without `tls` it runs with `--insecure-http`."""

    def __init__(
        self,
        data_dir: Path,
        config: dict[str, Any] | None = None,
        *,
        port: int | None = None,
        src: Path | None = None,
        tls: bool = False,
        name: str = "config",
        log_name: str = "nekzus.log",
        drop_env: tuple[str, ...] = ("NEKZUS_",),
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.src = src
        self.tls = tls
        self.drop_env = drop_env
        sections = dict(config or {})
        server = {"addr": f"127.0.0.1:{self.port}", **sections.pop("server", {})}
        full = {"server": server, "storage": {"database_path": str(data_dir / "nexus.db")}, **sections}
        self.config = full
        data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path = data_dir / f"{name}.yaml"
        self.config_path.write_text(yaml.safe_dump(full))
        self.log_path = data_dir / log_name
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(self.drop_env)}
        if self.src is not None:
            env["PYTHONPATH"] = str(self.src)
        env.update(extra or {})
        return env

    def command(self, prefix: list[str] | None = None) -> list[str]:
        """The command line; `prefix` replaces `-m nekzus` (e.g. `-X importtime -m nekzus`)."""
        cmd = [sys.executable, *(prefix or ["-m", "nekzus"]), "--config", str(self.config_path)]
        if not self.tls:
            cmd.append("--insecure-http")
        return cmd

    def start(self, prefix: list[str] | None = None, env: dict[str, str] | None = None) -> None:
        with open(self.log_path, "ab") as log:
            self.started = time.perf_counter()
            self.proc = subprocess.Popen(
                self.command(prefix),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env(env),
                cwd=self.data_dir,
            )

    def wait_ready(self, timeout: float = 60.0, interval: float = 0.05) -> float:
        """Wait for the first 200 from /readyz; returns the seconds since `start`. Then, with several
        worker processes, wait until every one of them is ready too (followers start after the leader,
        and a load that arrives meanwhile would measure the start-up): the returned time is the first."""
        assert self.proc is not None
        deadline = self.started + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nekzus exited with {self.proc.returncode}: {self.logs()}")
            try:
                if http_status(self.port, "/readyz", self.tls) == 200:
                    elapsed = time.perf_counter() - self.started
                    self.wait_workers(deadline, interval)
                    return elapsed
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(interval)
        raise RuntimeError(f"nekzus not ready after {timeout}s: {self.logs()}")

    def wait_workers(self, deadline: float, interval: float = 0.05) -> None:
        """Until every worker answered /healthz as ready (each new connection lands on any worker), or
        at once for a single process (its answer names no worker)."""
        workers = self.config.get("server", {}).get("workers") or os.cpu_count() or 1
        seen: set[int] = set()
        while len(seen) < workers:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"workers {sorted(seen)} of {workers} ready: {self.logs()}")
            try:
                status, body = _get(self.port, "/healthz", self.tls, {"Accept": "application/json"})
            except (OSError, http.client.HTTPException):
                status, body = 0, b""
            if status == 200:
                index = json.loads(body).get("worker")
                if index is None:
                    return  # one process (or a tree without workers)
                seen.add(int(index))
            else:
                time.sleep(interval)

    def logs(self, tail: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=timeout)
        self.proc = None


# ---- nginx -------------------------------------------------------------------------------------------------


def start_nginx(workdir: Path, name: str, http_body: str, workers: str = "auto") -> subprocess.Popen[bytes]:
    """nginx in the foreground with `http_body` inside its `http` block; its pid file, logs and temp
    files stay in `workdir` (made readable: its workers run as an unprivileged user)."""
    workdir.chmod(0o755)
    conf = workdir / f"{name}.conf"
    conf.write_text(
        f"""
worker_processes {workers};
daemon off;
pid {workdir}/{name}.pid;
error_log {workdir}/{name}.error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {workdir}/{name}_body;
  proxy_temp_path {workdir}/{name}_proxy;
  fastcgi_temp_path {workdir}/{name}_fcgi;
  uwsgi_temp_path {workdir}/{name}_uwsgi;
  scgi_temp_path {workdir}/{name}_scgi;
  keepalive_requests 1000000;
  {http_body}
}}
"""
    )
    log = open(workdir / f"{name}.log", "wb")  # noqa: SIM115 - kept open for the child
    return subprocess.Popen(["nginx", "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)


# ---- wrk ---------------------------------------------------------------------------------------------------


def ms(text: str) -> float:
    """A wrk latency (`812.00us`, `3.21ms`, `1.02s`, `1.10m`) in milliseconds; NaN when unreadable."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        return float("nan")
    number, unit = match.groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


@dataclass
class WrkRun:
    rate: float  # requests/s
    p50: float  # ms
    p99: float  # ms
    requests: int
    non_2xx: int
    problems: list[str] = field(default_factory=list)  # wrk's lines on non-2xx answers and socket errors


def run_wrk(
    url: str, *, connections: int, duration: int, threads: int = 2, header: str | None = None
) -> WrkRun:
    """One wrk run with latency percentiles."""
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency"]
    if header:
        argv += ["-H", header]
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    problems = [line.strip() for line in out.splitlines() if "Non-2xx" in line or "Socket errors" in line]
    return WrkRun(rate, p50, p99, requests, int(bad.group(1)) if bad else 0, problems)
