"""WebSocket fan-out benchmark: one Nekzus, N WebSocket clients, M events, delivery latency and server RSS.

    .venv/bin/python bench/ws_fanout.py                 # 1,000 clients, 100 events
    .venv/bin/python bench/ws_fanout.py --clients 200 --events 20

Starts `nekzus --insecure-http` on a free loopback port (rate limits off, own temp data dir), connects
the clients from this one asyncio process (aiohttp), authenticates them as trusted loopback clients,
then publishes events through `POST /api/v1/webhooks/notify` with the send time in the payload. Each
client records `receive time - send time` for every `webhook` message. Everything is bounded: connect
and delivery deadlines, a fixed number of events. Exit status 0 only when every client received every
event and p99 latency is under the target.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raise_fd_limit(needed: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(needed, soft)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


class Nekzus:
    def __init__(self, data_dir: Path, uvloop: bool = False) -> None:
        self.uvloop = uvloop
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        config = {
            "server": {"addr": f"127.0.0.1:{self.port}"},
            "storage": {"database_path": str(data_dir / "nexus.db")},
            "rate_limits": {"enabled": False},
        }
        self.config_path = data_dir / "config.yaml"
        self.config_path.write_text(json.dumps(config))  # JSON is valid YAML
        self.log_path = data_dir / "nekzus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEKZUS_")}
        with open(self.log_path, "ab") as log:
            launcher = ["-m", "nekzus"]
            if self.uvloop:  # what-if: the same server on uvloop's event loop
                launcher = [
                    "-c",
                    "import sys, uvloop; uvloop.install(); from nekzus.cli import main; sys.exit(main())",
                ]
            self.proc = subprocess.Popen(
                [sys.executable, *launcher, "--config", str(self.config_path), "--insecure-http"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.data_dir,
            )

    async def wait_ready(self, session: aiohttp.ClientSession, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError("nekzus exited:\n" + self.log_path.read_text(errors="replace"))
            try:
                async with session.get(self.url + "/readyz") as reply:
                    if reply.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        raise TimeoutError("nekzus did not become ready")

    def cpu(self) -> float:
        assert self.proc is not None
        times = psutil.Process(self.proc.pid).cpu_times()
        return float(times.user + times.system)

    def rss(self) -> int:
        assert self.proc is not None
        return int(psutil.Process(self.proc.pid).memory_info().rss)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


class BenchClient:
    def __init__(self, index: int, expected: int) -> None:
        self.index = index
        self.expected = expected
        self.latencies: list[float] = []
        self.seen: set[int] = set()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.done = asyncio.Event()

    async def connect(self, session: aiohttp.ClientSession, url: str) -> None:
        self.ws = await session.ws_connect(
            url + "/api/v1/ws", autoping=True, heartbeat=None, max_msg_size=1 << 20
        )
        await self.ws.send_str('{"type":"auth","data":{"token":""}}')
        for _ in range(3):
            message = json.loads((await asyncio.wait_for(self.ws.receive(), 10)).data)
            if message["type"] == "auth_failed":
                raise RuntimeError(f"client {self.index}: {message['data']}")
            if message["type"] == "hello":
                return
        raise RuntimeError(f"client {self.index}: no hello")

    async def read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            now = time.time()
            message = json.loads(msg.data)
            if message["type"] != "webhook":
                continue
            payload = message["data"]["data"]
            seq = payload["seq"]
            if seq not in self.seen:
                self.seen.add(seq)
                self.latencies.append(now - payload["sentAt"])
                if len(self.seen) >= self.expected:
                    self.done.set()


async def bench(args: argparse.Namespace) -> int:
    limit = raise_fd_limit(args.clients * 2 + 256)
    if limit < args.clients + 64:
        print(f"file descriptor limit {limit} too low for {args.clients} clients", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="nekzus-bench-") as tmp:
        server = Nekzus(Path(tmp), uvloop=args.server_uvloop)
        server.start()
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        timeout = aiohttp.ClientTimeout(total=30)
        try:
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                await server.wait_ready(session)
                rss_idle = server.rss()
                clients = [BenchClient(i, args.events) for i in range(args.clients)]
                started = time.perf_counter()
                gate = asyncio.Semaphore(100)

                async def connect(client: BenchClient) -> None:
                    async with gate:
                        await client.connect(session, server.url)

                await asyncio.wait_for(asyncio.gather(*(connect(c) for c in clients)), args.connect_timeout)
                connect_secs = time.perf_counter() - started
                readers = [asyncio.ensure_future(c.read()) for c in clients]
                rss_connected = server.rss()

                publish_started = time.perf_counter()
                server_cpu0 = server.cpu()
                me = psutil.Process()
                my_cpu0 = sum(me.cpu_times()[:2])
                rss_peak = rss_connected
                for seq in range(args.events):
                    body = {"type": "bench", "data": {"seq": seq, "sentAt": time.time()}}
                    async with session.post(server.url + "/api/v1/webhooks/notify", json=body) as reply:
                        if reply.status != 200:
                            print(
                                f"publish {seq} failed: {reply.status} {await reply.text()}", file=sys.stderr
                            )
                    if seq % 10 == 0:
                        rss_peak = max(rss_peak, server.rss())
                    await asyncio.sleep(args.interval)
                with contextlib.suppress(TimeoutError):  # counted as missing deliveries below
                    await asyncio.wait_for(
                        asyncio.gather(*(c.done.wait() for c in clients)), args.delivery_timeout
                    )
                publish_secs = time.perf_counter() - publish_started
                server_cpu = server.cpu() - server_cpu0
                client_cpu = sum(me.cpu_times()[:2]) - my_cpu0
                rss_end = server.rss()
                rss_peak = max(rss_peak, rss_end)
                for reader in readers:
                    reader.cancel()
                await asyncio.gather(*readers, return_exceptions=True)
                await asyncio.gather(
                    *(c.ws.close() for c in clients if c.ws is not None), return_exceptions=True
                )
        finally:
            server.stop()

    latencies_ms = [x * 1000 for c in clients for x in c.latencies]
    expected = args.clients * args.events
    delivered = sum(len(c.seen) for c in clients)
    complete = sum(1 for c in clients if len(c.seen) == args.events)
    p50, p90, p99 = (percentile(latencies_ms, p) for p in (50, 90, 99))
    worst = max(latencies_ms) if latencies_ms else float("nan")
    mib = 1024 * 1024
    rows: list[tuple[str, Any]] = [
        ("clients", args.clients),
        ("events", args.events),
        ("publish interval", f"{args.interval * 1000:.0f} ms"),
        ("connect all clients", f"{connect_secs:.2f} s"),
        ("publish + deliver", f"{publish_secs:.2f} s"),
        ("deliveries", f"{delivered} / {expected}"),
        ("clients with every event", f"{complete} / {args.clients}"),
        ("latency p50", f"{p50:.1f} ms"),
        ("latency p90", f"{p90:.1f} ms"),
        ("latency p99", f"{p99:.1f} ms"),
        ("latency max", f"{worst:.1f} ms"),
        ("latency mean", f"{statistics.fmean(latencies_ms):.1f} ms" if latencies_ms else "n/a"),
        ("server CPU while publishing", f"{server_cpu:.2f} s"),
        ("bench client CPU while publishing", f"{client_cpu:.2f} s"),
        ("server RSS idle", f"{rss_idle / mib:.1f} MiB"),
        ("server RSS connected", f"{rss_connected / mib:.1f} MiB"),
        ("server RSS peak", f"{rss_peak / mib:.1f} MiB"),
        ("cpus", os.cpu_count()),
        ("load average (1 min) at end", f"{os.getloadavg()[0]:.2f}"),
        ("server event loop", "uvloop (what-if)" if args.server_uvloop else "as shipped"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"{'metric':<{width}}  value")
    print(f"{'-' * width}  {'-' * 20}")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    passed = delivered == expected and p99 < args.target_p99
    verdict = "PASS" if passed else "FAIL"
    print(
        f"\n{verdict}: every client got every event: {delivered == expected}; "
        f"p99 < {args.target_p99:.0f} ms: {p99 < args.target_p99}"
    )
    return 0 if passed else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between published events")
    parser.add_argument("--connect-timeout", type=float, default=60.0)
    parser.add_argument("--delivery-timeout", type=float, default=30.0)
    parser.add_argument(
        "--server-uvloop", action="store_true", help="run the server on uvloop (comparison only)"
    )
    parser.add_argument("--target-p99", type=float, default=100.0, help="milliseconds")
    args = parser.parse_args()
    if not 1 <= args.clients <= 10000 or not 1 <= args.events <= 10000:
        parser.error("clients and events must be between 1 and 10000")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(bench(args))


if __name__ == "__main__":
    sys.exit(main())
