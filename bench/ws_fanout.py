"""WebSocket fan-out benchmark: one Nekzus, N WebSocket clients, M events.

    .venv/bin/python bench/ws_fanout.py                        # 1,000 clients, 100 events
    .venv/bin/python bench/ws_fanout.py --clients 200 --events 20
    .venv/bin/python bench/ws_fanout.py --baseline-src /work/main/src   # A/B against another tree

Starts `nekzus --insecure-http` on a free loopback port (rate limits off, own temp data dir), connects
the clients from this one process, authenticates them as trusted loopback clients, then publishes events
through `POST /api/v1/webhooks/notify` with the send time in the payload. Reports, per server:

- delivery latency p50/p90/p99/max (receive time minus the time just before the publishing POST),
- completeness: deliveries received out of clients x events, and how many clients got every event,
- server CPU per delivered message: user+system CPU time of the server process (from
  /proc/<pid>/stat) over the publish phase, divided by the deliveries. This is the load-independent
  number; latency moves with whatever else runs on the machine.

The clients are minimal asyncio protocols speaking RFC 6455 directly (handshake, masked auth frame,
frame parsing in `data_received`), so the load generator costs a few µs per message and the latency
is the server's, not a WebSocket library's. Messages are only timestamped on receipt and parsed after
the run. `--baseline-src` runs the same measurement against a second Nekzus started from another source
tree (same interpreter), one server at a time, alternating the order over `--rounds`.
Everything is bounded: connect and delivery deadlines, a fixed number of events. Exit status 0 only when
every client received every event and p99 is under the target (on every server measured).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from harness import MIB, NekzusProcess, cpu_split, rss_bytes

ROOT = Path(__file__).resolve().parent.parent


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


class Nekzus(NekzusProcess):
    """The server under test; `uvloop` runs the same server on uvloop's event loop (a what-if)."""

    def __init__(self, data_dir: Path, src: Path | None = None, uvloop: bool = False) -> None:
        super().__init__(data_dir, {"rate_limits": {"enabled": False}}, src=src)
        self.uvloop = uvloop

    def start(self, prefix: list[str] | None = None, env: dict[str, str] | None = None) -> None:
        if self.uvloop and prefix is None:
            prefix = [
                "-c",
                "import sys, uvloop; uvloop.install(); from nekzus.cli import main; sys.exit(main())",
            ]
        super().start(prefix, env)


def masked_text(payload: bytes) -> bytes:
    """A client-to-server text frame (clients must mask; a zero mask keeps the payload as is)."""
    size = len(payload)
    head = bytes((0x81, 0x80 | size)) if size < 126 else bytes((0x81, 0x80 | 126)) + size.to_bytes(2, "big")
    return head + b"\0\0\0\0" + payload


