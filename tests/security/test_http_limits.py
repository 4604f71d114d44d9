"""Request heads are capped and timed, malformed requests answer in the JSON error shape, and the
HTTP→HTTPS redirect never copies control characters into `Location`."""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.nekzus_server import NekzusServer, free_port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NekzusServer]:
    config = {
        "server": {
            "read_header_timeout": "1s",
            "read_body_timeout": "1s",
            "allowed_hosts": ["nekzus.home.arpa"],
        }
    }
    with NekzusServer(config, data_dir=tmp_path_factory.mktemp("limits")) as srv:
        yield srv


def connect(srv: NekzusServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    return sock


def read_response(sock: socket.socket, deadline: float = 10.0) -> tuple[int, dict[str, Any]]:
    sock.settimeout(deadline)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, json.loads(body) if body else {}


def test_oversized_head_is_refused_before_it_is_buffered(server: NekzusServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        sock.settimeout(0.5)
        answered = False
        for _ in range(512):  # bounded: at most 8 MiB; the server must answer long before that
            readable, _w, _x = select.select([sock], [], [], 0)
            if readable:
                answered = True
                break
            try:
                sock.sendall(b"a" * 16384)
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                answered = True
                break
        assert answered
        status, body = read_response(sock)
    assert status == 431
    assert body["error"] == {"code": "HEADERS_TOO_LARGE", "message": "Request head exceeds 64 KiB"}


def test_slow_head_times_out(server: NekzusServer) -> None:
    with connect(server) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        status, body = read_response(sock, deadline=10)
        assert status == 408
        assert body["error"]["code"] == "REQUEST_TIMEOUT"
        assert time.monotonic() - started < 5
        sock.settimeout(5)
        assert sock.recv(1) == b""  # and the connection is closed


def test_stalled_body_times_out(server: NekzusServer) -> None:
    with connect(server) as sock:
        sock.sendall(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{"
        )
        status, body = read_response(sock, deadline=10)
    assert status == 408
    assert body["error"]["code"] == "REQUEST_TIMEOUT"


def test_large_body_in_one_write_is_not_mistaken_for_a_large_head(server: NekzusServer) -> None:
    payload = json.dumps({"username": "x" * 200_000, "password": "y"}).encode()
    with connect(server) as sock:
        sock.sendall(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload
        )
        status, _body = read_response(sock)
    assert status not in (408, 431) and status < 500


def test_malformed_request_gets_the_json_error_shape(server: NekzusServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\r\n\r\n")
        status, body = read_response(sock)
    assert status == 400
    assert body["error"]["code"] == "BAD_REQUEST"


def test_keep_alive_requests_still_work(server: NekzusServer) -> None:
    with connect(server) as sock:
        for _ in range(3):
            sock.sendall(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            data = sock.recv(4096)
            assert data.startswith(b"HTTP/1.1 200")


def test_redirect_location_never_carries_control_characters(tmp_path: Path) -> None:
    redirect_port = free_port()
    config = {"server": {"http_redirect_addr": f"127.0.0.1:{redirect_port}"}}
    with NekzusServer(config, tls=True, data_dir=tmp_path) as srv:
        for target in (b"/a\nSet-Cookie: x=1", b"/a\rX-Injected: 1", b"//evil.example/", b"/ok\x7f"):
            with socket.create_connection(("127.0.0.1", redirect_port), timeout=5) as sock:
                sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: nekzus.lan\r\n\r\n")
                data = b""
                while chunk := sock.recv(4096):
                    data += chunk
            lines = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
            locations = [line for line in lines if line.lower().startswith(b"location:")]
            assert locations == [b"Location: https://nekzus.lan:%d/" % srv.port], (target, lines)
            assert not any(line.lower().startswith((b"set-cookie", b"x-injected")) for line in lines)


@pytest.mark.parametrize(
    ("host_lines", "reason"),
    [
        (b"Host: a.example\r\nHost: b.example\r\n", "Duplicate Host header"),
        (b"Host: evil.example/x\r\n", "Invalid Host header"),
        (b"Host: user@evil.example\r\n", "Invalid Host header"),
        (b"Host: a\tb\r\n", "Invalid Host header"),
        (b"", "Missing Host header"),
    ],
)
def test_bad_host_headers_are_refused(server: NekzusServer, host_lines: bytes, reason: str) -> None:
    for path in (b"/livez", b"/apps/anything/"):
        with connect(server) as sock:
            sock.sendall(b"GET " + path + b" HTTP/1.1\r\n" + host_lines + b"\r\n")
            status, body = read_response(sock)
        assert status == 400
        assert body["error"] == {"code": "BAD_REQUEST", "message": reason}


def test_good_host_forms_are_accepted(server: NekzusServer) -> None:
    for host in (b"127.0.0.1", b"127.0.0.1:8443", b"[::1]:8443", b"nekzus.home.arpa", b"LOCALHOST"):
        with connect(server) as sock:
            sock.sendall(b"GET /livez HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200"), host
