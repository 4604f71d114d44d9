"""Several worker processes (`server.workers: 2`) behind one listening socket, on a real server.

Which worker answered is read from the `worker` field of `/healthz`'s JSON detail (shown to trusted
networks only when there is more than one worker). A keep-alive connection stays with the worker that
accepted it, so each test holds one connection per worker and proves state moves between them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.events.conftest import WS, create_api_key, pair_device
from tests.nekzus_server import NekzusServer
from tests.proxy.conftest import Upstream

WORKERS = 2
BURST = 6
GENEROUS = {"rate": "1000/s", "burst": 100000}
KEEP = httpx.Limits(max_connections=1, keepalive_expiry=600)


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    up = Upstream().start()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def server(upstream: Upstream) -> Iterator[NekzusServer]:
    names = ("health", "auth", "qr", "websocket", "device", "general", "metrics", "proxy")
    limits: dict[str, object] = {name: GENEROUS for name in names}
    # The container category is the one under test: a small burst and (almost) no refill.
    limits["container"] = {"rate": "1/h", "burst": BURST}
    route = {
        "id": "feed",
        "app_id": "feed",
        "path_base": "/apps/feed/",
        "to": upstream.url,
        "strip_prefix": True,
    }
    srv = NekzusServer(
        {"server": {"workers": WORKERS}, "rate_limits": limits, "routes": [route]}, rate_limits=True
    )
    srv.start(timeout=180)
    yield srv
    srv.stop()


def _worker_of(client: httpx.Client) -> int | None:
    try:
        reply = client.get("/healthz", headers={"Accept": "application/json"})
    except httpx.TransportError:
        return None
    if reply.status_code != 200:
        return None  # that worker is still starting
    index = reply.json().get("worker")
    return index if isinstance(index, int) else None


def connections(server: NekzusServer, timeout: float = 120.0) -> dict[int, httpx.Client]:
    """One open keep-alive connection per worker (opened in small concurrent batches until every worker
    has answered on one of them)."""
    found: dict[int, httpx.Client] = {}
    spare: list[httpx.Client] = []
    deadline = time.monotonic() + timeout
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for _ in range(2000):
            if len(found) == WORKERS or time.monotonic() > deadline:
                break
            time.sleep(0.05)  # a worker may still be starting (it answers 503 until ready)
            # httpx closes a connection idle for 5 s by default: these are kept for the whole test.
            batch = [server.client(limits=KEEP) for _ in range(8)]
            for client, index in zip(batch, pool.map(_worker_of, batch), strict=True):
                if index is not None and index not in found:
                    found[index] = client
                else:
                    spare.append(client)
    for client in spare:
        client.close()
    assert sorted(found) == list(range(WORKERS)), f"workers seen: {sorted(found)}\n{server.logs()[-3000:]}"
    return found


def test_every_worker_serves(server: NekzusServer) -> None:
    conns = connections(server)
    try:
        for index, client in conns.items():
            assert _worker_of(client) == index  # the connection stays with its worker
    finally:
        for client in conns.values():
            client.close()


@pytest.mark.parametrize(("revoker", "victim"), [(0, 1), (1, 0)])
def test_device_revoked_in_one_worker_is_refused_by_the_other_at_once(
    server: NekzusServer, revoker: int, victim: int
) -> None:
    device_id = f"phone-{revoker}-{victim}"
    token = pair_device(server, device_id)
    bearer = {"Authorization": f"Bearer {token}"}
    conns = connections(server)
    try:
        for client in conns.values():
            assert client.get("/api/v1/apps", headers=bearer).status_code == 200
        revoked = conns[revoker].delete(f"/api/v1/devices/{device_id}")
        assert revoked.status_code == 200, revoked.text
        refused = conns[victim].get("/api/v1/apps", headers=bearer)
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"]["code"] == "DEVICE_REVOKED"
        assert _worker_of(conns[victim]) == victim  # it really was the other worker that refused
    finally:
        for client in conns.values():
            client.close()


@pytest.mark.parametrize(("revoker", "victim"), [(0, 1), (1, 0)])
def test_device_revoked_in_one_worker_cuts_its_stream_in_the_other(
    server: NekzusServer, upstream: Upstream, revoker: int, victim: int
) -> None:
    """A proxied event stream open in one worker stops when another worker revokes its device."""
    device_id = f"feed-{revoker}-{victim}"
    bearer = {"Authorization": f"Bearer {pair_device(server, device_id)}"}
    conns = connections(server)
    try:
        with conns[victim].stream(
            "GET", "/apps/feed/sse-gated", headers=bearer, timeout=httpx.Timeout(10, read=5)
        ) as sse:
            assert sse.status_code == 200
            events = sse.iter_raw()
            assert next(events).startswith(b"data: first")
            assert conns[revoker].delete(f"/api/v1/devices/{device_id}").status_code == 200
            with pytest.raises(httpx.RemoteProtocolError):
                for _ in events:
                    pass
    finally:
        upstream.open_gate()
        for client in conns.values():
            client.close()


def test_api_key_revoked_in_one_worker_is_refused_by_the_other_at_once(server: NekzusServer) -> None:
    key = create_api_key(server, ["read:catalog"], name="cross-worker")
    header = {"X-API-Key": key}
    conns = connections(server)
    try:
        for client in conns.values():
            assert client.get("/api/v1/apps", headers=header).status_code == 200
        key_id = next(k["id"] for k in conns[1].get("/api/v1/apikeys").json() if k["name"] == "cross-worker")
        assert conns[1].delete(f"/api/v1/apikeys/{key_id}").status_code in (200, 204)
        assert conns[0].get("/api/v1/apps", headers=header).status_code == 401
        assert _worker_of(conns[0]) == 0
    finally:
        for client in conns.values():
            client.close()


def test_rate_limit_is_counted_across_workers(server: NekzusServer) -> None:
    conns = connections(server)
    try:
        statuses = []
        for i in range(BURST + 4):
            reply = conns[i % WORKERS].get("/api/v1/stats/quick")
            statuses.append(reply.status_code)
            if reply.status_code == 429:
                assert reply.headers["X-RateLimit-Limit"] == str(BURST)
                assert int(reply.headers["Retry-After"]) >= 1
        # One bucket for the client, whichever worker answers: per-worker buckets would allow 2x BURST.
        assert statuses.count(429) == 4, statuses
        assert 429 not in statuses[:BURST], statuses
    finally:
        for client in conns.values():
            client.close()


def test_pairing_code_from_one_worker_is_redeemed_through_the_other(server: NekzusServer) -> None:
    conns = connections(server)
    try:
        code = conns[0].get("/api/v1/auth/qr").json()["code"]
        # Codes reach the other workers through the event relay: wait until worker 1 knows it.
        deadline = time.monotonic() + 10
        while not conns[1].get("/api/v1/auth/qr/status", params={"code": code}).json()["valid"]:
            assert time.monotonic() < deadline, "the pairing code never reached worker 1"
            time.sleep(0.02)
        config = conns[1].post("/api/v1/pair", json={"code": code}, headers={"X-Pairing-Request": "true"})
        assert config.status_code == 200, config.text
        bootstrap = config.json()["bootstrapToken"]
        device = {"device": {"id": "qr-phone", "model": "Test", "platform": "ios"}}
        paired = conns[0].post(
            "/api/v1/auth/pair", json=device, headers={"Authorization": f"Bearer {bootstrap}"}
        )
        assert paired.status_code == 200, paired.text
        # The bootstrap token is spent in every worker, at once (a shared check-and-set), and so is the code.
        again = {"device": {"id": "qr-phone-2", "model": "Test", "platform": "ios"}}
        replay = conns[1].post(
            "/api/v1/auth/pair", json=again, headers={"Authorization": f"Bearer {bootstrap}"}
        )
        assert replay.status_code == 401, replay.text
        twice = conns[0].post("/api/v1/pair", json={"code": code}, headers={"X-Pairing-Request": "true"})
        assert twice.status_code == 404, twice.text
    finally:
        for client in conns.values():
            client.close()


def test_dashboard_session_is_shared_by_the_workers(server: NekzusServer) -> None:
    user = {"username": "admin", "password": "correct-horse-42"}
    conns = connections(server)
    try:
        conns[0].post("/api/v1/auth/setup", json=user)
        login = conns[0].post("/api/v1/ui/login", json=user)
        assert login.status_code == 200, login.text
        cookie = {"Cookie": f"nekzus_session={login.cookies['nekzus_session']}"}
        seen = conns[1].get("/api/v1/ui/session", headers=cookie).json()
        assert seen["authenticated"] is True and seen["csrfToken"] == login.json()["csrfToken"]
        out = conns[1].post("/api/v1/ui/logout", headers={**cookie, "X-CSRF-Token": seen["csrfToken"]})
        assert out.status_code == 200, out.text
        assert conns[0].get("/api/v1/ui/session", headers=cookie).json()["authenticated"] is False
    finally:
        for client in conns.values():
            client.close()


async def _hub_sees_events_from_both_workers(server: NekzusServer, conns: dict[int, httpx.Client]) -> None:
    # Several hub clients: wherever each one landed, one of the two events was caused in the other worker.
    clients = [await WS.open(server.ws_url, "") for _ in range(4)]
    try:
        for index, conn in conns.items():
            body = {
                "routeId": f"relay-{index}",
                "pathBase": f"/apps/relay-{index}/",
                "to": "http://127.0.0.1:9",
            }
            reply = await asyncio.to_thread(conn.post, "/api/v1/routes", json=body)
            assert reply.status_code == 201, reply.text
        for ws in clients:
            seen: set[str] = set()
            while len(seen) < WORKERS:
                message = await ws.recv_type("config_reload")
                text = str(message.get("data"))
                seen.update(f"relay-{i}" for i in range(WORKERS) if f"relay-{i}" in text)
    finally:
        for ws in clients:
            await ws.close()


def test_hub_client_receives_events_caused_in_the_other_worker(server: NekzusServer) -> None:
    conns = connections(server)
    try:
        asyncio.run(asyncio.wait_for(_hub_sees_events_from_both_workers(server, conns), 60))
    finally:
        for client in conns.values():
            client.close()


async def _revocation_closes_sockets_everywhere(server: NekzusServer, conn: httpx.Client) -> None:
    token = pair_device(server, "socket-phone")
    sockets = [await WS.open(server.ws_url, token) for _ in range(4)]
    reply = await asyncio.to_thread(conn.delete, "/api/v1/devices/socket-phone")
    assert reply.status_code == 200
    for ws in sockets:
        await ws.wait_closed(timeout=10)


def test_revocation_closes_hub_sockets_held_by_every_worker(server: NekzusServer) -> None:
    conns = connections(server)
    try:
        asyncio.run(asyncio.wait_for(_revocation_closes_sockets_everywhere(server, conns[0]), 60))
    finally:
        for client in conns.values():
            client.close()


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.update(int(child) for child in text)
    return found


def test_config_reload_in_the_leader_reaches_every_worker(server: NekzusServer) -> None:
    route = {
        "id": "from-file",
        "app_id": "from-file",
        "path_base": "/apps/from-file/",
        "to": "http://127.0.0.1:9",
    }
    server.config["routes"] = [route]
    server.config_path.write_text(yaml.safe_dump(server.config))
    conns = connections(server)
    try:
        for index, client in conns.items():
            deadline = time.monotonic() + 30
            while "from-file" not in {r["routeId"] for r in client.get("/api/v1/routes").json()}:
                assert time.monotonic() < deadline, f"worker {index} never saw the reloaded route"
                time.sleep(0.05)
            assert _worker_of(client) == index
    finally:
        for client in conns.values():
            client.close()


def test_a_killed_worker_is_restarted(server: NekzusServer) -> None:
    assert server.proc is not None
    before = _children(server.proc.pid)
    assert len(before) == WORKERS
    victim = max(before)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        now = _children(server.proc.pid)
        if len(now) == WORKERS and victim not in now:
            break
        time.sleep(0.1)
    assert len(_children(server.proc.pid)) == WORKERS and victim not in _children(server.proc.pid)
    conns = connections(server)  # both serve again
    for client in conns.values():
        client.close()


def test_sigterm_stops_every_worker_with_exit_0(server: NekzusServer) -> None:
    assert server.proc is not None
    workers = _children(server.proc.pid)
    code = server.stop(signal.SIGTERM, timeout=30)
    assert code == 0, server.logs()[-3000:]
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    # No process holds the listening socket any more: a new client is refused, not left waiting.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
