"""The byte tunnel behind a proxied WebSocket, once both handshakes are done.

Frames are passed through as they arrive, in both directions, without decoding them: the client's frames
stay masked as the client masked them, the upstream's stay as the upstream framed them. Each direction
reads only frame headers (2-14 bytes per frame, `FrameScanner`), which is enough to

- know where a frame ends, so a close frame Nekzus adds (revocation, shutdown, a message over the cap, the
  upstream vanishing) is never spliced into the middle of another frame;
- count messages for the per-route metrics;
- cap message sizes: a data frame that would take a message past the cap is not forwarded and the
  tunnel closes with 1009 (message too big), as a decoding relay would.

Back-pressure: when one side's socket cannot take more (its transport calls `pause_writing`), reading
from the other side pauses until it drains, so a slow reader never makes the proxy buffer without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable
from typing import Any

CLOSE_TIMEOUT = 5.0  # how long a closing side may take to finish its frame or answer our close
HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024

# A peer silent this long is probed (TCP keepalive); one that stops answering is dropped within a minute.
KEEPALIVE_IDLE = 30
KEEPALIVE_INTERVAL = 10
KEEPALIVE_PROBES = 3

OP_CLOSE = 8


class FrameScanner:
    """Follows one direction's frame boundaries from the frame headers alone.

    It also checks what a header shows: masking as RFC 6455 requires for the direction (clients mask,
    servers do not), no reserved bits (no extension is negotiated) or opcodes, control frames small and
    unfragmented, continuations only inside a fragmented message. A bad header is a protocol error (1002)
    and, like a message over the cap (1009), stops the direction before that frame."""

    __slots__ = (
        "close_seen",
        "fragmented",
        "limit",
        "mask",
        "message_bytes",
        "messages",
        "partial",
        "remaining",
        "violation",
    )

    def __init__(self, limit: int, *, masked: bool = False) -> None:
        self.limit = limit  # largest message allowed, in payload bytes
        self.mask = 0x80 if masked else 0  # the mask bit every frame of this direction must carry
        self.remaining = 0  # bytes of the current frame not yet seen (0: at a frame boundary)
        self.partial = b""  # a frame header cut by the read, held back until complete
        self.fragmented = False  # inside a message whose first frame had no FIN
        self.message_bytes = 0  # payload so far of the unfinished fragmented message
        self.messages = 0  # complete data messages seen
        self.close_seen = False
        self.violation = 0  # the close code for the first bad frame (1009 too big, 1002 malformed)

    @property
    def violated(self) -> bool:
        return self.violation != 0

    @property
    def at_boundary(self) -> bool:
        """Whether what was passed on so far ends with a whole frame (after a bad frame, nothing from its
        header on was passed on)."""
        return self.remaining == 0 or self.violation != 0

    def feed(self, data: bytes) -> bytes:
        """The part of `data` that may be passed on: all of it, except a held incomplete frame header and,
        from a bad frame on, everything from that frame's header (`violation` is set)."""
        remaining = self.remaining
        size = len(data)
        if remaining >= size and not self.partial:
            self.remaining = remaining - size  # inside one frame's payload: the common case for big frames
            return data
        if self.partial:
            data = self.partial + data
            size = len(data)
            self.partial = b""
        pos = remaining
        cut = -1
        while pos < size:
            if size - pos < 2:
                break
            first = data[pos]
            second = data[pos + 1]
            length = second & 0x7F
            head = 2
            if length == 126:
                head = 4
            elif length == 127:
                head = 10
            if second & 0x80:
                head += 4
            if size - pos < head:
                break
            if length == 126:
                length = int.from_bytes(data[pos + 2 : pos + 4], "big")
            elif length == 127:
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
            opcode = first & 0x0F
            fin = first & 0x80
            bad = 0
            if first & 0x70 or (second & 0x80) != self.mask:
                bad = 1002
            elif opcode < OP_CLOSE:
                if opcode > 2 or (opcode == 0) != self.fragmented:
                    bad = 1002
                total = self.message_bytes + length if opcode == 0 else length
                if total > self.limit:
                    bad = bad or 1009
                if fin:
                    self.messages += 1
                    self.message_bytes = 0
                    self.fragmented = False
                else:
                    self.message_bytes = total
                    self.fragmented = True
            elif opcode > 10 or length > 125 or not fin:
                bad = 1002
            elif opcode == OP_CLOSE:
                self.close_seen = True
            if bad and not self.violation:
                self.violation = bad
                cut = pos
            pos += head + length
        end = size
        if pos < size:
            self.partial = data[pos:]
            self.remaining = 0
            end = pos
        else:
            self.remaining = pos - size
        if cut >= 0:
            return data[:cut]
        return data if end == size else data[:end]


