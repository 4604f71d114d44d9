"""System resources through the real server, compared with psutil read by the test; a fake host root."""

from __future__ import annotations

import os
from pathlib import Path

import psutil

from tests.auth.conftest import bearer, create_admin, login, pair
from tests.certs.conftest import running
from tests.nekzus_server import NekzusServer

FIELDS = {"cpu", "ram", "ram_used", "ram_total", "disk", "disk_used", "disk_total", "storage_size", "network"}


def test_resources_match_psutil(server: NekzusServer) -> None:
    net_before = psutil.net_io_counters()
    with server.client() as c:
        r = c.get("/api/v1/system/resources")
    assert r.status_code == 200
    body = r.json()
    assert set(body) >= FIELDS
    assert 0.0 <= body["cpu"] <= 100.0 and 0.0 <= body["ram"] <= 100.0 and 0.0 <= body["disk"] <= 100.0
    assert body["ram_total"] == psutil.virtual_memory().total
    assert 0 < body["ram_used"] <= body["ram_total"]
    disk = psutil.disk_usage(str(server.data_dir))
    assert body["disk_total"] == disk.total
    assert abs(body["disk_used"] - disk.used) < 512 * 1024 * 1024
    db = server.data_dir / "nexus.db"
    assert body["storage_size"] >= db.stat().st_size > 0
    assert body["network"]["rx_bytes"] >= net_before.bytes_recv
    assert body["network"]["tx_bytes"] >= net_before.bytes_sent
    assert body["cpu_cores"] == psutil.cpu_count()
    assert body["uptime"] > 0 and len(body["load"]) == 3


def _fake_root(root: Path) -> None:
    proc = root / "proc"
    (proc / "net").mkdir(parents=True)
    (proc / "meminfo").write_text(
        "MemTotal:        8000000 kB\nMemFree:         1000000 kB\nMemAvailable:    2000000 kB\n"
        "Buffers:          100000 kB\nCached:          1000000 kB\nSwapTotal:             0 kB\n"
        "SwapFree:              0 kB\nShmem:                 0 kB\nSReclaimable:          0 kB\n"
    )
    (proc / "stat").write_text(
        "cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 100 0 100 800 0 0 0 0 0 0\nbtime 1700000000\n"
    )
    (proc / "net" / "dev").write_text(
        "Inter-|   Receive                                                |  Transmit\n"
        " face |bytes    packets errs drop fifo frame compressed multicast"
        "|bytes    packets errs drop fifo colls carrier compressed\n"
        "  eth0: 123456789 10 0 0 0 0 0 0 987654321 10 0 0 0 0 0 0\n"
    )
    (proc / "loadavg").write_text("0.50 0.40 0.30 1/100 1234\n")
    (proc / "uptime").write_text("1000.00 1800.00\n")


def test_host_root_path_is_honoured(tmp_path: Path) -> None:
    root = tmp_path / "host"
    _fake_root(root)
    config = {"system": {"host_root_path": str(root)}}
    with running(NekzusServer(config, data_dir=tmp_path / "data")) as srv, srv.client() as c:
        body = c.get("/api/v1/system/resources").json()
    assert body["ram_total"] == 8000000 * 1024
    assert body["ram_used"] == (8000000 - 2000000) * 1024
    assert body["network"] == {"rx_bytes": 123456789, "tx_bytes": 987654321}
    assert body["disk_total"] == psutil.disk_usage(str(root)).total
    assert body["uptime"] > 0 and os.path.isdir(root)


def test_quick_stats_carry_the_figures(tmp_path: Path) -> None:
    config = {"bootstrap": {"tokens": ["perm-bootstrap-token-for-tests-0123456789abcdef"]}}
    with running(NekzusServer(config, data_dir=tmp_path)) as srv, srv.client() as c:
        create_admin(c, srv)
        token = login(c)
        body = c.get("/api/v1/stats/quick", headers=bearer(token)).json()
        assert {"cpu", "ram", "disk"} <= set(body["system"])
        assert body["system"]["ram"] > 0
        device = pair(c, "widget-phone")
        assert c.get("/api/v1/stats/quick", headers=bearer(device["accessToken"])).status_code == 200