class RawClient(asyncio.Protocol):
    """A minimal WebSocket client: handshake, auth, then frames timestamped as they arrive."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.ready = asyncio.get_running_loop().create_future()
        self.done = asyncio.get_running_loop().create_future()
        self.received: list[tuple[float, bytes]] = []
        self.webhooks = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buf = self.buffer
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self._fail(RuntimeError(bytes(buf[:200]).decode(errors="replace")))
                return
            del buf[: end + 4]
            self.upgraded = True
            assert self.transport is not None
            self.transport.write(masked_text(b'{"type":"auth","data":{"token":""}}'))
        while len(buf) >= 2:
            opcode = buf[0] & 0x0F
            size = buf[1] & 0x7F
            offset = 2
            if size == 126:
                if len(buf) < 4:
                    return
                size = int.from_bytes(buf[2:4], "big")
                offset = 4
            elif size == 127:
                if len(buf) < 10:
                    return
                size = int.from_bytes(buf[2:10], "big")
                offset = 10
            if len(buf) < offset + size:
                return
            payload = bytes(buf[offset : offset + size])
            del buf[: offset + size]
            if opcode == 0x1:
                self._on_text(now, payload)
            elif opcode == 0x9 and self.transport is not None:  # ping → pong
                self.transport.write(bytes((0x8A, 0x80 | len(payload))) + b"\0\0\0\0" + payload)
            elif opcode == 0x8:
                self._fail(ConnectionError(f"closed by server: {payload[2:]!r}"))

    def _on_text(self, now: float, payload: bytes) -> None:
        if not self.ready.done():
            if b'"auth_failed"' in payload:
                self._fail(RuntimeError(payload.decode(errors="replace")))
            elif payload.startswith(b'{"type":"hello"'):
                self.ready.set_result(None)
            return
        if payload.startswith(b'{"type":"webhook"'):
            self.received.append((now, payload))
            self.webhooks += 1
            if self.webhooks >= self.expected and not self.done.done():
                self.done.set_result(None)

    def _fail(self, exc: Exception) -> None:
        for future in (self.ready, self.done):
            if not future.done():
                future.set_exception(exc)
                future.exception()  # marks it retrieved

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionError("connection lost"))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def open_client(port: int, expected: int) -> RawClient:
    loop = asyncio.get_running_loop()
    _transport, client = await loop.create_connection(lambda: RawClient(expected), "127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    assert client.transport is not None
    client.transport.write(
        (
            f"GET /api/v1/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await asyncio.wait_for(client.ready, 20)
    return client


async def measure(server: Nekzus, args: argparse.Namespace) -> dict[str, Any]:
    """One server: connect the clients, publish, collect. Returns the raw figures."""
    server.start()
    clients: list[RawClient] = []
    timeout = aiohttp.ClientTimeout(total=30)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            server.wait_ready(30.0)
            rss_idle = rss_bytes(server.pid)
            started = time.perf_counter()
            gate = asyncio.Semaphore(100)

            async def connect() -> None:
                async with gate:
                    clients.append(await open_client(server.port, args.events))

            await asyncio.wait_for(
                asyncio.gather(*(connect() for _ in range(args.clients))), args.connect_timeout
            )
            connect_secs = time.perf_counter() - started
            rss_connected = rss_bytes(server.pid)
            load_before = os.getloadavg()[0]
            user0, sys0 = cpu_split(server.pid)
            my_cpu0 = time.process_time()
            publish_started = time.perf_counter()
            rss_peak = rss_connected
            url = server.url + "/api/v1/webhooks/notify"
            for seq in range(args.events):
                body = {"type": "bench", "data": {"seq": seq, "sentAt": time.time()}}
                async with session.post(url, json=body) as reply:
                    if reply.status != 200:
                        print(f"publish {seq} failed: {reply.status} {await reply.text()}", file=sys.stderr)
                if seq % 10 == 0:
                    rss_peak = max(rss_peak, rss_bytes(server.pid))
                await asyncio.sleep(args.interval)
            with contextlib.suppress(TimeoutError, ConnectionError):  # counted as missing below
                await asyncio.wait_for(
                    asyncio.gather(*(c.done for c in clients), return_exceptions=True), args.delivery_timeout
                )
            publish_secs = time.perf_counter() - publish_started
            user1, sys1 = cpu_split(server.pid)
            server_user, server_sys = user1 - user0, sys1 - sys0
            server_cpu = server_user + server_sys
            client_cpu = time.process_time() - my_cpu0
            rss_peak = max(rss_peak, rss_bytes(server.pid))
            load_after = os.getloadavg()[0]
    finally:
        for client in clients:
            client.close()
        server.stop()

    latencies: list[float] = []
    delivered = complete = 0
    for client in clients:
        seen: set[int] = set()
        for received_at, payload in client.received:
            data = json.loads(payload)["data"]["data"]
            if data["seq"] not in seen:
                seen.add(data["seq"])
                latencies.append((received_at - data["sentAt"]) * 1000)
        delivered += len(seen)
        complete += len(seen) == args.events
    return {
        "clients": args.clients,
        "events": args.events,
        "connected": len(clients),
        "connect_s": connect_secs,
        "publish_s": publish_secs,
        "expected": args.clients * args.events,
        "delivered": delivered,
        "complete_clients": complete,
        "p50_ms": percentile(latencies, 50),
        "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies) if latencies else float("nan"),
        "mean_ms": statistics.fmean(latencies) if latencies else float("nan"),
        "server_cpu_s": server_cpu,
        "server_sys_share": server_sys / server_cpu if server_cpu else float("nan"),
        "cpu_us_per_msg": server_cpu / max(delivered, 1) * 1e6,
        "client_cpu_s": client_cpu,
        "rss_idle_mib": rss_idle / MIB,
        "rss_connected_mib": rss_connected / MIB,
        "rss_peak_mib": rss_peak / MIB,
        "ws_kib_per_client": (rss_connected - rss_idle) / 1024 / max(len(clients), 1),
        "load_before": load_before,
        "load_after": load_after,
    }


ROWS: list[tuple[str, str, str]] = [
    ("deliveries", "delivered", "{delivered} / {expected}"),
    ("clients with every event", "complete_clients", "{complete_clients} / {clients}"),
    ("latency p50", "p50_ms", "{p50_ms:.1f} ms"),
    ("latency p90", "p90_ms", "{p90_ms:.1f} ms"),
    ("latency p99", "p99_ms", "{p99_ms:.1f} ms"),
    ("latency max", "max_ms", "{max_ms:.1f} ms"),
    ("server CPU while publishing", "server_cpu_s", "{server_cpu_s:.2f} s"),
    ("server CPU per delivered message", "cpu_us_per_msg", "{cpu_us_per_msg:.1f} µs"),
    ("  of which in the kernel (system)", "server_sys_share", "{server_sys_share:.0%}"),
    ("bench client CPU while publishing", "client_cpu_s", "{client_cpu_s:.2f} s"),
    ("connect all clients", "connect_s", "{connect_s:.2f} s"),
    ("server RSS idle", "rss_idle_mib", "{rss_idle_mib:.1f} MiB"),
    ("server RSS connected", "rss_connected_mib", "{rss_connected_mib:.1f} MiB"),
    ("server RSS peak", "rss_peak_mib", "{rss_peak_mib:.1f} MiB"),
    ("RSS per open WebSocket", "ws_kib_per_client", "{ws_kib_per_client:.1f} KiB"),
    ("load average (1 min) before/after", "load_after", "{load_before:.1f} / {load_after:.1f}"),
]


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per metric, the median over the rounds (counts: the worst)."""
    out: dict[str, Any] = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, float):
            out[key] = statistics.median(r[key] for r in runs)
    for key in ("delivered", "complete_clients", "connected"):
        out[key] = min(r[key] for r in runs)
    return out


