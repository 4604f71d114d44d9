"""Bounds on the proxy's upstream I/O and background writes, against real loopback sockets and storage:
a write timeout on `drain`, the per-upstream connection cap, a response cut from our side, batched
session-cookie writes."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest

from nekzus.config import Config
from nekzus.events import EventBus
from nekzus.proxy import upstream
from nekzus.proxy.cookies import SessionCookieStore
from nekzus.proxy.upstream import StreamCut, UpstreamPool, UpstreamTimeout
from nekzus.store import Database
from tests.waiting import until


async def _silent_server() -> tuple[asyncio.Server, int, list[asyncio.StreamWriter]]:
    """Accepts connections and never reads from them."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], held


def test_drain_times_out_when_upstream_stops_reading() -> None:
    async def run() -> None:
        server, port, held = await _silent_server()
        pool = UpstreamPool("127.0.0.1", port, None, None)
        conn = await pool.acquire()
        assert conn.transport is not None
        conn.transport.set_write_buffer_limits(high=1024, low=0)
        piece = b"x" * (1 << 20)
        with pytest.raises(UpstreamTimeout, match="write"):
            for _ in range(64):  # kernel buffers fill long before 64 MiB
                conn.write(piece)
                await conn.drain(0.2)
        conn.abort()
        for writer in held:
            writer.close()
        server.close()

    asyncio.run(asyncio.wait_for(run(), 30))


def test_connection_cap_per_upstream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(upstream, "CONNECT_TIMEOUT", 0.3)

    async def run() -> None:
        server, port, held = await _silent_server()
        pool = UpstreamPool("127.0.0.1", port, None, None, max_connections=2)
        first = await pool.acquire()
        await pool.acquire()
        assert pool.open == 2
        # At the cap: a third request waits, and gives up after the connect timeout.
        with pytest.raises(UpstreamTimeout, match="busy"):
            await pool.acquire()
        # A connection that goes away frees its slot for the next waiter.
        waiting = asyncio.ensure_future(pool.acquire())
        await until(lambda: pool.waiting == 1, timeout=5, what="the request to queue for a slot")
        assert not waiting.done()
        first.close()
        third = await asyncio.wait_for(waiting, 5)
        assert pool.open == 2 and third is not first
        pool.close()
        for writer in held:
            writer.close()
        server.close()

    asyncio.run(asyncio.wait_for(run(), 30))


def test_a_cut_response_fails_even_when_the_closing_connection_would_end_it() -> None:
    """A body delimited by the connection closing ends cleanly when the upstream closes; cut by Nekzus
    (its credential revoked), it fails, so the client is not told the stream ended normally."""

    async def run() -> None:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\ndata: one\n\n")
            await reader.read()  # until the connection goes away

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        pool = UpstreamPool("127.0.0.1", server.sockets[0].getsockname()[1], None, None)
        conn = await pool.acquire()
        conn.write(b"GET /events HTTP/1.1\r\nhost: up\r\n\r\n")
        await conn.read_head(5)
        assert conn.until_close
        assert await conn.read_chunk(5) == b"data: one\n\n"
        conn.cut("credential revoked")
        # Read once the connection is gone for good: its closing does not turn into a clean end.
        await until(lambda: pool.open == 0, timeout=5, what="the connection to be lost")
        with pytest.raises(StreamCut, match="credential revoked"):
            await conn.read_chunk(5)
        server.close()

    asyncio.run(asyncio.wait_for(run(), 30))


def test_cookie_changes_are_written_behind_in_one_batch(tmp_path: Path) -> None:
    async def run() -> None:
        config = Config.model_validate({"storage": {"database_path": str(tmp_path / "nexus.db")}})
        db = Database(config.storage.database_path)
        await db.open()
        spawned: list[str] = []
        tasks: list[asyncio.Task[Any]] = []

        def spawn(coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
            spawned.append(name)
            task = asyncio.ensure_future(coro)
            tasks.append(task)
            return task

        store = SessionCookieStore(db, EventBus(), spawn, tmp_path)
        for i in range(50):
            store.capture("dev1", "app", [f"c{i % 5}=v{i}; Path=/".encode()])
        assert spawned == ["session-cookies-flush"]  # one task for the whole burst
        await store.flush()
        rows = (
            sqlite3.connect(tmp_path / "nexus.db")
            .execute("SELECT name FROM proxy_session_cookies")
            .fetchall()
        )
        assert sorted(r[0] for r in rows) == ["c0", "c1", "c2", "c3", "c4"]
        fresh = SessionCookieStore(db, EventBus(), spawn, tmp_path)
        assert (await fresh.cookie_header("dev1", "app"))["c4"] == "v49"
        await asyncio.gather(*tasks, return_exceptions=True)
        await db.close()

    asyncio.run(run())
