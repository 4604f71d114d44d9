"""The HTTP data path against a real upstream: matching, stripping, headers, bodies, errors, streaming."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psutil
import pytest
import yaml
from websockets.asyncio.client import connect

from tests.nekzus_server import NekzusServer, free_port
from tests.proxy.conftest import Upstream, admin_credentials, pattern_bytes, routes_for


@pytest.fixture(scope="module")
def nekzus(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NekzusServer]:
    srv = NekzusServer(
        {
            "routes": routes_for(upstream, free_port()),
            "health_checks": {"enabled": False},
            "server": {"proxy_strip_headers": ["X-Internal-Secret"]},
        },
        data_dir=tmp_path_factory.mktemp("proxy-http"),
        env={"NEKZUS_PROXY_IDLE_TIMEOUT": "1.5"},
    )
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def http(nekzus: NekzusServer) -> Iterator[httpx.Client]:
    with nekzus.client() as c:
        yield c


def test_strip_prefix_query_and_body_pass_through(http: httpx.Client) -> None:
    r = http.post(
        "/apps/echo/a/b%20c?x=1&y=%2F", content=b"hello body", headers={"Content-Type": "text/plain"}
    )
    assert r.status_code == 200
    assert r.headers["x-api-version"] == "v1"
    assert r.headers["x-request-id"]
    data = r.json()
    assert data["method"] == "POST"
    assert data["raw_path"] == "/a/b%20c?x=1&y=%2F"
    assert data["body"] == "hello body"
    assert data["headers"]["x-forwarded-prefix"] == "/apps/echo"


def test_no_strip_keeps_path_and_segment_boundary(http: httpx.Client) -> None:
    r = http.get("/apps/raw/sub/x?q=2")
    assert r.json()["path"] == "/apps/raw/sub/x"
    assert r.json()["query"] == "q=2"
    assert http.get("/apps/raw").json()["path"] == "/apps/raw"
    # /apps/rawx is not /apps/raw: segment boundary
    assert http.get("/apps/rawx/").status_code == 404


def test_target_base_path_is_joined(http: httpx.Client) -> None:
    assert http.get("/apps/based/x").json()["path"] == "/base/x"


def test_trailing_slash_redirect_keeps_query(http: httpx.Client) -> None:
    r = http.get("/apps/echo?a=1&b=2", follow_redirects=False)
    assert r.status_code == 301
    assert r.headers["location"] == "/apps/echo/?a=1&b=2"


def test_unknown_route_is_json_404(http: httpx.Client) -> None:
    r = http.get("/apps/nothing/here")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "NOT_FOUND"


def test_upstream_status_codes_and_large_body_upload(http: httpx.Client) -> None:
    for code in (201, 204, 404, 418, 500, 503):
        assert http.get(f"/apps/echo/status/{code}").status_code == code
    payload = b"x" * (3 * 1024 * 1024 + 7)
    r = http.put("/apps/echo/upload", content=payload)
    assert r.json()["body_len"] == len(payload)

    def chunks() -> Iterator[bytes]:
        for _ in range(5):
            yield b"y" * 10000

    r = http.post("/apps/echo/chunked", content=chunks())
    assert r.json()["body_len"] == 50000


def test_forwarded_headers_set_and_spoofed_dropped(http: httpx.Client, nekzus: NekzusServer) -> None:
    # Real credentials (a presented credential is judged even from a trusted network): they authenticate
    # the caller to Nekzus and must never reach the upstream.
    token, api_key = admin_credentials(nekzus)
    for credential in ({"Authorization": f"Bearer {token}"}, {"X-API-Key": api_key}):
        r = http.get(
            "/apps/echo/h",
            headers={
                "X-Forwarded-For": "6.6.6.6",
                "X-Real-IP": "6.6.6.6",
                "X-Forwarded-Host": "evil.example",
                "X_Forwarded_For": "7.7.7.7",
                "Cookie": "a=1",
                "Connection": "keep-alive, X-Drop-Me",
                "X-Drop-Me": "1",
                **credential,
            },
        )
        assert r.status_code == 200, r.text
        headers = r.json()["headers"]
        assert headers["x-forwarded-for"] == "127.0.0.1"
        assert headers["x-real-ip"] == "127.0.0.1"
        assert headers["x-forwarded-proto"] == "http"
        assert headers["x-forwarded-host"] == f"127.0.0.1:{nekzus.port}"
        assert headers["x-forwarded-port"] == str(nekzus.port)
        assert "authorization" not in headers
        assert "x-api-key" not in headers
        assert "x_forwarded_for" not in headers
        assert "x-drop-me" not in headers
        assert headers["cookie"] == "a=1"
    # A bogus credential is refused even from loopback, and nothing reaches the upstream.
    r = http.get("/apps/echo/h", headers={"Authorization": "Bearer secret-token"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHORIZED"
    r = http.get("/apps/echo/h", headers={"X-API-Key": "nekzus_" + "0" * 64})
    assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHORIZED"


# Headers a client must never get to an upstream, in the spellings that used to slip through: `_` for
# `-`, identity headers forward-auth apps trust, a configured name, and headers named hop-by-hop in a
# second `Connection` line.
SMUGGLED = [
    ("X-Forwarded_For", "7.7.7.7"),
    ("X_Real-IP", "7.7.7.7"),
    ("X-Forwarded_Host", "evil.example"),
    ("X-Remote-User", "admin"),
    ("X-WEBAUTH-USER", "admin"),
    ("Remote-User", "admin"),
    ("Remote_User", "admin"),
    ("X-Forwarded-User", "admin"),
    ("X_Forwarded_User", "admin"),
    ("X-Internal-Secret", "s3cret"),
    ("X_Internal_Secret", "s3cret"),
    ("Connection", "X-Second-Line, X_Under_Named"),
    ("X-Second-Line", "1"),
    ("X-Under-Named", "1"),
    ("X-Keep", "yes"),
]
NEVER_UPSTREAM = {
    "x-forwarded-host-evil",
    "remote-user",
    "x-remote-user",
    "x-webauth-user",
    "x-forwarded-user",
    "x-internal-secret",
    "x-second-line",
    "x-under-named",
    "proxy-authorization",
}


def _leaked(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Upstream-received headers that are smuggled ones (names compared with `_` read as `-`)."""
    out = []
    for name, value in headers:
        key = name.lower().replace("_", "-")
        if key in NEVER_UPSTREAM or "evil.example" in value or "7.7.7.7" in value:
            out.append((name, value))
    return out


