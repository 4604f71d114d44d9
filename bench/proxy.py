"""Reverse-proxy benchmark: Nekzus vs Caddy vs nginx in front of the same upstream, on loopback.

    make bench            # or: python bench/proxy.py [--duration 10] [--connections 50] [--workers 1,2]

Starts an upstream (nginx serving a small body and a 1 MiB file, plus a Python WebSocket echo server),
then Nekzus, Caddy and nginx as reverse proxies (keep-alive to the upstream), drives each with the same
load: wrk for small responses (keep-alive, 50 connections) and a 1 MiB download, and a Python client for
WebSocket echo round trips. Prints requests/s, p50/p99 and the Nekzus/Caddy and Nekzus/nginx ratios.
`--rounds N` runs every proxy N times in turn, `--duration` seconds each, and reports the median round
(the machine's speed drifts over a run; taking turns gives each proxy the same conditions), and the
CPU per request of Nekzus and Caddy over all rounds.
`--workers 1,2` runs one Nekzus per listed `server.workers` value side by side (`nekzus-w1`, `nekzus-w2`);
without it one Nekzus runs with the default (one worker per core). CPU per request counts the
supervisor and all its workers.
Needs `nginx`, `caddy` and `wrk` (`bash scripts/install-system-deps.sh bench`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import NekzusProcess, cpu_seconds, free_port, run_wrk, start_nginx, wait_http

ROOT = Path(__file__).resolve().parent.parent
SMALL_BODY = "hello from upstream\n"
READY_TIMEOUT = 180.0  # several servers start at once on a loaded machine


class Stack:
    def __init__(
        self, workdir: Path, baseline_src: Path | None = None, workers: list[int] | None = None
    ) -> None:
        self.dir = workdir
        # name -> (port, server.workers or None for the default)
        self.instances: dict[str, tuple[int, int | None]] = {"nekzus": (free_port(), None)}
        if workers:
            self.instances = {f"nekzus-w{n}": (free_port(), n) for n in workers}
        self.baseline_src = baseline_src
        self.baseline = free_port() if baseline_src is not None else 0
        self.cpu_of: dict[str, int] = {}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.nekzus: list[NekzusProcess] = []
        self.upstream = free_port()
        self.ws_upstream = free_port()
        self.caddy = free_port()
        self.nginx = free_port()

    def spawn(self, cmd: list[str], name: str, **kw: object) -> None:
        log = open(self.dir / f"{name}.log", "wb")  # noqa: SIM115 - kept open for the child
        self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, **kw))  # type: ignore[call-overload]

    def start(self) -> None:
        www = self.dir / "www" / "apps" / "bench"
        www.mkdir(parents=True)
        (www / "1m.bin").write_bytes(os.urandom(1 << 20))
        upstream = f"""server {{
    listen 127.0.0.1:{self.upstream};
    root {self.dir / "www"};
    location = /apps/bench/small {{ default_type text/plain; return 200 "{SMALL_BODY.strip()}\\n"; }}
    location / {{ }}
  }}"""
        self.procs.append(start_nginx(self.dir, "upstream", upstream, workers="1"))
        self.spawn([sys.executable, str(Path(__file__).with_name("ws_echo.py")), str(self.ws_upstream)], "ws")

        proxy = f"""upstream app {{ server 127.0.0.1:{self.upstream}; keepalive 64; }}
  map $http_upgrade $conn {{ default upgrade; "" ""; }}
  server {{
    listen 127.0.0.1:{self.nginx};
    location /apps/ws/ {{
      proxy_pass http://127.0.0.1:{self.ws_upstream}/;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $conn;
    }}
    location / {{
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_buffering off;
    }}
  }}"""
        self.procs.append(start_nginx(self.dir, "nginx", proxy))

        caddyfile = self.dir / "Caddyfile"
        caddyfile.write_text(
            f"""{{
  admin off
  auto_https off
}}
http://127.0.0.1:{self.caddy} {{
  handle_path /apps/ws/* {{
    reverse_proxy 127.0.0.1:{self.ws_upstream}
  }}
  handle {{
    reverse_proxy 127.0.0.1:{self.upstream}
  }}
}}
"""
        )
        env = {
            **os.environ,
            "HOME": str(self.dir),
            "XDG_DATA_HOME": str(self.dir),
            "XDG_CONFIG_HOME": str(self.dir),
        }
        self.spawn(["caddy", "run", "--config", str(caddyfile), "--adapter", "caddyfile"], "caddy", env=env)
        self.cpu_of["caddy"] = self.procs[-1].pid  # the peer's CPU per request, for the same comparison

        for name, (port, workers) in self.instances.items():
            self.start_nekzus(name, port, None, workers)
        if self.baseline_src is not None:
            self.start_nekzus("baseline", self.baseline, self.baseline_src)

        try:
            wait_http(f"http://127.0.0.1:{self.upstream}/apps/bench/small", READY_TIMEOUT)
            ours = [port for port, _ in self.instances.values()]
            for port in (*ours, self.caddy, self.nginx, *([self.baseline] if self.baseline else [])):
                wait_http(f"http://127.0.0.1:{port}/apps/bench/small", READY_TIMEOUT)
            for nekzus in self.nekzus:  # followers start after the leader: all of them, before any load
                nekzus.wait_workers(time.perf_counter() + READY_TIMEOUT)
        except RuntimeError:
            for log in sorted(self.dir.rglob("*.log")):
                print(f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}", file=sys.stderr)
            raise

    def start_nekzus(self, name: str, port: int, src: Path | None, workers: int | None = None) -> None:
        """A Nekzus instance; `src` runs another source tree (e.g. main) beside this one for an A/B run."""
        server: dict[str, object] = {}
        if workers is not None:
            server["workers"] = workers
        config = {
            "server": server,
            "rate_limits": {"enabled": False},
            "routes": [
                {
                    "id": "bench",
                    "app_id": "bench",
                    "path_base": "/apps/bench/",
                    "to": f"http://127.0.0.1:{self.upstream}",
                    "health_check_path": "/apps/bench/small",
                },
                {
                    "id": "ws",
                    "app_id": "ws",
                    "path_base": "/apps/ws/",
                    "to": f"http://127.0.0.1:{self.ws_upstream}",
                    "strip_prefix": True,
                    "websockets": True,
                    "skip_health_check": True,
                },
            ],
        }
        nekzus = NekzusProcess(self.dir / name, config, port=port, src=src)
        nekzus.start()
        self.nekzus.append(nekzus)
        self.cpu_of[name] = nekzus.pid

    def stop(self) -> None:
        for nekzus in self.nekzus:
            nekzus.stop(timeout=10)
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def wrk(url: str, connections: int, duration: int, threads: int) -> tuple[float, float, float]:
    run = run_wrk(url, connections=connections, duration=duration, threads=threads)
    if run.problems:
        print(f"  warning for {url}: {'; '.join(run.problems)}", file=sys.stderr)
    return run.rate, run.p50, run.p99


async def _ws_bench(url: str, connections: int, duration: float) -> tuple[float, float, float]:
    from websockets.asyncio.client import connect

    latencies: list[float] = []
    deadline = time.monotonic() + duration

    async def worker() -> None:
        async with connect(url, max_size=None, compression=None) as ws:
            payload = "x" * 64
            while time.monotonic() < deadline:
                t0 = time.perf_counter()
                await ws.send(payload)
                await ws.recv()
                latencies.append((time.perf_counter() - t0) * 1000)

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.monotonic() - started
    qs = statistics.quantiles(latencies, n=100)
    return len(latencies) / elapsed, qs[49], qs[98]


def _measure(test: str, port: int, args: argparse.Namespace) -> tuple[float, float, float]:
    """One run of `test` against the proxy on `port`: (rate, p50 ms, p99 ms)."""
    base = f"http://127.0.0.1:{port}"
    if test == "small":
        return wrk(base + "/apps/bench/small", args.connections, args.duration, args.threads)
    if test == "download":
        return wrk(base + "/apps/bench/1m.bin", 10, args.duration, args.threads)
    return asyncio.run(_ws_bench(f"ws://127.0.0.1:{port}/apps/ws/echo", 10, args.duration))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=1, help="take turns this many times (median round)")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", choices=["small", "download", "ws"], action="append")
    parser.add_argument(
        "--workers",
        default="",
        metavar="N[,M...]",
        help="run one Nekzus per listed server.workers value (e.g. 1,2) instead of one with the default",
    )
    parser.add_argument("--serve", action="store_true", help="start the stack, print its ports and wait")
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="also run Nekzus from this source tree (e.g. a checkout of main's src/) as `baseline`",
    )
    args = parser.parse_args()
    for tool in ("nginx", "caddy", "wrk"):
        if shutil.which(tool) is None:
            print(f"{tool} is missing: run `bash scripts/install-system-deps.sh bench`", file=sys.stderr)
            return 2
    tests = args.only or ["small", "download", "ws"]
    with tempfile.TemporaryDirectory(prefix="nekzus-bench-") as tmp:
        workers = [int(n) for n in args.workers.split(",") if n.strip()]
        stack = Stack(Path(tmp), args.baseline_src, workers)
        try:
            stack.start()
            if args.serve:
                ours = " ".join(f"{name} {port}" for name, (port, _) in stack.instances.items())
                print(f"upstream {stack.upstream} {ours} caddy {stack.caddy} nginx {stack.nginx}")
                print(f"logs in {tmp}", flush=True)
                signal.sigwait({signal.SIGINT, signal.SIGTERM})
                return 0
            targets = {name: port for name, (port, _) in stack.instances.items()}
            targets.update({"caddy": stack.caddy, "nginx": stack.nginx})
            if stack.baseline:
                targets["baseline"] = stack.baseline
            results: dict[str, dict[str, tuple[float, float, float]]] = {}
            cpu_per_op: dict[tuple[str, str], float] = {}
            for test in tests:
                rounds: dict[str, list[tuple[float, float, float]]] = {name: [] for name in targets}
                cpu_used: dict[str, float] = dict.fromkeys(targets, 0.0)
                if test == "small":
                    for port in targets.values():  # warm-up
                        wrk(f"http://127.0.0.1:{port}/apps/bench/small", args.connections, 2, args.threads)
                for _ in range(max(1, args.rounds)):
                    for name, port in targets.items():
                        pid = stack.cpu_of.get(name)
                        cpu_before = cpu_seconds(pid) if pid else 0.0
                        rounds[name].append(_measure(test, port, args))
                        if pid:
                            cpu_used[name] += cpu_seconds(pid) - cpu_before
                        print(f"  {test:<9} {name:<7} done", file=sys.stderr)
                results[test] = {}
                for name, runs in rounds.items():
                    results[test][name] = sorted(runs)[len(runs) // 2]  # the median round, by rate
                    if stack.cpu_of.get(name):
                        ops = sum(rate for rate, _, _ in runs) * args.duration
                        cpu_per_op[test, name] = cpu_used[name] / max(ops, 1) * 1e6
        finally:
            stack.stop()
    labels = {
        "small": f"small GET, {args.connections} conns (req/s)",
        "download": "1 MiB GET, 10 conns (req/s)",
        "ws": "WebSocket echo, 10 conns (msg/s)",
    }
    header = (
        f"{'test':<36} {'proxy':<9} {'rate':>10} {'p50 ms':>8} {'p99 ms':>8} {'vs caddy':>9} {'vs nginx':>9}"
    )
    print(header)
    print("-" * len(header))
    for test, by_proxy in results.items():
        caddy_rate, nginx_rate = by_proxy["caddy"][0], by_proxy["nginx"][0]
        for name, (rate, p50, p99) in by_proxy.items():
            ours = name.startswith("nekzus") or name == "baseline"
            ratio_c = f"{rate / caddy_rate:.2f}x" if ours else ""
            ratio_n = f"{rate / nginx_rate:.2f}x" if ours else ""
            row = f"{labels[test]:<36} {name:<9} {rate:>10.0f} {p50:>8.2f} {p99:>8.2f}"
            print(f"{row} {ratio_c:>9} {ratio_n:>9}")
        for name in [*stack.instances, "baseline", "caddy"]:
            if (test, name) in cpu_per_op:
                print(f"{'':<36} {name:<9} CPU per request/message: {cpu_per_op[test, name]:.0f} µs")
        for name in stack.instances:
            if name in by_proxy:
                p99_ratio = by_proxy[name][2] / by_proxy["caddy"][2]
                print(f"{'':<36} {name:<9} p99 / caddy p99 = {p99_ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
