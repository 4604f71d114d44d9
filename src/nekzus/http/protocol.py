"""uvicorn's httptools protocol, with the response head and the first body chunk sent together.

uvicorn writes the status line + headers and then the body as two separate socket writes; with
TCP_NODELAY that is two syscalls and two packets for every small response, which is most of what the
reverse proxy serves. Holding the head until the first body write (or the end of the current event-loop
turn, so a slow stream still gets its headers at once) halves the writes per response.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_STATUS_PREFIX = b"HTTP/1.1 "
_CONTINUE = b"HTTP/1.1 100 "


class CoalescingTransport:
    """Wraps a transport; holds one response head until the next write or the next loop turn."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
        elif data.startswith(_STATUS_PREFIX) and not data.startswith(_CONTINUE):
            self._held = data
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and not isinstance(cycle.transport, CoalescingTransport):
            cycle.transport = CoalescingTransport(cycle.transport, self.loop)  # type: ignore[assignment]

    def on_response_complete(self) -> None:
        cycle = self.cycle
        if cycle is not None and isinstance(cycle.transport, CoalescingTransport):
            cycle.transport.flush()
        super().on_response_complete()