async def bench(args: argparse.Namespace) -> int:
    limit = raise_fd_limit(args.clients * 2 + 256)
    if limit < args.clients + 64:
        print(f"file descriptor limit {limit} too low for {args.clients} clients", file=sys.stderr)
        return 2
    names = ["nekzus"] + (["baseline"] if args.baseline_src else [])
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="nekzus-bench-") as tmp:
        for round_ in range(args.rounds):
            order = names if round_ % 2 == 0 else list(reversed(names))
            for name in order:
                src = args.baseline_src if name == "baseline" else None
                server = Nekzus(Path(tmp) / f"{name}-{round_}", src=src, uvloop=args.server_uvloop)
                result = await measure(server, args)
                runs[name].append(result)
                print(
                    f"  round {round_ + 1} {name}: p99 {result['p99_ms']:.1f} ms, "
                    f"{result['cpu_us_per_msg']:.1f} µs CPU/msg, "
                    f"{result['delivered']}/{result['expected']} delivered",
                    file=sys.stderr,
                )
    results = {name: median_run(r) for name, r in runs.items()}
    print(
        f"WebSocket fan-out: {args.clients} clients, {args.events} events every "
        f"{args.interval * 1000:.0f} ms, {os.cpu_count()} CPUs"
        + (f", median of {args.rounds} rounds" if args.rounds > 1 else "")
    )
    width = max(len(label) for label, _, _ in ROWS)
    header = f"{'metric':<{width}}  " + "  ".join(f"{n:>18}" for n in names)
    print(header)
    print("-" * len(header))
    for label, _key, fmt in ROWS:
        cells = "  ".join(f"{fmt.format(**results[n]):>18}" for n in names)
        print(f"{label:<{width}}  {cells}")
    if "baseline" in results:
        ratio = results["nekzus"]["cpu_us_per_msg"] / max(results["baseline"]["cpu_us_per_msg"], 1e-9)
        print(f"\nCPU per delivered message, nekzus / baseline: {ratio:.2f}x")
    ok = True
    for name, result in results.items():
        complete = result["delivered"] == result["expected"]
        fast = result["p99_ms"] < args.target_p99
        ok = ok and complete and fast
        verdict = "PASS" if complete and fast else "FAIL"
        print(
            f"{verdict} {name}: every client got every event: {complete}; "
            f"p99 < {args.target_p99:.0f} ms: {fast}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "runs": runs}, indent=2))
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between published events")
    parser.add_argument("--rounds", type=int, default=1, help="repeat (A/B order alternates)")
    parser.add_argument("--connect-timeout", type=float, default=90.0)
    parser.add_argument("--delivery-timeout", type=float, default=30.0)
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="also measure Nekzus from this source tree (e.g. a checkout of main's src/) as `baseline`",
    )
    parser.add_argument(
        "--server-uvloop", action="store_true", help="run the server on uvloop (comparison only)"
    )
    parser.add_argument("--target-p99", type=float, default=50.0, help="milliseconds")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if not 1 <= args.clients <= 10000 or not 1 <= args.events <= 10000:
        parser.error("clients and events must be between 1 and 10000")
    if not 1 <= args.rounds <= 20:
        parser.error("rounds must be between 1 and 20")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(bench(args))


if __name__ == "__main__":
    sys.exit(main())
