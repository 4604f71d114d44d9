"""Devices hear about certificate changes: `repair_required` on a socket that stays open across the switch
from plain HTTP to TLS, and again when the served key rotates."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

from tests.auth.conftest import PERMANENT_BOOTSTRAP, bearer, pair
from tests.certs.conftest import admin_headers, peer_certificate, pin, start_server, use_https


def next_of_type(ws: ClientConnection, type_: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {type_} message"
        message: dict[str, Any] = json.loads(ws.recv(timeout=remaining))
        if message["type"] == type_:
            return message


def test_devices_told_to_repair(tmp_path: Path) -> None:
    srv = start_server(tmp_path, {"bootstrap": {"tokens": [PERMANENT_BOOTSTRAP]}})
    try:
        admin = admin_headers(srv)
        with srv.client() as c:
            token = pair(c, "pinned-phone")["accessToken"]
        ws_url = f"ws://127.0.0.1:{srv.port}/api/v1/ws"
        with connect(ws_url, open_timeout=10, close_timeout=2) as ws:
            ws.send(json.dumps({"type": "auth", "data": {"token": token}}))
            assert next_of_type(ws, "auth_success")["type"] == "auth_success"
            with srv.client() as c:
                r = c.post(
                    "/api/v1/certificates/generate",
                    json={"domains": ["localhost", "127.0.0.1"]},
                    headers=admin,
                )
            assert r.status_code == 200 and r.json()["tls_upgraded"] is True
            enabled = next_of_type(ws, "repair_required")["data"]
            assert enabled["reason"] == "tls_enabled"
            assert enabled["newBaseUrl"] == f"https://127.0.0.1:{srv.port}"
            use_https(srv)
            with srv.client() as c:
                rotation = c.post(
                    "/api/v1/certificates/renew", json={"domain": "localhost"}, headers=admin
                ).json()["rotation"]
            rotated = next_of_type(ws, "repair_required")["data"]
            assert rotated["reason"] == "certificate_rotated"
            assert rotated["oldSpki"] == rotation["old_spki"] and rotated["newSpki"] == rotation["new_spki"]
            assert rotated["newSpki"] == pin(peer_certificate(srv.port, None))
        with srv.client() as c:
            assert c.get("/api/v1/apps", headers=bearer(token)).status_code == 200
    finally:
        srv.stop()
