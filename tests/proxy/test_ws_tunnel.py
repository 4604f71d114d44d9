"""Proxied WebSockets end to end: the byte tunnel between a real client, the real server and a real
`websockets` upstream (echo, fragments, large messages, subprotocols, refusals, closes from either side)."""

from __future__ import annotations

import asyncio
import queue
import socket
import ssl
import threading
from collections.abc import Iterator, Sequence

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from nekzus.certs.selfsigned import ensure_certificate
from tests.nekzus_server import NekzusServer, free_port


class WsUpstream:
    """A `websockets` server in a background thread; records how each connection ended."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.port = free_port()
        self.tls = tls
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.ended: queue.Queue[tuple[str, int | None]] = queue.Queue()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._stop: asyncio.Event | None = None

    def start(self) -> WsUpstream:
        self._thread.start()
        ready = asyncio.run_coroutine_threadsafe(self._serve_started(), self._loop)
        ready.result(10)
        return self

    async def _serve_started(self) -> None:
        self._stop = asyncio.Event()
        started = asyncio.Event()

        async def run() -> None:
            async with serve(
                self._handle,
                "127.0.0.1",
                self.port,
                select_subprotocol=self._subprotocol,
                process_request=self._refuse,
                max_size=None,
                compression=None,
                ping_interval=None,
                ssl=self.tls,
            ):
                started.set()
                assert self._stop is not None
                await self._stop.wait()

        self._task = asyncio.ensure_future(run())
        await started.wait()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stopped(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _stopped(self) -> None:
        assert self._stop is not None
        self._stop.set()
        await self._task

    @staticmethod
    def _subprotocol(_conn: ServerConnection, offered: Sequence[Subprotocol]) -> Subprotocol | None:
        """The upstream's preference among those offered (none offered: none)."""
        for mine in ("chat.v2", "chat.v1"):
            if mine in offered:
                return Subprotocol(mine)
        return None

    @staticmethod
    def _refuse(_conn: ServerConnection, request: Request) -> Response | None:
        if request.path.startswith("/refuse"):
            headers = Headers([("Content-Type", "text/plain"), ("X-Why", "test")])
            return Response(403, "Forbidden", headers, b"not for you")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        path = ws.request.path if ws.request is not None else ""
        try:
            async for message in ws:
                if message == "drop":
                    ws.transport.abort()
                    return
                if isinstance(message, str) and message.startswith("big:"):
                    await ws.send(b"y" * int(message[4:]))
                elif isinstance(message, str) and message.startswith("close:"):
                    await ws.close(int(message[6:]), "upstream says bye")
                    return
                elif message == "subprotocol?":
                    await ws.send(str(ws.subprotocol))
                else:
                    await ws.send(message)
        except ConnectionClosed:
            pass
        finally:
            await ws.wait_closed()
            rcvd = ws.protocol.close_rcvd
            received = rcvd.code if rcvd is not None else None
            self.ended.put((path, received))


@pytest.fixture(scope="module")
def ws_upstream() -> Iterator[WsUpstream]:
    up = WsUpstream().start()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def srv(ws_upstream: WsUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NekzusServer]:
    routes = [
        {
            "id": "tun",
            "app_id": "tun",
            "path_base": "/apps/tun/",
            "to": ws_upstream.url,
            "strip_prefix": True,
            "websockets": True,
        },
        {
            "id": "gone",
            "app_id": "gone",
            "path_base": "/apps/gone/",
            "to": f"http://127.0.0.1:{free_port()}",
            "websockets": True,
        },
    ]
    server = NekzusServer(
        {"routes": routes, "health_checks": {"enabled": False}},
        data_dir=tmp_path_factory.mktemp("ws-tunnel"),
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tls_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WsUpstream]:
    folder = tmp_path_factory.mktemp("ws-tls")
    cert, key = folder / "up.crt", folder / "up.key"
    ensure_certificate(cert, key, generated=False)  # self-signed: no public CA vouches for it
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    up = WsUpstream(tls=context).start()
    yield up
    up.stop()


def ended(up: WsUpstream, path: str) -> int | None:
    """How the upstream's connection for `path` ended (the close code it received)."""
    for _ in range(50):
        seen, code = up.ended.get(timeout=10)
        if seen == path:
            return code
    raise AssertionError(f"no end recorded for {path}")


def test_echo_text_binary_fragmented_and_large(srv: NekzusServer, ws_upstream: WsUpstream) -> None:
    async def run() -> None:
        async with connect(srv.ws_url + "/apps/tun/echo", max_size=None) as ws:
            for i in range(50):
                await ws.send(f"text {i} é")
                assert await ws.recv() == f"text {i} é"
                await ws.send(bytes([i]) * (i * 97))
                assert await ws.recv() == bytes([i]) * (i * 97)
            # A fragmented message is passed on frame by frame and arrives whole.
            await ws.send(["frag", "ment", "ed"])
            assert await ws.recv() == "fragmented"
            await ws.send([b"\x00" * 70_000, b"\x01" * 70_000])
            assert await ws.recv() == b"\x00" * 70_000 + b"\x01" * 70_000
            # Large frames both ways (64-bit lengths); the client's message at the server's 1 MiB limit.
            await ws.send(b"z" * (1 << 20))
            assert await ws.recv() == b"z" * (1 << 20)
            await ws.send(f"big:{8 << 20}")
            assert await ws.recv() == b"y" * (8 << 20)
            await ws.send("after")
            assert await ws.recv() == "after"
        assert ended(ws_upstream, "/echo") == 1000

    asyncio.run(asyncio.wait_for(run(), 60))
    # Messages are counted per route and direction from the frame headers (fragments count once).
    with srv.client() as c:
        metrics = c.get("/metrics").text
    counted = {
        direction: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        for direction in ("in", "out")
        if line.startswith("nekzus_websocket_messages_total")
        and 'app_id="tun"' in line
        and f'direction="{direction}"' in line
    }
    assert counted["in"] >= 105 and counted["out"] >= 105


