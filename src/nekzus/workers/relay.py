"""The event relay between workers: each worker holds one end of a Unix socketpair whose other end the
supervisor holds; the supervisor forwards every frame to the other workers.

An event published on a worker's bus is delivered locally as before, then sent to the supervisor; a
relayed event is delivered only to the bus subscribers that asked for remote events (the WebSocket hub's
live fan-out), so durable side effects of an event (notification rows, webhooks, audit records) happen
once, in the worker where it was published.

Frames are a 4-byte big-endian length and a pickle. Pickle is safe here: both ends are this program,
connected by an unnamed socketpair made before fork that nothing else can reach.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import socket
import struct
from collections.abc import Callable
from typing import Any

log = logging.getLogger("nekzus.workers")

HEADER = struct.Struct(">I")
MAX_FRAME = 16 << 20
MAX_BUFFERED = 64 << 20  # a stuck peer must not grow memory without bound: frames beyond are dropped

EVENT = "event"
READY = HEADER.pack(0)  # an empty frame: "this worker is ready" (the leader's tells followers to start)


def frame(kind: str, payload: Any) -> bytes:
    body = pickle.dumps((kind, payload), protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body


def split_frames(buffer: bytearray) -> list[bytes]:
    """Remove and return the complete frames at the start of `buffer` (header included)."""
    out = []
    while len(buffer) >= HEADER.size:
        (size,) = HEADER.unpack_from(buffer)
        if size > MAX_FRAME:
            raise ValueError(f"relay frame of {size} bytes")
        end = HEADER.size + size
        if len(buffer) < end:
            break
        out.append(bytes(buffer[:end]))
        del buffer[:end]
    return out


def decode(raw: bytes) -> tuple[str, Any]:
    kind, payload = pickle.loads(raw[HEADER.size :])  # noqa: S301 - our own socketpair, see above
    return str(kind), payload


class Relay:
    """A worker's end: `send` queues a frame (never blocks), `run` delivers what other workers sent."""

    def __init__(self, sock: socket.socket, deliver: Callable[[Any], None]) -> None:
        self.sock = sock
        self.sock.setblocking(False)
        self.handlers: dict[str, Callable[[Any], object]] = {EVENT: deliver}
        self._out = bytearray()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writing = False

    def publish(self, event: Any) -> None:
        """Bus hook: relay an event published in this worker."""
        try:
            data = frame(EVENT, event)
        except Exception:
            log.debug("event %s cannot be relayed (not picklable)", getattr(event, "type", "?"))
            return
        self.send_raw(data)

    def send(self, kind: str, payload: Any) -> None:
        self.send_raw(frame(kind, payload))

    def on(self, kind: str, handler: Callable[[Any], object]) -> None:
        """Apply frames of `kind` sent by the other workers with `handler(payload)`."""
        self.handlers[kind] = handler

    def send_raw(self, data: bytes) -> None:
        if len(self._out) + len(data) > MAX_BUFFERED:
            log.warning("event relay backlog full: dropping a frame")
            return
        self._out += data
        self._flush()

    def _flush(self) -> None:
        if self._loop is None or not self._out:
            return
        try:
            sent = self.sock.send(self._out)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._out.clear()
            return
        del self._out[:sent]
        if self._out and not self._writing:
            self._writing = True
            self._loop.add_writer(self.sock.fileno(), self._on_writable)
        elif not self._out and self._writing:
            self._writing = False
            self._loop.remove_writer(self.sock.fileno())

    def _on_writable(self) -> None:
        self._flush()

    async def run(self) -> None:
        """Read frames until the supervisor closes its end."""
        self._loop = asyncio.get_running_loop()
        self._flush()
        buffer = bytearray()
        try:
            while True:
                chunk = await self._loop.sock_recv(self.sock, 1 << 16)
                if not chunk:
                    return
                buffer += chunk
                for raw in split_frames(buffer):
                    if raw == READY:
                        continue
                    kind, payload = decode(raw)
                    handler = self.handlers.get(kind)
                    if handler is None:
                        continue
                    try:
                        handler(payload)
                    except Exception:
                        log.exception("relayed %s could not be applied", kind)
        finally:
            if self._writing:
                with contextlib.suppress(Exception):
                    self._loop.remove_writer(self.sock.fileno())