def close_frame(code: int, reason: str = "", *, masked: bool) -> bytes:
    """A close frame; a client's (to the upstream) must be masked."""
    payload = code.to_bytes(2, "big") + reason.encode("utf-8")[:123]
    if not masked:
        return bytes((0x88, len(payload))) + payload
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes((0x88, 0x80 | len(payload))) + mask + body


class _Side(asyncio.Protocol):
    """One end of the tunnel: what it reads is scanned and written to the other end."""

    def __init__(self, tunnel: Tunnel, limit: int, *, upstream: bool) -> None:
        self.tunnel = tunnel
        self.scanner = FrameScanner(limit, masked=not upstream)
        self.upstream = upstream
        self.transport: asyncio.Transport | None = None
        self.peer: _Side = self
        self.closed = False
        self.reading_paused = False
        self.forwarded = 0  # bytes passed on
        self.counted = 0
        self.counter: Any = None  # the route's message counter for this direction
        self.discard = False  # closing: what still arrives is only scanned (for the close reply)

    def bind(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        with contextlib.suppress(OSError, AttributeError):
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                # Nekzus sends no pings of its own through the tunnel: the kernel finds dead peers instead.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_PROBES)
        transport.set_write_buffer_limits(high=HIGH_WATER, low=LOW_WATER)

    def data_received(self, data: bytes) -> None:
        scanner = self.scanner
        tunnel = self.tunnel
        if self.upstream and tunnel.pending is not None:
            # A close waits for the end of the frame being passed on: only the rest of it goes through.
            rest = scanner.remaining
            out = scanner.feed(data[:rest] if rest < len(data) else data)
            self.peer.write(out)
            tunnel.frame_passed()
            return
        out = scanner.feed(data)
        if scanner.messages != self.counted:
            if self.counter is not None:
                self.counter.inc(scanner.messages - self.counted)
            self.counted = scanner.messages
        if self.discard:
            if scanner.close_seen:
                self.close()
            return
        if out:
            self.forwarded += len(out)
            self.peer.write(out)
        if scanner.violation:
            self.discard = True
            code = scanner.violation
            tunnel.close(code, "message too big" if code == 1009 else "protocol error", upstream_code=code)

    def eof_received(self) -> bool | None:
        return None  # the transport closes; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.tunnel.side_lost(self)

    # The other side's reading follows this side's write buffer.
    def pause_writing(self) -> None:
        peer = self.peer
        if peer.transport is not None and not peer.closed and not peer.reading_paused:
            peer.reading_paused = True
            peer.transport.pause_reading()

    def resume_writing(self) -> None:
        peer = self.peer
        if peer.transport is not None and not peer.closed and peer.reading_paused:
            peer.reading_paused = False
            peer.transport.resume_reading()

    def write(self, data: bytes) -> None:
        transport = self.transport
        if data and transport is not None and not self.closed and not transport.is_closing():
            transport.write(data)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()


class Tunnel:
    """Both sides of one proxied WebSocket after the handshake; `done` resolves when both are closed.

    `client_limit` / `upstream_limit` cap one message from each side. `close(code, reason)` ends the
    tunnel from Nekzus' side (revocation, shutdown): the client gets a close frame with that code at the
    next frame boundary of what the upstream sends, the upstream a close frame, and both connections close.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, *, client_limit: int, upstream_limit: int) -> None:
        self.loop = loop
        self.client = _Side(self, client_limit, upstream=False)
        self.upstream = _Side(self, upstream_limit, upstream=True)
        self.client.peer = self.upstream
        self.upstream.peer = self.client
        self.done: asyncio.Future[None] = loop.create_future()
        self.closing = False
        self.close_code: int | None = None  # the code Nekzus closed the client with, if it did
        self.pending: tuple[int, str] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def start(
        self,
        client: asyncio.Transport,
        attach_client: Callable[[asyncio.Protocol], bytes],
        upstream: asyncio.Transport,
        upstream_early: bytes,
    ) -> None:
        """Begin splicing: `attach_client` hands the client connection to this tunnel (returning what the
        client already sent); `upstream_early` is what the upstream sent right after its 101 head."""
        self.client.bind(client)
        self.upstream.bind(upstream)
        upstream.set_protocol(self.upstream)
        early = attach_client(self.client)
        if upstream_early:
            self.upstream.data_received(upstream_early)
        if early:
            self.client.data_received(early)
        for side, transport in ((self.client, client), (self.upstream, upstream)):
            if transport.is_closing() and not side.closed:
                side.closed = True
                self.side_lost(side)
        if not upstream.is_closing() and not self.upstream.reading_paused:
            upstream.resume_reading()  # paused while the handshake held early frames

    # -- ending ---------------------------------------------------------------------------------------

    def close(self, code: int, reason: str = "", upstream_code: int = 1000) -> None:
        """Close from Nekzus' side: `code` to the client, `upstream_code` to the upstream, each at a frame
        boundary; gives up (drops both connections) after CLOSE_TIMEOUT."""
        if self.closing or self.done.done():
            return
        self.closing = True
        client, up = self.client, self.upstream
        client.discard = True  # nothing more from the client is passed on
        self._arm()
        if not up.closed and client.scanner.at_boundary and not client.scanner.close_seen:
            up.write(close_frame(upstream_code, masked=True))  # the upstream is told at once
        if client.closed:
            up.close()
            return
        self.pending = (code, reason)
        self.frame_passed()

    def frame_passed(self) -> None:
        """Send a pending close once what the upstream sends is at a frame boundary."""
        pending = self.pending
        if pending is None or not self.upstream.scanner.at_boundary:
            return
        self.pending = None
        code, reason = pending
        up = self.upstream
        up.discard = True
        up.close()
        self.close_code = code
        client = self.client
        client.write(close_frame(code, reason, masked=False))
        if client.scanner.close_seen:
            client.close()  # it had already sent its close: nothing to wait for

    def _arm(self) -> None:
        if self._timer is None:
            self._timer = self.loop.call_later(CLOSE_TIMEOUT, self._expired)

    def _expired(self) -> None:
        self._timer = None
        self.client.abort()
        self.upstream.abort()
        self._finish()

    def side_lost(self, side: _Side) -> None:
        client, up = self.client, self.upstream
        if side is up:
            if not client.closed:
                if self.pending is not None or not (self.closing or up.scanner.close_seen):
                    # The upstream went away without a close frame: 1011 to the client (or the close that
                    # was waiting), unless that would land inside a frame.
                    if up.scanner.at_boundary:
                        code, reason = self.pending or (1011, "")
                        self.pending = None
                        self.close_code = code
                        client.write(close_frame(code, reason, masked=False))
                        client.discard = True
                        self._arm()
                        if client.scanner.close_seen:
                            client.close()
                    else:
                        client.abort()
                elif not self.closing:
                    client.close()
        elif not up.closed:
            if not (self.closing or client.scanner.close_seen) and client.scanner.at_boundary:
                up.write(close_frame(1000, masked=True))
            up.close()
        if client.closed and up.closed:
            self._finish()

    def _finish(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.done.done():
            self.done.set_result(None)
