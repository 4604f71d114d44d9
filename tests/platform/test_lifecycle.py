"""Process lifecycle with real requests: in-flight work survives SIGTERM, secrets persist, bad JSON is 400."""

from __future__ import annotations

import signal
import socket
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from tests.nekzus_server import NekzusServer


def refused_within(port: int, seconds: float) -> bool:
    """True once a connection to `port` is refused; False if it is still accepted after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            return True
        time.sleep(0.05)  # a bounded poll: the listener closes as the server's shutdown begins
    return False


def test_sigterm_lets_an_in_flight_request_finish(tmp_path: Path) -> None:
    srv = NekzusServer(data_dir=tmp_path).start()
    assert srv.proc is not None
    body = b'{"username": "nobody", "password": "not-the-password"}'
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        head = (
            f"POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n"
        ).encode()
        sock.sendall(head)
        # `100 Continue` comes when the endpoint starts reading the body: the request is in flight.
        interim = b""
        while b"\r\n\r\n" not in interim:
            chunk = sock.recv(4096)
            assert chunk, interim
            interim += chunk
        assert interim.startswith(b"HTTP/1.1 100 "), interim
        sent_at = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        # While the in-flight request is still open, the listener is closed: a new client is refused at
        # once instead of waiting in a backlog nobody accepts from.
        assert refused_within(srv.port, 5.0)
        sock.sendall(body)  # the rest of a request that was in flight when the signal came
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    status_line = reply.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 401"), reply[:200]
    code = srv.proc.wait(10)
    assert code == 0
    assert time.monotonic() - sent_at < 5
    srv.proc = None


def test_generated_jwt_secret_is_private_and_survives_restart(tmp_path: Path) -> None:
    srv = NekzusServer(data_dir=tmp_path).start()
    try:
        secret_file = tmp_path / "jwt_secret"
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        first = secret_file.read_text()
        assert len(first.strip()) >= 32
        with srv.client() as c:
            assert (
                c.post(
                    "/api/v1/auth/setup", json={"username": "admin", "password": "correct horse"}
                ).status_code
                == 201
            )
            token = c.post(
                "/api/v1/auth/login", json={"username": "admin", "password": "correct horse"}
            ).json()["token"]
        srv.restart()
        assert secret_file.read_text() == first
        with srv.client() as c:
            me = c.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
            assert me.status_code == 200
            assert me.json()["user"]["username"] == "admin"
        assert first.strip() not in srv.logs()
    finally:
        srv.stop()


def test_malformed_json_is_400_and_oversized_stream_is_413(make_server: Callable[..., NekzusServer]) -> None:
    srv: NekzusServer = make_server({"server": {"max_body_bytes": 4096}})
    with srv.client() as c:
        bad = c.post(
            "/api/v1/auth/login", content=b'{"username": "a", ', headers={"Content-Type": "application/json"}
        )
        assert bad.status_code == 400
        assert bad.json()["error"]["code"] == "INVALID_JSON"

        def chunks() -> Iterator[bytes]:
            for _ in range(16):
                yield b"z" * 1024

        # Chunked upload without Content-Length: counted while streaming.
        too_big = c.post("/api/v1/auth/login", content=chunks(), headers={"Content-Type": "application/json"})
        assert too_big.status_code == 413
        assert too_big.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
        assert httpx.get(srv.url + "/readyz").text == "ok"
