"""Scale benchmark: does the proxy's cost grow with routes, paired devices and API keys?

    .venv/bin/python bench/scale.py                    # 1 / 100 / 1,000 routes; 10,000 devices, 1,000 keys
    .venv/bin/python bench/scale.py --quick            # one turn of 2 s runs, fewer idle connections

Starts an nginx upstream (small fixed response) and Nekzus with 1, 100 and 1,000 proxy routes (config
routes `/apps/r<i>/`, health checks off), against two stores: "few" (1 device, 1 API key) and "many"
(10,000 paired devices, 1,000 API keys). The store is seeded straight into SQLite (after Nekzus created
its schema) in one transaction: 11,000 API calls would take minutes and measure pairing, not lookups.
The JWT secret is fixed in the config, so the bench mints a device token with Nekzus' own codec.

Each server is driven by wrk (keep-alive, `--connections`) on the last route, once with a device JWT and
once with an API key in `Authorization`, so every request does a route lookup and a credential check.
All six servers run at once and take turns (`--rounds`, 3 by default): the machine's speed drifts
within minutes, and turns spread that drift over every row. Reported per row, the median over the
turns of: requests/s, p99, and server CPU per request (from /proc/<pid>/stat; the steady number on a
busy machine). Flat CPU per request across the rows means lookups do not grow with the counts.

Then memory: RSS of one Nekzus before and after opening N idle keep-alive HTTP connections (each made
one request first), and N authenticated WebSockets on `/api/v1/ws`; (delta / N) per connection.
Needs `nginx` and `wrk` (`bash scripts/install-system-deps.sh bench`).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    MIB,
    NekzusProcess,
    cpu_seconds,
    free_port,
    rss_bytes,
    run_wrk,
    start_nginx,
    stop_process,
    wait_http,
)
from ws_fanout import RawClient, raise_fd_limit

SECRET = "scale-bench-" + "k" * 40
DEVICE_SCOPES = ["read:catalog", "read:events"]


def wrk(url: str, header: str, connections: int, duration: int) -> tuple[float, float, int]:
    """requests/s, p99 ms, number of requests (non-2xx answers are reported, not hidden)."""
    run = run_wrk(url, connections=connections, duration=duration, header=header)
    if run.non_2xx:
        raise RuntimeError(f"{run.non_2xx} non-2xx answers from {url} (credential refused?)")
    return run.rate, run.p99, run.requests


class Upstream:
    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        body = f"""server {{
    listen 127.0.0.1:{self.port};
    location / {{ default_type text/plain; return 200 "hello from upstream\\n"; }}
  }}"""
        self.proc = start_nginx(self.dir, "upstream", body, workers="1")
        wait_http(f"http://127.0.0.1:{self.port}/", proc=self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


class Server(NekzusProcess):
    """One Nekzus with `routes` proxy routes on the store in `data_dir`."""

    def __init__(self, data_dir: Path, routes: int, upstream: int) -> None:
        self.routes = routes
        config = {
            "rate_limits": {"enabled": False},
            "auth": {"hs256_secret": SECRET},
            "routes": [
                {
                    "id": f"r{i}",
                    "app_id": f"r{i}",
                    "path_base": f"/apps/r{i}/",
                    "to": f"http://127.0.0.1:{upstream}",
                    "skip_health_check": True,
                }
                for i in range(routes)
            ],
        }
        super().__init__(data_dir, config, name=f"config-{routes}", log_name=f"nekzus-{routes}.log")

    def start(self, prefix: list[str] | None = None, env: dict[str, str] | None = None) -> None:
        super().start(prefix, env)
        try:
            self.wait_ready(60.0, interval=0.1)
        except RuntimeError as exc:
            print(exc, file=sys.stderr)
            raise

    def start_stop(self) -> None:
        """Start once (creates the schema), then stop."""
        self.start()
        self.stop()


def seed(data_dir: Path, devices: int, keys: int, upstream: int) -> dict[str, str]:
    """Create the schema (one start of Nekzus), then insert `devices` paired devices and `keys` API keys
    in one transaction. Returns a device token and an API key that belong to the store."""
    Server(data_dir, 1, upstream).start_stop()
    now = time.time()
    db = sqlite3.connect(data_dir / "nexus.db")
    scopes = json.dumps(DEVICE_SCOPES)
    sessions = [secrets.token_hex(16) for _ in range(devices)]
    with db:
        db.executemany(
            "INSERT INTO auth_devices (device_id, device_name, platform, platform_version, model, push_token,"
            " scopes, session_id, created_at, last_seen) VALUES (?, ?, 'ios', '17', 'bench', '', ?, ?, ?, ?)",
            [(f"dev-{i:05d}", f"Device {i}", scopes, sessions[i], now, now) for i in range(devices)],
        )
        api_keys = ["nekzus_" + secrets.token_hex(32) for _ in range(keys)]
        db.executemany(
            "INSERT INTO auth_api_keys (id, name, key_hash, prefix, scopes, created_at, created_by)"
            " VALUES (?, ?, ?, ?, ?, ?, 'bench')",
            [
                (
                    f"key_{i:05d}",
                    f"key {i}",
                    hashlib.sha256(k.encode()).hexdigest(),
                    k[:10],
                    json.dumps(DEVICE_SCOPES),
                    now,
                )
                for i, k in enumerate(api_keys)
            ],
        )
    db.close()
    from nekzus.auth.tokens import TokenCodec

    middle = devices // 2
    codec = TokenCodec(SECRET, "nekzus", "nekzus-mobile", 3600.0)
    token, _claims = codec.issue(
        f"dev-{middle:05d}", DEVICE_SCOPES, kind="device", session_id=sessions[middle]
    )
    return {"device": token, "apikey": api_keys[keys // 2]}


def lookup_micro(counts: list[int], keys: int) -> list[tuple[str, float]]:
    """In-process cost of the two lookups every proxied request makes, independent of machine load
    far more than a whole request: the proxy's route table match (the real `RouteTable`, filled with
    stand-in routes) and the API-key lookup (the real `key_hash` into a dict of `keys` entries)."""
    from types import SimpleNamespace

    from nekzus.auth.service import key_hash
    from nekzus.proxy.routes import RouteTable

    results: list[tuple[str, float]] = []
    rounds = 100_000
    for count in counts:
        routes = [
            SimpleNamespace(
                spec=SimpleNamespace(
                    path_routed=True, path_base=f"/apps/r{i}/", subdomain_routed=False, subdomain=""
                )
            )
            for i in range(count)
        ]
        table = RouteTable(routes)
        path = f"/apps/r{count - 1}/static/js/app.js"
        assert table.match(path) is routes[-1]
        started = time.perf_counter()
        for _ in range(rounds):
            table.match(path)
        results.append(
            (f"route match, {count} routes (4-segment path)", (time.perf_counter() - started) / rounds)
        )
    for count in sorted({1, keys}):
        table_keys = {key_hash(f"nekzus_{i:064x}"): i for i in range(count)}
        probe = f"nekzus_{count // 2:064x}"
        started = time.perf_counter()
        for _ in range(rounds):
            table_keys.get(key_hash(probe))
        results.append((f"API key lookup, {count} keys", (time.perf_counter() - started) / rounds))
    return results


async def open_keepalive(port: int, count: int) -> list[asyncio.StreamWriter]:
    """`count` HTTP/1.1 connections, each after one answered request, left open and idle."""
    writers: list[asyncio.StreamWriter] = []
    gate = asyncio.Semaphore(100)
    request = f"GET /livez HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()

    async def one() -> None:
        async with gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
            match = re.search(rb"(?i)content-length:\s*(\d+)", head)
            if match:
                await reader.readexactly(int(match.group(1)))
            writers.append(writer)

    await asyncio.wait_for(asyncio.gather(*(one() for _ in range(count))), 120)
    return writers


async def open_websockets(port: int, count: int) -> list[RawClient]:
    from ws_fanout import open_client

    clients: list[RawClient] = []
    gate = asyncio.Semaphore(100)

    async def one() -> None:
        async with gate:
            clients.append(await open_client(port, 1))

    await asyncio.wait_for(asyncio.gather(*(one() for _ in range(count))), 180)
    return clients


async def settle_rss(pid: int) -> int:
    """RSS once it stops moving (the server may still be finishing handshakes)."""
    last = rss_bytes(pid)
    for _ in range(20):
        await asyncio.sleep(0.25)
        now = rss_bytes(pid)
        if abs(now - last) < 64 * 1024:
            return now
        last = now
    return last


async def memory(server: Server, count: int) -> dict[str, float]:
    base = await settle_rss(server.pid)
    writers = await open_keepalive(server.port, count)
    with_http = await settle_rss(server.pid)
    clients = await open_websockets(server.port, count)
    with_ws = await settle_rss(server.pid)
    for client in clients:
        client.close()
    for writer in writers:
        writer.close()
    return {
        "rss_base_mib": base / MIB,
        "http_kib_per_conn": (with_http - base) / 1024 / count,
        "ws_kib_per_conn": (with_ws - with_http) / 1024 / count,
        "connections": count,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=4, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="turns per row (the median is reported)")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--routes", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--devices", type=int, default=10000)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--idle", type=int, default=1000, help="idle connections for the memory rows")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 s runs, 200 idle connections")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.idle, args.rounds = 2, 200, 1
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None:
            print(f"{tool} is missing: run `bash scripts/install-system-deps.sh bench`", file=sys.stderr)
            return 2
    raise_fd_limit(args.idle * 4 + 512)
    rows: list[dict[str, Any]] = []
    mem: dict[str, float] = {}
    first, second = (lookup_micro(args.routes, args.keys) for _ in range(2))
    micro = [(label, min(a, b)) for (label, a), (_, b) in zip(first, second, strict=True)]
    with tempfile.TemporaryDirectory(prefix="nekzus-scale-") as tmp:
        root = Path(tmp)
        upstream = Upstream(root)
        upstream.start()
        try:
            stores = {"few": (1, 1), "many": (args.devices, args.keys)}
            creds: dict[str, dict[str, str]] = {}
            for name, (devices, keys) in stores.items():
                (root / name).mkdir()
                started = time.perf_counter()
                creds[name] = seed(root / name, devices, keys, upstream.port)
                print(
                    f"  seeded {name}: {devices} devices, {keys} keys in "
                    f"{time.perf_counter() - started:.1f} s",
                    file=sys.stderr,
                )
            # Every configuration runs at once and they take turns, round after round: the machine's
            # speed drifts within minutes, and turns give every row the same share of it.
            servers: dict[tuple[int, str], Server] = {}
            for routes in args.routes:
                for name in stores:
                    data_dir = root / f"{name}-{routes}"
                    shutil.copytree(root / name, data_dir)
                    servers[(routes, name)] = Server(data_dir, routes, upstream.port)
            samples: dict[tuple[int, str, str], list[tuple[float, float, float]]] = {}
            try:
                for server in servers.values():
                    server.start()
                order = list(servers.items())
                for turn in range(args.rounds):
                    # Each turn starts one server further on, so no row is always first or last.
                    shift = turn % len(order)
                    for (routes, name), server in order[shift:] + order[:shift]:
                        url = f"{server.url}/apps/r{routes - 1}/small"
                        for kind in ("device", "apikey"):
                            header = f"Authorization: Bearer {creds[name][kind]}"
                            if turn == 0:
                                wrk(url, header, args.connections, 1)  # warm-up (and credential check)
                            cpu0 = cpu_seconds(server.pid)
                            rps, p99, total = wrk(url, header, args.connections, args.duration)
                            cpu = cpu_seconds(server.pid) - cpu0
                            samples.setdefault((routes, name, kind), []).append(
                                (rps, p99, cpu / max(total, 1) * 1e6)
                            )
                    print(f"  round {turn + 1} of {args.rounds} done", file=sys.stderr)
                mem = asyncio.run(memory(servers[(args.routes[-1], "many")], args.idle))
            finally:
                for server in servers.values():
                    server.stop()
            for (routes, name, kind), runs in samples.items():
                devices, keys = stores[name]
                rows.append(
                    {
                        "routes": routes,
                        "devices": devices,
                        "keys": keys,
                        "credential": kind,
                        # The median of each column over the rounds.
                        "rps": statistics.median(r[0] for r in runs),
                        "p99_ms": statistics.median(r[1] for r in runs),
                        "cpu_us_per_req": statistics.median(r[2] for r in runs),
                    }
                )
        finally:
            upstream.stop()

    load = os.getloadavg()[0]
    print(
        f"Scale: proxied small GET, {args.connections} keep-alive conns, median of {args.rounds} turns of "
        f"{args.duration} s per row, load average {load:.1f} on {os.cpu_count()} CPUs"
    )
    header = (
        f"{'routes':>6} {'devices':>8} {'API keys':>8} {'credential':<10} "
        f"{'req/s':>8} {'p99 ms':>8} {'CPU µs/req':>11}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['routes']:>6} {row['devices']:>8} {row['keys']:>8} {row['credential']:<10} "
            f"{row['rps']:>8.0f} {row['p99_ms']:>8.1f} {row['cpu_us_per_req']:>11.0f}"
        )
    if mem:
        print(
            f"\nMemory ({mem['connections']:.0f} connections each; "
            f"server RSS before {mem['rss_base_mib']:.1f} MiB)"
        )
        print(f"  idle keep-alive HTTP connection: {mem['http_kib_per_conn']:.1f} KiB")
        print(f"  open WebSocket (authenticated hub client): {mem['ws_kib_per_conn']:.1f} KiB")
    print("\nLookups in process (best case, no server):")
    for label, seconds in micro:
        print(f"  {label:<40} {seconds * 1e9:>8.0f} ns")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"rows": rows, "memory": mem, "load": load, "lookups_s": dict(micro)}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
