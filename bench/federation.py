"""Federation benchmark: how fast a catalog change reaches every peer, and convergence with 1,000 apps.

Starts three real Nekzus processes on loopback ports federating through `bootstrap_peers`, then
  1. adds and deletes an app on A N times and times (on the WebSocket of B and C) the
     `federation_service_added` / `federation_service_removed` events;
  2. stops C, registers 1,000 apps on A, times B converging live, then restarts C and times its catch-up
     (anti-entropy on rejoin) until its `GET /api/v1/apps` lists all 1,000.

    python bench/federation.py [--rounds 20] [--apps 1000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import yaml
from tests.federation.conftest import apps, fed_server, peers, wait_for
from tests.nekzus_server import NekzusServer, free_port
from websockets.sync.client import connect


class Tap:
    """Records when each (type, serviceId) event arrives on an instance's WebSocket."""

    def __init__(self, srv: NekzusServer) -> None:
        self.seen: dict[tuple[str, str], float] = {}
        self.cond = threading.Condition()
        self.ws = connect(srv.ws_url + "/api/v1/ws", open_timeout=10, max_size=None).__enter__()
        self.ws.send(json.dumps({"type": "auth", "data": {"token": ""}}))
        self.ws.recv(timeout=10)
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            for raw in self.ws:
                now = time.perf_counter()
                msg = json.loads(raw)
                data = msg.get("data") or {}
                if isinstance(data, dict) and "serviceId" in data:
                    with self.cond:
                        self.seen[(msg["type"], data["serviceId"])] = now
                        self.cond.notify_all()
        except Exception:
            return

    def wait(self, key: tuple[str, str], timeout: float = 30.0) -> float:
        deadline = time.monotonic() + timeout
        with self.cond:
            while key not in self.seen:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(key)
                self.cond.wait(left)
            return self.seen[key]


def add_route(client: httpx.Client, app_id: str) -> None:
    """Register an app (a route to a port nothing listens on) through the API."""
    r = client.post(
        "/api/v1/routes",
        json={
            "routeId": f"r_{app_id}",
            "appId": app_id,
            "pathBase": f"/apps/{app_id}/",
            "to": "http://127.0.0.1:9",
        },
    )
    assert r.status_code == 201, r.text


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--apps", type=int, default=1000)
    args = parser.parse_args()

    ports = [free_port() for _ in range(3)]
    servers = [fed_server(p, [q for q in ports if q != p]) for p in ports]
    for srv in servers:
        # Measure replication, not the health checker probing 1,000 dead upstreams.
        srv.config["health_checks"] = {"enabled": False}
        srv.config_path.write_text(yaml.safe_dump(srv.config))
    a, b, c = servers
    try:
        for srv in servers:
            srv.start(wait=False)
        for srv in servers:
            srv.wait_ready(90)
        for srv in servers:
            wait_for(lambda srv=srv: len(peers(srv)) == 2, 60, "membership")
        taps = [Tap(b), Tap(c)]
        add_times: list[float] = []
        del_times: list[float] = []
        with a.client() as cl:
            for i in range(args.rounds):
                app_id = f"bench{i}"
                started = time.perf_counter()
                add_route(cl, app_id)
                add_times.append(max(t.wait(("federation_service_added", app_id)) for t in taps) - started)
                started = time.perf_counter()
                assert cl.delete(f"/api/v1/routes/r_{app_id}").status_code in (200, 204)
                del_times.append(max(t.wait(("federation_service_removed", app_id)) for t in taps) - started)

        c.stop()
        wait_for(
            lambda: peers(a)[next(iter(set(peers(a)) - {status_id(b)}))]["status"] == "offline",
            30,
            "C offline",
        )
        started = time.perf_counter()
        with a.client() as cl:
            for i in range(args.apps):
                add_route(cl, f"bulk{i:04d}")
        registered = time.perf_counter() - started
        last = f"bulk{args.apps - 1:04d}"
        taps[0].wait(("federation_service_added", last), 120)
        wait_for(lambda: sum(k.startswith("bulk") for k in apps(b)) == args.apps, 120, "B converged")
        b_converged = time.perf_counter() - started
        c.start(wait=False)
        c.wait_ready(90)
        ready = time.perf_counter()
        wait_for(lambda: sum(k.startswith("bulk") for k in apps(c)) == args.apps, 120, "C caught up")
        c_catchup = time.perf_counter() - ready
        with b.client() as cl:
            remote = cl.get("/api/v1/federation/status").json()["services"]["remote"]

        ms = 1000.0
        print(f"change propagation to both peers over {args.rounds} rounds (ms):")
        print(
            f"  add:    p50 {statistics.median(add_times) * ms:.1f}  p90 {pct(add_times, 0.9) * ms:.1f}"
            f"  max {max(add_times) * ms:.1f}"
        )
        print(
            f"  delete: p50 {statistics.median(del_times) * ms:.1f}  p90 {pct(del_times, 0.9) * ms:.1f}"
            f"  max {max(del_times) * ms:.1f}"
        )
        print(f"{args.apps} apps registered on A one by one through the API in {registered:.2f} s")
        print(f"  B (online) listed all {args.apps} after {b_converged:.2f} s (from the first registration)")
        print(f"  C (restarted) caught up with all {args.apps} {c_catchup:.2f} s after it was ready")
        print(f"  B's status counts {remote} remote services")
    finally:
        for srv in servers:
            srv.stop()


def status_id(srv: NekzusServer) -> str:
    with srv.client() as cl:
        result: Any = cl.get("/api/v1/federation/status").json()["local_peer_id"]
        return str(result)


if __name__ == "__main__":
    main()