def test_smuggled_forwarding_and_identity_headers_never_reach_the_upstream(http: httpx.Client) -> None:
    r = http.get("/apps/echo/h", headers=[("Connection", "keep-alive"), *SMUGGLED])
    assert r.status_code == 200, r.text
    headers = r.json()["headers"]
    assert headers["x-keep"] == "yes"  # ordinary headers still pass
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert _leaked(list(headers.items())) == []


def test_smuggled_headers_never_reach_a_websocket_upstream(nekzus: NekzusServer) -> None:
    async def run() -> dict[str, Any]:
        # The client library sends its own `Connection: Upgrade` line first; uvicorn reads only the last
        # line for the upgrade, so this second line names `Upgrade` again.
        smuggled = [
            ("Connection", "Upgrade, X-Second-Line, X_Under_Named") if name == "Connection" else (name, value)
            for name, value in SMUGGLED
        ]
        smuggled.append(("Proxy-Authorization", "Basic dXNlcjpwYXNz"))
        async with connect(nekzus.ws_url + "/apps/ws/ws", additional_headers=smuggled) as ws:
            hello: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
            return hello

    hello = asyncio.run(run())
    received = [(str(k), str(v)) for k, v in hello["headers"]]
    assert ("x-keep", "yes") in received
    assert _leaked(received) == []


def test_upstream_unreachable_is_502_json(http: httpx.Client) -> None:
    r = http.get("/apps/dead/")
    assert r.status_code == 502
    assert r.json()["error"]["code"] == "BAD_GATEWAY"


def test_upstream_timeout_is_504_json(http: httpx.Client) -> None:
    r = http.get("/apps/echo/slow?s=4")
    assert r.status_code == 504
    assert r.json()["error"]["code"] == "GATEWAY_TIMEOUT"


