"""ASGI server cores side by side: uvicorn (httptools + uvloop, as Nekzus runs it) against granian.

    flock /tmp/nekzus-bench.lock python bench/servers.py [--duration 5] [--rounds 2]

Serves the same minimal ASGI app (a 20-byte text response) with one worker process each, drives it with
wrk (50 keep-alive connections) and prints requests/s, p50/p99 and the server's CPU time per request
(user + system of the server's process tree over the run; steadier than the rate on a shared machine).
The order alternates between rounds. Numbers only: Nekzus keeps uvicorn. Needs `wrk` and, for the
granian rows, `pip install granian` (a wheel; skipped with a note when it is missing).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import harness
from harness import cpu_seconds, free_port, stop_process

BENCH = Path(__file__).resolve().parent
BODY = b"hello from the core\n"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The served app: any HTTP request gets a small text response."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": BODY})


def commands(port: int) -> dict[str, list[str]]:
    bindir = Path(sys.executable).parent
    cmds = {
        "uvicorn (httptools, uvloop)": [
            sys.executable,
            "-m",
            "uvicorn",
            "--app-dir",
            str(BENCH),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
            "servers:app",
        ]
    }
    if importlib.util.find_spec("granian") is not None:
        granian = str(bindir / "granian") if (bindir / "granian").exists() else "granian"
        cmds["granian (asgi, uvloop)"] = [
            granian,
            "--interface",
            "asgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--loop",
            "uvloop",
            "--no-ws",
            "--log-level",
            "warning",
            "--working-dir",
            str(BENCH),
            "servers:app",
        ]
    return cmds


def wait_up(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("server did not come up")


def run_wrk(port: int, duration: int, connections: int) -> tuple[float, float, float]:
    run = harness.run_wrk(f"http://127.0.0.1:{port}/", connections=connections, duration=duration, threads=1)
    return run.rate, run.p50, run.p99


def measure(name: str, cmd: list[str], port: int, duration: int, connections: int) -> tuple[float, ...]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=BENCH)
    try:
        wait_up(port, proc)
        run_wrk(port, 1, connections)  # warm-up
        cpu0 = cpu_seconds(proc.pid)
        rate, p50, p99 = run_wrk(port, duration, connections)
        cpu = cpu_seconds(proc.pid) - cpu0
        return rate, p50, p99, 1e6 * cpu / max(1.0, rate * duration)
    finally:
        stop_process(proc, signal.SIGINT)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="one round of 3 s")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench/servers.py: wrk not found (bash scripts/install-system-deps.sh bench); skipped")
        return 0
    duration, rounds = (3, 1) if args.quick else (args.duration, args.rounds)
    load = os.getloadavg()[0]
    results: dict[str, list[tuple[float, ...]]] = {}
    for i in range(rounds):
        names = list(commands(0))
        for name in names if i % 2 == 0 else reversed(names):
            port = free_port()
            results.setdefault(name, []).append(
                measure(name, commands(port)[name], port, duration, args.connections)
            )
    print(
        f"\n## ASGI server cores: minimal app, {args.connections} keep-alive connections, {duration} s x "
        f"{rounds} rounds (load average {load:.1f} → {os.getloadavg()[0]:.1f})\n"
    )
    print("| server | req/s (median) | p50 ms | p99 ms | server CPU µs/req |")
    print("|---|---|---|---|---|")
    for name, rows in results.items():
        med = [statistics.median(r[k] for r in rows) for k in range(4)]
        print(f"| {name} | {med[0]:,.0f} | {med[1]:.2f} | {med[2]:.2f} | {med[3]:.0f} |")
    if importlib.util.find_spec("granian") is None:
        print("\ngranian is not installed (`pip install granian`): only uvicorn measured.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