def test_client_message_over_the_limit_closes_with_1009(srv: NekzusServer, ws_upstream: WsUpstream) -> None:
    async def run() -> None:
        async with connect(srv.ws_url + "/apps/tun/toobig", max_size=None) as ws:
            await ws.send(b"q" * ((1 << 20) + 1))
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 1009
        assert ended(ws_upstream, "/toobig") == 1009

    asyncio.run(asyncio.wait_for(run(), 30))


def test_subprotocol_negotiation(srv: NekzusServer) -> None:
    async def run() -> None:
        url = srv.ws_url + "/apps/tun/sub"
        for offered, chosen in (
            (["chat.v1"], "chat.v1"),
            (["chat.v1", "chat.v2"], "chat.v2"),  # the upstream's preference wins
            ([], None),
        ):
            async with connect(url, subprotocols=[Subprotocol(p) for p in offered] or None) as ws:
                assert ws.subprotocol == chosen
                await ws.send("subprotocol?")
                assert await ws.recv() == str(chosen)

    asyncio.run(asyncio.wait_for(run(), 30))


def test_upstream_refusal_is_forwarded(srv: NekzusServer) -> None:
    async def run() -> None:
        with pytest.raises(InvalidStatus) as info:
            async with connect(srv.ws_url + "/apps/tun/refuse"):
                pass
        response = info.value.response
        assert response.status_code == 403
        assert response.body == b"not for you"
        assert response.headers["X-Why"] == "test"
        assert response.headers["X-API-Version"] == "v1"
        with pytest.raises(InvalidStatus) as dead:
            async with connect(srv.ws_url + "/apps/gone/x"):
                pass
        assert dead.value.response.status_code == 502
        assert b'"BAD_GATEWAY"' in dead.value.response.body

    asyncio.run(asyncio.wait_for(run(), 30))


def test_closes_propagate_both_ways(srv: NekzusServer, ws_upstream: WsUpstream) -> None:
    async def run() -> None:
        # The upstream closes: its code reaches the client.
        async with connect(srv.ws_url + "/apps/tun/upclose") as ws:
            await ws.send("close:4001")
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 4001
        assert ended(ws_upstream, "/upclose") == 4001  # the client echoed it, through the tunnel
        # The client closes: its code reaches the upstream.
        async with connect(srv.ws_url + "/apps/tun/clientclose") as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"
            await ws.close(4002, "client says bye")
        assert ended(ws_upstream, "/clientclose") == 4002
        # The upstream vanishes without a close frame: the client gets 1011.
        async with connect(srv.ws_url + "/apps/tun/drop") as ws:
            await ws.send("drop")
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 1011

    asyncio.run(asyncio.wait_for(run(), 30))


def test_client_abort_closes_the_upstream(srv: NekzusServer, ws_upstream: WsUpstream) -> None:
    async def run() -> None:
        async with connect(srv.ws_url + "/apps/tun/abort") as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"
            sock = ws.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            ws.transport.abort()  # a reset, no close frame

    asyncio.run(asyncio.wait_for(run(), 30))
    # The proxy tells the upstream the client went away (a normal close) and drops the connection.
    assert ended(ws_upstream, "/abort") == 1000


def test_server_shutdown_closes_open_tunnels_with_1012(
    ws_upstream: WsUpstream, tmp_path_factory: pytest.TempPathFactory
) -> None:
    route = {"id": "t", "app_id": "t", "path_base": "/apps/t/", "to": ws_upstream.url, "websockets": True}
    server = NekzusServer(
        {"routes": [route], "health_checks": {"enabled": False}},
        data_dir=tmp_path_factory.mktemp("ws-tunnel-shutdown"),
    ).start()

    async def run() -> None:
        try:
            async with connect(server.ws_url + "/apps/t/shutdown") as ws:
                await ws.send("hi")
                assert await ws.recv() == "hi"
                stopping = asyncio.get_running_loop().run_in_executor(None, server.stop)
                with pytest.raises(ConnectionClosed) as info:
                    await ws.recv()
                assert info.value.rcvd is not None and info.value.rcvd.code == 1012
                assert await stopping == 0
        finally:
            server.stop()

    asyncio.run(asyncio.wait_for(run(), 60))
    assert ended(ws_upstream, "/apps/t/shutdown") == 1012


def test_tls_upstream_honours_the_routes_verify_option(
    tls_upstream: WsUpstream, tmp_path_factory: pytest.TempPathFactory
) -> None:
    routes = [
        {"id": "v", "app_id": "v", "path_base": "/apps/v/", "to": tls_upstream.url, "websockets": True},
        {
            "id": "s",
            "app_id": "s",
            "path_base": "/apps/s/",
            "to": tls_upstream.url,
            "websockets": True,
            "tls_skip_verify": True,
        },
    ]
    server = NekzusServer(
        {"routes": routes, "health_checks": {"enabled": False}},
        data_dir=tmp_path_factory.mktemp("ws-tunnel-tls"),
    ).start()

    async def run() -> None:
        # Verified by default: a self-signed upstream certificate is refused (502), never tunnelled.
        with pytest.raises(InvalidStatus) as info:
            async with connect(server.ws_url + "/apps/v/x"):
                pass
        assert info.value.response.status_code == 502
        # The route opts out of verification: wss to the upstream, plain text to the client.
        async with connect(server.ws_url + "/apps/s/x") as ws:
            await ws.send("over tls")
            assert await ws.recv() == "over tls"

    try:
        asyncio.run(asyncio.wait_for(run(), 60))
    finally:
        server.stop()