def test_bad_input_refused(nekzus: NekzusServer) -> None:
    def raw(request: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", nekzus.port), timeout=5) as s:
            s.sendall(request)
            data = b""
            while b"\r\n\r\n" not in data:
                part = s.recv(65536)
                if not part:
                    break
                data += part
            return data

    assert raw(b"GET /apps/echo/../../etc/passwd HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").startswith(
        b"HTTP/1.1 400"
    )
    assert raw(b"GET /apps/echo/%2e%2e/%2e%2e/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").startswith(
        b"HTTP/1.1 400"
    )
    assert raw(b"GET /apps/echo/a%00b HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").startswith(b"HTTP/1.1 400")
    big = b"X-Big: " + b"a" * 70000 + b"\r\n"
    assert raw(b"GET /apps/echo/ HTTP/1.1\r\nHost: 127.0.0.1\r\n" + big + b"\r\n")[:12] in (
        b"HTTP/1.1 431",
        b"HTTP/1.1 400",
    )
    # The server is still fine.
    with nekzus.client() as c:
        assert c.get("/apps/echo/ok").status_code == 200


def test_sse_events_arrive_one_by_one(http: httpx.Client) -> None:
    arrivals: list[float] = []
    start = time.monotonic()
    with http.stream("GET", "/apps/echo/sse") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data:"):
                arrivals.append(time.monotonic() - start)
    assert len(arrivals) == 4
    # The first event came well before the last (1.2 s of upstream pauses in between).
    assert arrivals[-1] - arrivals[0] > 0.9
    assert arrivals[0] < 0.6


def test_sse_event_reaches_the_client_while_the_upstream_still_holds_the_response(
    http: httpx.Client, upstream: Upstream
) -> None:
    # The upstream sends one event and then waits for this test: had the proxy held the event back
    # (to gather it with more data), the read below would wait for the timeout and fail.
    with http.stream("GET", "/apps/echo/sse-gated", timeout=10) as r:
        lines = r.iter_lines()
        assert next(line for line in lines if line.startswith("data:")) == "data: first"
        assert not upstream.gated_done.is_set()
        upstream.open_gate()
        assert next(line for line in lines if line.startswith("data:")) == "data: second"
    assert upstream.gated_done.wait(5)


@pytest.mark.parametrize("length", ["1", "0"])
def test_download_of_uneven_pieces_arrives_byte_exact(http: httpx.Client, length: str) -> None:
    # Pieces of 1 byte to 1 MiB, framed by Content-Length or chunked by the upstream: each is handed on
    # in order, none dropped, none twice.
    kb = 3 * 1024 + 5
    r = http.get(f"/apps/echo/pattern?kb={kb}&length={length}")
    assert r.status_code == 200
    assert len(r.content) == kb * 1024
    assert hashlib.sha256(r.content).digest() == hashlib.sha256(pattern_bytes(kb * 1024)).digest()


def test_big_download_streams_with_flat_memory(http: httpx.Client, nekzus: NekzusServer) -> None:
    assert nekzus.proc is not None
    proc = psutil.Process(nekzus.proc.pid)
    before = proc.memory_info().rss
    peak = before
    received = 0
    with http.stream("GET", "/apps/echo/big?mb=50") as r:
        assert r.headers["content-length"] == str(50 * 1024 * 1024)
        for i, chunk in enumerate(r.iter_bytes(1 << 20)):
            received += len(chunk)
            if i % 4 == 0:
                peak = max(peak, proc.memory_info().rss)
    assert received == 50 * 1024 * 1024
    # Nothing like the 50 MiB body was held in memory.
    assert peak - before < 20 * 1024 * 1024, (before, peak)


def test_loop_to_itself_is_508(make_server: Callable[..., NekzusServer]) -> None:
    srv = make_server({"health_checks": {"enabled": False}}, start=False)
    srv.config["routes"] = [{"id": "me", "path_base": "/apps/me/", "to": f"http://localhost:{srv.port}"}]
    srv.config_path.write_text(yaml.safe_dump(srv.config))
    srv.start()
    with srv.client() as c:
        r = c.get("/apps/me/")
        assert r.status_code == 508
        assert r.json()["error"]["code"] == "LOOP_DETECTED"
        # A route to Nekzus through another name is caught by the hop marker.
        c.put(
            "/api/v1/routes/me",
            json={"routeId": "me", "pathBase": "/apps/me/", "to": f"http://127.0.0.2:{srv.port}"},
        )


def test_response_cache_opt_in(http: httpx.Client, upstream: Upstream) -> None:
    # Counted as differences: a GET sent on a pooled keep-alive connection that the upstream closed at
    # that very moment is sent again on a fresh one, which the upstream may count twice.
    first = http.get("/apps/cache/cached")
    reached = upstream.hits["cached"]
    second = http.get("/apps/cache/cached")
    assert first.text == second.text
    assert second.headers.get("x-cache") == "HIT"
    assert upstream.hits["cached"] == reached  # answered from the cache
    r = http.get("/apps/cache/cached", headers={"If-None-Match": '"v1"'})
    assert r.status_code == 304
    assert upstream.hits["cached"] == reached
    # Requests carrying cookies are never served from or stored in the cache.
    http.get("/apps/cache/cached", headers={"Cookie": "s=1"})
    assert upstream.hits["cached"] > reached
    reached = upstream.hits["cached"]
    # Routes without `cache` never cache.
    http.get("/apps/echo/cached")
    http.get("/apps/echo/cached")
    assert upstream.hits["cached"] >= reached + 2
