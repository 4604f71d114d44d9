"""Writing hub messages straight onto a WebSocket's transport.

A server-to-client WebSocket frame is never masked, so the bytes of one text frame are the same for
every connection: the hub encodes an event's frame once and writes those bytes to each subscriber's
transport, instead of handing every client its own copy through the ASGI `send` (one task wake-up, one
frame encoding and, with permessage-deflate, one compression per client).

This is only done for uvicorn's `websockets-sansio` protocol (the one Nekzus serves with), whose frames are
written whole with one `transport.write` each, so a frame written here can never split one of its own.
Frames written here are uncompressed (RSV1 clear), which RFC 7692 allows on a connection that negotiated
permessage-deflate and which leaves both sides' compression contexts untouched. Anything else (another
server, a test transport) gets `None` and the hub uses the plain ASGI path.
"""

from __future__ import annotations

import struct
import sys
from typing import Any

SANSIO_MODULE = "uvicorn.protocols.websockets.websockets_sansio_impl"

# Largest run of frames joined into one write: bounds the copy made for a burst.
WRITE_BATCH = 64 * 1024


def text_frame(payload: bytes) -> bytes:
    """One unmasked, unfragmented text frame carrying `payload` (UTF-8)."""
    size = len(payload)
    if size < 126:
        head = bytes((0x81, size))
    elif size < 1 << 16:
        head = struct.pack("!BBH", 0x81, 126, size)
    else:
        head = struct.pack("!BBQ", 0x81, 127, size)
    return head + payload


class DirectWire:
    """The transport under one accepted sansio WebSocket, with the protocol's own state checks."""

    __slots__ = ("_proto", "_transport", "_writable")

    def __init__(self, proto: Any) -> None:
        self._proto = proto
        self._transport = proto.transport
        self._writable = proto.writable

    def usable(self) -> bool:
        """True while frames may be written now: handshake done, no close sent or received, and the
        transport below its high-water mark (a paused transport means the peer is not reading)."""
        proto = self._proto
        return (
            self._writable.is_set()
            and proto.handshake_complete
            and not proto.close_sent
            and not proto.disconnected
            and proto.initial_response is None
            and not self._transport.is_closing()
        )

    def open(self) -> bool:
        """Usable apart from flow control (the writer may wait for the peer to read)."""
        proto = self._proto
        return not (proto.close_sent or proto.disconnected or self._transport.is_closing())

    async def wait_writable(self) -> None:
        await self._writable.wait()

    def write(self, data: bytes) -> None:
        self._transport.write(data)

    def buffered(self) -> int:
        """Bytes waiting in the transport's write buffer (memory a slow reader holds)."""
        return int(self._transport.get_write_buffer_size())


def direct_wire(receive: Any, send: Any) -> DirectWire | None:
    """The direct writer for a connection whose ASGI callables come from uvicorn's sansio protocol.

    Middlewares may wrap `send` in closures; `receive` usually reaches the app unwrapped. Both are
    searched (a few levels of closures deep) for a bound method of the protocol object.
    """
    module = sys.modules.get(SANSIO_MODULE)
    cls = getattr(module, "WebSocketsSansIOProtocol", None)
    if cls is None:
        return None
    for fn in (receive, send):
        proto = _find_protocol(fn, cls, depth=6)
        if proto is not None:
            # Another uvicorn release may rename what the checks read: then keep the ASGI path.
            if all(hasattr(proto, name) for name in _PROTOCOL_STATE):
                return DirectWire(proto)
            return None
    return None


_PROTOCOL_STATE = (
    "transport",
    "writable",
    "handshake_complete",
    "close_sent",
    "disconnected",
    "initial_response",
)


def _find_protocol(fn: Any, cls: type, depth: int) -> Any:
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, cls):
        return owner
    if depth <= 0:
        return None
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        if callable(value):
            found = _find_protocol(value, cls, depth - 1)
            if found is not None:
                return found
    return None
