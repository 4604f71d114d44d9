"""Several workers and managed certificates: an instance that starts on plain HTTP with a stored
certificate switches to TLS in every worker, but says so (log line, devices told) once, in the leader."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.certs.conftest import admin_headers, start_server

NOTICE = "TLS enabled in place"


def _workers_seen(url: str, count: int, timeout: float = 90.0) -> set[int]:
    """Open fresh connections until every worker has answered /healthz (new connections land on any)."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    for _ in range(2000):
        if len(seen) == count or time.monotonic() > deadline:
            break
        try:
            with httpx.Client(verify=False, timeout=2.0) as client:
                reply = client.get(url + "/healthz", headers={"Accept": "application/json"})
        except httpx.TransportError:
            time.sleep(0.05)
            continue
        index = reply.json().get("worker") if reply.status_code == 200 else None
        if isinstance(index, int):
            seen.add(index)
        else:
            time.sleep(0.05)
    return seen


def test_tls_enabled_at_start_is_announced_once(tmp_path: Path) -> None:
    srv = start_server(tmp_path, {"server": {"workers": 2}})
    try:
        admin = admin_headers(srv)
        with srv.client() as c:
            reply = c.post(
                "/api/v1/certificates/generate", json={"domains": ["localhost", "127.0.0.1"]}, headers=admin
            )
        assert reply.status_code == 200 and reply.json()["tls_upgraded"] is True
        srv.stop()
        # Restarted still with --insecure-http: the stored certificate turns TLS on in place at start.
        srv.url = srv.url.replace("http://", "https://", 1)
        before = len(srv.logs())
        srv.start(timeout=120)
        assert _workers_seen(srv.url, 2) == {0, 1}, srv.logs()[-3000:]
        after = srv.logs()[before:]
        assert after.count(NOTICE) == 1, after[-3000:]
    finally:
        srv.stop()
