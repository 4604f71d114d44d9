"""The WebSocket byte tunnel's own rules, in process over real loopback sockets: frame boundaries from
headers only, closes never inside a frame, and back-pressure instead of unbounded buffering."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from nekzus.http.protocol import valid_websocket_key
from nekzus.proxy.tunnel import HIGH_WATER, FrameScanner, Tunnel, close_frame


def frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = False) -> bytes:
    first = (0x80 if fin else 0) | opcode
    mask_bit = 0x80 if masked else 0
    size = len(payload)
    if size < 126:
        head = bytes((first, mask_bit | size))
    elif size < 65536:
        head = bytes((first, mask_bit | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((first, mask_bit | 127)) + size.to_bytes(8, "big")
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def stream(masked: bool) -> bytes:
    return b"".join(
        [
            frame(1, b"hello", masked=masked),
            frame(2, b"\x00" * 126, masked=masked),
            frame(1, b"a" * 200, fin=False, masked=masked),
            frame(9, b"ping", masked=masked),  # a control frame between fragments
            frame(0, b"b" * 70_000, fin=False, masked=masked),
            frame(0, b"", fin=True, masked=masked),
            frame(2, b"c" * 65_535, masked=masked),
            frame(8, (1000).to_bytes(2, "big"), masked=masked),
        ]
    )


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("step", [1, 2, 3, 7, 13, 1000, 65_536, 1 << 20])
def test_scanner_passes_everything_and_counts_messages_whatever_the_reads(step: int, masked: bool) -> None:
    data = stream(masked)
    scanner = FrameScanner(limit=1 << 20, masked=masked)
    out = b"".join(scanner.feed(data[i : i + step]) for i in range(0, len(data), step))
    assert out == data
    assert scanner.messages == 4  # text, binary, the fragmented one, binary; pings and closes are not
    assert scanner.close_seen and scanner.at_boundary and not scanner.violation


@pytest.mark.parametrize(
    "bad",
    [
        frame(1, b"unmasked from a client"),
        bytes((0xC1, 0x80)) + b"\x00" * 4,  # RSV1 without a negotiated extension
        frame(3, b"", masked=True),  # reserved opcode
        frame(0, b"continuation of nothing", masked=True),
        frame(9, b"p" * 126, masked=True),  # control frame over 125 bytes
        frame(9, b"p", fin=False, masked=True),  # fragmented control frame
    ],
)
def test_scanner_stops_before_a_malformed_client_frame(bad: bytes) -> None:
    scanner = FrameScanner(limit=1 << 20, masked=True)
    good = frame(1, b"fine", masked=True)
    assert scanner.feed(good + bad + good) == good
    assert scanner.violation == 1002 and scanner.at_boundary


def test_scanner_holds_a_cut_header_until_it_is_whole() -> None:
    scanner = FrameScanner(limit=1 << 20)
    data = frame(2, b"x" * 70_000)
    assert scanner.feed(data[:5]) == b""  # 10-byte header incomplete: nothing passes yet
    assert scanner.at_boundary
    assert scanner.feed(data[5:20]) == data[:20]
    assert not scanner.at_boundary
    assert scanner.feed(data[20:]) == data[20:]
    assert scanner.at_boundary and scanner.messages == 1


def test_scanner_stops_before_the_frame_that_breaks_the_cap() -> None:
    scanner = FrameScanner(limit=100)
    first = frame(1, b"a" * 60, fin=False)
    data = first + frame(0, b"b" * 41) + frame(1, b"later")
    assert scanner.feed(data) == first  # 60 + 41 > 100: the second fragment's header never passes
    assert scanner.violation == 1009 and scanner.at_boundary
    assert FrameScanner(limit=101).feed(data) == data


def test_close_frames() -> None:
    assert close_frame(1008, "credential revoked", masked=False) == b"\x88\x14\x03\xf0credential revoked"
    masked = close_frame(1000, masked=True)
    assert masked[:2] == b"\x88\x82"
    key = masked[2:6]
    assert bytes(b ^ key[i % 4] for i, b in enumerate(masked[6:])) == b"\x03\xe8"


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        near = socket.create_connection(listener.getsockname())
        far, _ = listener.accept()
    near.setblocking(False)
    far.setblocking(False)
    return near, far


class _Placeholder(asyncio.Protocol):
    pass


async def _tunnel() -> tuple[
    Tunnel, asyncio.StreamReader, asyncio.StreamWriter, asyncio.StreamReader, asyncio.StreamWriter
]:
    """A tunnel between a client and an upstream, each a stream on the far end of a loopback connection."""
    loop = asyncio.get_running_loop()
    client_near, client_far = _tcp_pair()
    up_near, up_far = _tcp_pair()
    client_transport, _ = await loop.create_connection(_Placeholder, sock=client_near)
    up_transport, _ = await loop.create_connection(_Placeholder, sock=up_near)
    tunnel = Tunnel(loop, client_limit=1 << 20, upstream_limit=1 << 20)

    def attach(protocol: asyncio.Protocol) -> bytes:
        client_transport.set_protocol(protocol)
        return b""

    tunnel.start(client_transport, attach, up_transport, b"")
    client_reader, client_writer = await asyncio.open_connection(sock=client_far)
    up_reader, up_writer = await asyncio.open_connection(sock=up_far)
    return tunnel, client_reader, client_writer, up_reader, up_writer


def test_a_close_from_nekzus_waits_for_the_end_of_the_frame_in_flight() -> None:
    async def run() -> None:
        tunnel, client_r, client_w, up_r, up_w = await _tunnel()
        big = frame(2, b"p" * 100_000)
        up_w.write(big[:30_000])
        await up_w.drain()
        assert len(await client_r.readexactly(20_000)) == 20_000
        tunnel.close(1008, "credential revoked")  # mid-frame: revocation
        # The upstream gets a (masked) close at once and the connection ends.
        assert (await up_r.readexactly(2))[0] == 0x88
        up_w.write(big[30_000:] + frame(1, b"never delivered"))
        await up_w.drain()
        # The client gets the whole frame, then the close frame, and nothing after it.
        rest = await client_r.readexactly(len(big) - 20_000)
        assert rest == big[20_000:]
        expected = close_frame(1008, "credential revoked", masked=False)
        assert await client_r.readexactly(len(expected)) == expected
        client_w.write(frame(8, (1008).to_bytes(2, "big"), masked=True))  # the client answers the close
        await client_w.drain()
        assert await client_r.read() == b""
        await asyncio.wait_for(tunnel.done, 5)
        assert tunnel.close_code == 1008
        client_w.close()
        up_w.close()

    asyncio.run(asyncio.wait_for(run(), 30))


def test_a_slow_reader_pauses_the_upstream_instead_of_filling_memory() -> None:
    async def run() -> None:
        tunnel, client_r, client_w, _up_r, up_w = await _tunnel()
        message = frame(2, b"m" * 65_000)
        total = 1024  # 64 MiB, far more than the socket buffers and the tunnel's high-water mark hold

        async def flood() -> None:
            for _ in range(total):
                up_w.write(message)
                await up_w.drain()

        writer = asyncio.ensure_future(flood())
        client_transport = tunnel.client.transport
        assert client_transport is not None
        largest = 0
        # The client reads nothing: the tunnel must stop reading the upstream (bounded number of turns).
        for _ in range(200_000):
            await asyncio.sleep(0)
            largest = max(largest, client_transport.get_write_buffer_size())
            if tunnel.upstream.reading_paused:
                break
        assert tunnel.upstream.reading_paused
        # One read more than the high-water mark at most is held, whatever the upstream still wants to send.
        for _ in range(2_000):
            await asyncio.sleep(0)
            largest = max(largest, client_transport.get_write_buffer_size())
        assert not writer.done()
        assert largest <= HIGH_WATER + 256 * 1024
        # A reader that catches up gets every byte, in order.
        received = 0
        while received < total * len(message):
            chunk = await client_r.read(1 << 20)
            assert chunk
            received += len(chunk)
            largest = max(largest, client_transport.get_write_buffer_size())
        await asyncio.wait_for(writer, 10)
        assert received == total * len(message)
        assert tunnel.upstream.scanner.messages == total
        assert largest <= HIGH_WATER + 256 * 1024
        client_w.close()
        up_w.close()
        await asyncio.wait_for(tunnel.done, 10)

    asyncio.run(asyncio.wait_for(run(), 60))


def test_a_malformed_client_frame_closes_both_sides_with_1002() -> None:
    async def run() -> None:
        tunnel, client_r, client_w, up_r, up_w = await _tunnel()
        passed = frame(1, b"ok", masked=True)
        client_w.write(passed + frame(1, b"not masked"))
        await client_w.drain()
        assert await up_r.readexactly(len(passed)) == passed  # the good frame, as the client masked it
        # The upstream is told (a masked close with the same code), then the connection ends.
        close = await up_r.read()
        assert close[:2] == b"\x88\x82" and len(close) == 8
        expected = close_frame(1002, "protocol error", masked=False)
        assert await client_r.readexactly(len(expected)) == expected
        client_w.write(frame(8, (1002).to_bytes(2, "big"), masked=True))
        await client_w.drain()
        assert await client_r.read() == b""
        await asyncio.wait_for(tunnel.done, 5)
        up_w.close()
        client_w.close()

    asyncio.run(asyncio.wait_for(run(), 30))


def test_only_well_formed_handshakes_are_tunnelled() -> None:
    key = (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ==")
    assert valid_websocket_key([key, (b"sec-websocket-version", b"13")])
    # Anything else is left to the server's own WebSocket protocol, which answers 400.
    assert not valid_websocket_key([key, (b"sec-websocket-version", b"8")])
    assert not valid_websocket_key([key, key, (b"sec-websocket-version", b"13")])
    version = (b"sec-websocket-version", b"13")
    assert not valid_websocket_key([(b"sec-websocket-key", b"c2hvcnQ="), version])  # 5 bytes, not 16
    assert not valid_websocket_key([(b"sec-websocket-key", b"not base64!"), version])
