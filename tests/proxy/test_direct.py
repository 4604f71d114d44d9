"""The proxy's direct path (plain GETs answered from protocol callbacks) against a raw upstream whose
bytes the test chooses: framing, keep-alive, pipelining and the hand-over to the streaming path."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.nekzus_server import NekzusServer
from tests.waiting import wait_until

# The same body, chunked, written by the upstream in one piece: the direct path gets it whole.
CHUNKED = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
)


HUGE = 64 * 1024 * 1024


def _answer(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n%s\r\n%s" % (
        len(body),
        extra,
        body,
    )


class RawUpstream:
    """An asyncio server on 127.0.0.1 answering each request head by its path.

    `/chunked`: a chunked body in one write; `/echo/X`: body X; `/once`: answers the first request of
    a connection and closes the connection when a second one arrives on it (a stale keep-alive); `/big`:
    200 KiB, relayed by the proxy; `/stall`: announces 200,000 bytes, sends 1,000 and stops; `/huge`:
    64 MiB in 64 KiB pieces, counting what the proxy took (`written`) and whether it went away
    (`dropped`)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.connections = 0
        self.port = 0
        self.written = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> RawUpstream:
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._serve(), self.loop).result(10)
        return self

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    async def _serve(self) -> int:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port: int = server.sockets[0].getsockname()[1]
        return port

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0
        try:
            for _ in range(1000):
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1]
                served += 1
                if path == b"/chunked":
                    writer.write(CHUNKED)
                elif path.startswith(b"/echo/"):
                    writer.write(_answer(path[len(b"/echo/") :]))
                elif path == b"/once":
                    if served > 1:
                        break
                    writer.write(_answer(b"first"))
                elif path == b"/big":
                    writer.write(_answer(b"x" * (200 * 1024)))
                elif path == b"/stall":
                    writer.write(_answer(b"s" * 1000)[:-1000].replace(b"1000", b"200000") + b"s" * 1000)
                    await writer.drain()
                    await reader.read()  # until the proxy gives up on this connection
                    break
                elif path == b"/huge":
                    await self._huge(writer)
                else:
                    writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _huge(self, writer: asyncio.StreamWriter) -> None:
        self.written = 0
        piece = b"h" * 65536
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % HUGE)
        try:
            for _ in range(HUGE // len(piece)):
                writer.write(piece)
                await writer.drain()
                self.written += len(piece)
        except ConnectionError:
            self.dropped += 1
            raise


@pytest.fixture(scope="module")
def upstream() -> Iterator[RawUpstream]:
    up = RawUpstream().start()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def nekzus(upstream: RawUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NekzusServer]:
    srv = NekzusServer(
        {"routes": _routes(upstream), "health_checks": {"enabled": False}},
        data_dir=tmp_path_factory.mktemp("proxy-direct"),
        env={"NEKZUS_PROXY_IDLE_TIMEOUT": "1"},
    )
    srv.start()
    yield srv
    srv.stop()


def _routes(upstream: RawUpstream) -> list[dict[str, object]]:
    """`/apps/raw/` (public) and `/apps/private/` (credential needed) to the raw upstream."""
    route: dict[str, object] = {
        "id": "raw",
        "app_id": "raw",
        "path_base": "/apps/raw/",
        "to": f"http://127.0.0.1:{upstream.port}",
        "strip_prefix": True,
        "public_access": True,
        "skip_health_check": True,
    }
    private = {**route, "id": "private", "app_id": "private", "path_base": "/apps/private/"}
    del private["public_access"]
    return [route, private]


def _exchange(port: int, data: bytes, responses: int) -> list[bytes]:
    """Send `data` on one connection and read `responses` complete (Content-Length framed) responses."""
    out: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        buffer = b""
        for _ in range(responses):
            head, buffer = _read_head(sock, buffer)
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(buffer) < length:
                piece = sock.recv(65536)
                assert piece, "connection closed inside a body"
                buffer += piece
            out.append(head + b"\r\n\r\n" + buffer[:length])
            buffer = buffer[length:]
    return out


def test_a_chunked_answer_that_arrived_whole_is_sent_with_its_length(nekzus: NekzusServer) -> None:
    with nekzus.client() as http:
        assert http.get("/apps/raw/echo/warm").status_code == 200  # opens a pooled upstream connection
        for _ in range(3):
            r = http.get("/apps/raw/chunked")
            assert r.status_code == 200
            assert r.content == b"hello world"
            assert r.headers["content-length"] == "11"
            assert "transfer-encoding" not in r.headers
            assert r.headers["x-request-id"]


def test_pipelined_requests_are_answered_in_order(nekzus: NekzusServer) -> None:
    with nekzus.client() as http:  # an idle upstream connection in the pool
        assert http.get("/apps/raw/echo/warm").status_code == 200
    names = [b"one", b"two", b"three", b"four"]
    data = b"".join(b"GET /apps/raw/echo/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % n for n in names)
    answers = _exchange(nekzus.port, data, len(names))
    assert [a.rpartition(b"\r\n\r\n")[2] for a in answers] == names
    assert all(a.startswith(b"HTTP/1.1 200 ") for a in answers)


def test_connection_close_is_honoured(nekzus: NekzusServer) -> None:
    with nekzus.client() as http:
        assert http.get("/apps/raw/echo/warm").status_code == 200
    with socket.create_connection(("127.0.0.1", nekzus.port), timeout=10) as sock:
        sock.sendall(b"GET /apps/raw/echo/bye HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        received = b""
        for _ in range(100):
            piece = sock.recv(65536)
            if not piece:
                break  # the server closed the connection after answering
            received += piece
        else:
            pytest.fail("the connection stayed open")
    head, _, body = received.partition(b"\r\n\r\n")
    assert body == b"bye"
    assert b"\r\nconnection: close" in head.lower()


def test_a_stale_pooled_connection_is_retried_on_a_fresh_one(
    nekzus: NekzusServer, upstream: RawUpstream
) -> None:
    with nekzus.client() as http:
        assert http.get("/apps/raw/once").text == "first"
        before = upstream.connections
        # The pooled connection is closed by the upstream when this request arrives on it.
        r = http.get("/apps/raw/once")
        assert r.status_code == 200
        assert r.text == "first"
        assert upstream.connections == before + 1


def test_a_long_answer_is_streamed_whole(nekzus: NekzusServer) -> None:
    with nekzus.client() as http:
        for _ in range(2):
            r = http.get("/apps/raw/big")
            assert r.status_code == 200
            assert r.content == b"x" * (200 * 1024)


def test_a_refusal_is_answered_in_the_error_shape_and_keeps_the_connection(nekzus: NekzusServer) -> None:
    with nekzus.client() as http:
        assert http.get("/apps/private/echo/warm").status_code == 200  # local network, no credential
        r = http.get("/apps/private/echo/x", headers={"Authorization": "Bearer not.a.token"})
        assert r.status_code == 401
        assert r.json()["code"] == "UNAUTHORIZED"
        assert r.headers["x-request-id"]
        assert r.headers["content-length"] == str(len(r.content))
        assert http.get("/apps/private/echo/again").text == "again"  # same keep-alive connection


def _read_head(sock: socket.socket, buffer: bytes = b"") -> tuple[bytes, bytes]:
    """The next response head, and what was read after it."""
    while b"\r\n\r\n" not in buffer:
        piece = sock.recv(65536)
        assert piece, f"connection closed before a response head: {buffer!r}"
        buffer += piece
    head, _, rest = buffer.partition(b"\r\n\r\n")
    return head, rest


def _wait_steady(read: Callable[[], int]) -> int:
    """Wait until `read()` gives the same value for 10 polls in a row (~0.5 s) and return it."""
    seen: list[int] = []

    def steady() -> bool:
        seen.append(read())
        return len(seen) >= 10 and len(set(seen[-10:])) == 1

    wait_until(steady, timeout=20, what="the upstream's writes to stop")
    return seen[-1]


def _active_sessions(nekzus: NekzusServer) -> float:
    with nekzus.client() as http:
        text = http.get("/metrics").text
    for line in text.splitlines():
        if line.startswith("nekzus_proxy_active_sessions "):
            return float(line.split()[1])
    raise AssertionError("nekzus_proxy_active_sessions is not exported")


def _warm(nekzus: NekzusServer) -> None:
    with nekzus.client() as http:  # leaves an idle upstream connection in the pool
        assert http.get("/apps/raw/echo/warm").status_code == 200


def test_an_upstream_stalling_mid_body_is_cut_off_after_the_idle_timeout(nekzus: NekzusServer) -> None:
    _warm(nekzus)
    with socket.create_connection(("127.0.0.1", nekzus.port), timeout=15) as sock:
        sock.sendall(b"GET /apps/raw/stall HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head, body = _read_head(sock)
        assert head.startswith(b"HTTP/1.1 200 ")
        assert b"content-length: 200000" in head.lower()
        for _ in range(1000):  # until the proxy closes the connection (idle timeout: 1 s)
            piece = sock.recv(65536)
            if not piece:
                break
            body += piece
        assert body == b"s" * 1000  # what the upstream sent, then the cut
    with nekzus.client() as http:
        assert http.get("/apps/raw/echo/after").text == "after"


def test_a_client_that_stops_reading_holds_the_upstream_back(
    nekzus: NekzusServer, upstream: RawUpstream
) -> None:
    _warm(nekzus)
    with socket.create_connection(("127.0.0.1", nekzus.port), timeout=30) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(b"GET /apps/raw/huge HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head, body = _read_head(sock)
        assert head.startswith(b"HTTP/1.1 200 ")
        received = len(body)
        # Not reading: the upstream's writes stop once the socket buffers on both sides are full.
        _wait_steady(lambda: upstream.written)
        assert upstream.written < HUGE // 4, upstream.written
        assert _active_sessions(nekzus) == 1  # this download, still in flight
        while received < HUGE:
            piece = sock.recv(1 << 20)
            assert piece, f"cut after {received} bytes"
            received += len(piece)
    assert received == HUGE
    wait_until(lambda: _active_sessions(nekzus) == 0, timeout=10, what="the download to end")


def test_a_client_leaving_mid_body_drops_the_upstream_connection(
    nekzus: NekzusServer, upstream: RawUpstream
) -> None:
    _warm(nekzus)
    dropped = upstream.dropped
    with socket.create_connection(("127.0.0.1", nekzus.port), timeout=30) as sock:
        sock.sendall(b"GET /apps/raw/huge HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head, _ = _read_head(sock)
        assert head.startswith(b"HTTP/1.1 200 ")
    wait_until(lambda: upstream.dropped > dropped, timeout=10, what="the upstream connection dropped")
    with nekzus.client() as http:
        assert http.get("/apps/raw/echo/still").text == "still"


def test_many_pipelined_refusals_are_all_answered_in_order(nekzus: NekzusServer) -> None:
    # Each refusal is answered at once, which starts the next queued request: they must not nest.
    count = 500
    one = (
        b"GET /apps/private/echo/%d HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer not.a.token\r\n\r\n"
    )
    # Behind a request that waits for the upstream, so the refusals queue up until it is answered.
    first = b"GET /apps/raw/echo/first HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    data = first + b"".join(one % i for i in range(count))
    answers = _exchange(nekzus.port, data, count + 1)
    assert answers[0].endswith(b"\r\n\r\nfirst")
    assert all(a.startswith(b"HTTP/1.1 401 ") for a in answers[1:])
    with nekzus.client() as http:
        assert http.get("/apps/raw/echo/alive").text == "alive"


def test_direct_answers_and_relays_over_tls(upstream: RawUpstream, tmp_path: Path) -> None:
    config = {"routes": _routes(upstream), "health_checks": {"enabled": False}}
    with NekzusServer(config, tls=True, data_dir=tmp_path) as srv, srv.client() as https:
        assert https.get("/apps/raw/echo/warm").text == "warm"
        r = https.get("/apps/raw/chunked")  # answered whole: the length is Nekzus' own
        assert (r.content, r.headers["content-length"]) == (b"hello world", "11")
        assert "strict-transport-security" in r.headers
        assert https.get("/apps/raw/big").content == b"x" * (200 * 1024)  # relayed
        assert https.get("/apps/private/echo/x", headers={"Authorization": "Bearer a.b.c"}).status_code == 401
