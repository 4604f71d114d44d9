"""The response-head coalescing in front of uvicorn's transport."""

from __future__ import annotations

import asyncio
from typing import Any

from nekzus.http.protocol import CoalescingTransport


class RecordingTransport(asyncio.Transport):
    """Stands in for uvicorn's socket transport: records each write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_head_and_body_leave_in_one_write() -> None:
    async def scenario() -> list[bytes]:
        raw = RecordingTransport()
        transport = CoalescingTransport(raw, asyncio.get_running_loop())
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        transport.write(b"ok")
        await asyncio.sleep(0)  # one loop turn: the behaviour under test is what it flushes
        return raw.writes

    assert run(scenario()) == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]


def test_a_head_alone_is_flushed_on_the_next_loop_turn() -> None:
    async def scenario() -> tuple[list[bytes], list[bytes]]:
        raw = RecordingTransport()
        transport = CoalescingTransport(raw, asyncio.get_running_loop())
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n")
        before = list(raw.writes)
        await asyncio.sleep(0)  # one loop turn: the behaviour under test is what it flushes
        return before, raw.writes

    before, after = run(scenario())
    assert before == []
    assert after == [b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n"]


def test_continue_passes_straight_through_and_close_flushes() -> None:
    async def scenario() -> RecordingTransport:
        raw = RecordingTransport()
        transport = CoalescingTransport(raw, asyncio.get_running_loop())
        transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        transport.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        transport.close()
        assert transport.get_extra_info("peername") == ("127.0.0.1", 1)
        return raw

    raw = run(scenario())
    assert raw.writes == [b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 204 No Content\r\n\r\n"]
    assert raw.closed
