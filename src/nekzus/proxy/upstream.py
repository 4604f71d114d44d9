"""A small HTTP/1.1 client for the proxy's data path: keep-alive pools per upstream, httptools parsing.

Why not aiohttp/httpx: per request they allocate far more (request/response objects, tasks, timers)
than a forwarder needs. Here a pooled connection is an `asyncio.Protocol`; the response head arrives
as a future, body chunks are queued with back-pressure (reading pauses when the consumer lags), and
timeouts are plain timer handles.

Errors (all `UpstreamError`): `ConnectFailed` → 502, `UpstreamTimeout` → 504, `UpstreamBroken`
(reset, bad response, closed early) → 502.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import ssl
from collections.abc import Callable
from typing import Any, TypeVar, cast

import httptools

CONNECT_TIMEOUT = 10.0
# Open connections (busy and idle) per upstream; beyond that a request waits for one to come free, at
# most CONNECT_TIMEOUT, so a slow upstream cannot make the proxy open sockets without bound.
MAX_CONNECTIONS_PER_UPSTREAM = 256
MAX_IDLE_PER_UPSTREAM = 64
IDLE_KEEPALIVE_SECONDS = 60.0
HIGH_WATER = 512 * 1024
LOW_WATER = 64 * 1024
MAX_RESPONSE_HEAD = 64 * 1024

_P = TypeVar("_P", bound=asyncio.BaseProtocol)


class UpstreamError(Exception):
    status = 502
    code = "BAD_GATEWAY"


class ConnectFailed(UpstreamError):
    pass


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "GATEWAY_TIMEOUT"


class UpstreamBroken(UpstreamError):
    pass


class StreamCut(UpstreamError):
    """Nekzus ended the exchange itself: the credential that opened it was revoked or expired."""


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection; serves one request at a time."""

    __slots__ = (
        "_body_bytes",
        "_chunks",
        "_delivered",
        "_drain",
        "_head_size",
        "_head_waiter",
        "_length",
        "_listen_limit",
        "_listener",
        "_loop",
        "_paused",
        "_raw_left",
        "_read_paused",
        "_sink",
        "_waiter",
        "bytes_received",
        "closed",
        "complete",
        "error",
        "headers",
        "holds_slot",
        "idle_since",
        "keep_alive",
        "parser",
        "pool",
        "reused",
        "status",
        "transport",
        "until_close",
    )

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.reused = False
        self.holds_slot = False  # counted in the pool's open connections until lost
        self.idle_since = 0.0
        self.error: Exception | None = None
        self._paused = False
        self._drain: asyncio.Future[None] | None = None
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self._chunks: collections.deque[bytes] = collections.deque()
        self._body_bytes = 0
        self.complete = False
        self.bytes_received = 0
        self._head_size = 0
        self._head_waiter: asyncio.Future[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._read_paused = False
        self.until_close = False
        self.keep_alive = False
        self._length = -1  # the body's Content-Length when it alone frames the body, else -1
        self._delivered = 0  # body bytes received so far
        self._raw_left = 0  # body bytes still to come that bypass the parser (see `data_received`)
        self._listener: Callable[[], None] | None = None  # see `watch`
        self._listen_limit = -1
        self._sink: Callable[[bytes], None] | None = None  # see `relay`

    # -- asyncio.Protocol ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave like one.
        self.transport = cast(asyncio.Transport, transport)
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport.set_write_buffer_limits(high=HIGH_WATER, low=LOW_WATER)

    def data_received(self, data: bytes) -> None:
        self.bytes_received += len(data)
        left = self._raw_left
        if left:
            self._raw_body(data, left)
        else:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                pass
            except httptools.HttpParserError as exc:
                self._fail(UpstreamBroken(f"invalid response from upstream: {exc}"))
                if self.transport is not None:
                    self.transport.close()
            else:
                if self._length > self._delivered and not self.complete and self.error is None:
                    # The rest of a Content-Length body is the next `_length - _delivered` bytes: they are
                    # taken as the socket delivers them, without the parser copying each piece again.
                    self._raw_left = self._length - self._delivered
        if self._listener is not None:
            self._tell_listener()

    def _raw_body(self, data: bytes, left: int) -> None:
        size = len(data)
        if size < left:
            self._raw_left = left - size
            self.on_body(data)
            return
        self._raw_left = 0
        if size > left:
            # Bytes past the end of the response (nothing was asked for): do not reuse the connection.
            self.keep_alive = False
            data = data[:left]
        self.on_body(data)
        # The parser stopped inside this body; the next response on the connection needs a fresh one.
        self.parser = httptools.HttpResponseParser(self)
        self.on_message_complete()

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        if self.until_close and self.status and not self.complete and self.error is None:
            # A response delimited by the connection closing ends here (unless it was cut).
            self.complete = True
            self._wake()
        if not self.complete:
            self._fail(UpstreamBroken("upstream closed the connection"))
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        if self._listener is not None:
            self._tell_listener()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    # -- httptools callbacks ------------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value)
        if self._head_size > MAX_RESPONSE_HEAD:
            raise httptools.HttpParserError("response head too large")
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if 100 <= self.status < 200 and self.status != 101:
            # Interim response (100 Continue, 103 Early Hints): wait for the real one.
            self.headers = []
            self.status = 0
            return
        if self.status not in (204, 304) and not any(
            n in (b"content-length", b"transfer-encoding") for n, _ in self.headers
        ):
            self.until_close = True
        # Asked now: llhttp forgets it once the message is complete.
        self.keep_alive = self.parser.should_keep_alive()
        self._length = _framing_length(self.headers) if self.status not in (204, 304) else -1
        waiter = self._head_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def on_body(self, body: bytes) -> None:
        self._delivered += len(body)
        sink = self._sink
        if sink is not None:
            sink(body)
            return
        self._chunks.append(body)
        self._body_bytes += len(body)
        if self._body_bytes > HIGH_WATER and not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.status == 0:
            return
        self.complete = True
        self._wake()

    # -- helpers ------------------------------------------------------------------------------------

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, exc: Exception) -> None:
        if self.error is None:
            self.error = exc
        for waiter in (self._head_waiter, self._waiter):
            if waiter is not None and not waiter.done():
                waiter.set_exception(exc)

    def _on_timeout(self, waiter: asyncio.Future[None], what: str) -> None:
        if not waiter.done():
            waiter.set_exception(UpstreamTimeout(f"upstream {what} timed out"))

    # -- client API ---------------------------------------------------------------------------------

    def begin(self) -> None:
        self._reset()
        self.error = None

    def watch(self, listener: Callable[[], None] | None, max_body: int | None = None) -> None:
        """Call `listener` once, from the protocol's own callbacks, as soon as the response is complete,
        has failed, or (with `max_body`) has its head in with a body that is unframed or longer than
        `max_body`. For callers that answer without awaiting; None stops watching."""
        self._listener = listener
        self._listen_limit = -1 if max_body is None else max_body

    def relay(self, sink: Callable[[bytes], None]) -> None:
        """Hand every further body piece to `sink` as it arrives instead of queueing it (take what is
        queued first). The caller paces the upstream with `pause_reading`/`resume_reading`."""
        self._sink = sink

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    @property
    def framed_length(self) -> int:
        """The body's Content-Length when that alone frames it, else -1."""
        return self._length

    def _tell_listener(self) -> None:
        listener = self._listener
        limit = self._listen_limit
        if listener is not None and (
            self.complete
            or self.error is not None
            or (self.status and limit >= 0 and not 0 <= self._length <= limit)
        ):
            self._listener = None
            listener()

    def cut(self, reason: str) -> None:
        """End the exchange from this side: it fails with `StreamCut` (a body delimited by the
        connection closing included) and the connection is dropped."""
        self._fail_now(StreamCut(reason))  # failed first: then its closing cannot end the body cleanly
        self.abort()

    def time_out(self, what: str) -> None:
        """Fail the exchange as timed out (a watcher's own timer ran out)."""
        self._fail_now(UpstreamTimeout(f"upstream {what} timed out"))

    def _fail_now(self, exc: UpstreamError) -> None:
        """Fail the exchange from outside the protocol's callbacks; a watcher hears of it at once."""
        self._fail(exc)
        if self._listener is not None:
            self._tell_listener()

    def take_body(self) -> bytes:
        """Every body byte received and not yet taken, as one piece (for a complete, small response)."""
        chunks = self._chunks
        if len(chunks) == 1:
            data = chunks.popleft()
        else:
            data = b"".join(chunks)
            chunks.clear()
        self._body_bytes = 0
        if self._read_paused and self.transport is not None:
            self._read_paused = False
            self.transport.resume_reading()
        return data

    def write(self, data: bytes) -> None:
        if self.transport is None or self.closed:
            raise UpstreamBroken("upstream connection closed")
        self.transport.write(data)

    async def drain(self, timeout: float) -> None:
        """Wait while the upstream is not reading what we write; `timeout` limits one such stall."""
        if self._paused and not self.closed:
            waiter = self._drain = self._loop.create_future()
            timer = self._loop.call_later(timeout, self._on_timeout, waiter, "write")
            try:
                await waiter
            finally:
                timer.cancel()
                self._drain = None

    async def read_head(self, timeout: float) -> None:
        """Wait for the status line and headers (the idle timeout applies until they arrive)."""
        if self.status:
            return
        if self.error is not None:
            raise self.error
        waiter = self._head_waiter = self._loop.create_future()
        timer = self._loop.call_later(timeout, self._on_timeout, waiter, "response")
        try:
            await waiter
        finally:
            timer.cancel()
            self._head_waiter = None

    def take_buffered(self) -> bytes:
        """The oldest body piece received and not yet taken (b'' when none).

        Pieces are handed on one by one as the socket delivered them, never joined: joining queued
        pieces of a large download copies every byte once more into a fresh allocation (and, past the
        allocator's mmap threshold, page-faults it in), which cost more than the extra send per piece."""
        chunks = self._chunks
        if not chunks:
            return b""
        data = chunks.popleft()
        self._body_bytes -= len(data)
        if self._read_paused and self._body_bytes <= LOW_WATER and self.transport is not None:
            self._read_paused = False
            self.transport.resume_reading()
        return data

    @property
    def buffered(self) -> bool:
        """Whether body pieces are waiting to be taken."""
        return bool(self._chunks)

    async def read_chunk(self, timeout: float) -> bytes:
        """The next body bytes, or b'' at the end of the response; the timeout is an idle timeout."""
        while True:
            if self._chunks:
                return self.take_buffered()
            if self.complete:
                return b""
            if self.error is not None:
                raise self.error
            waiter = self._waiter = self._loop.create_future()
            timer = self._loop.call_later(timeout, self._on_timeout, waiter, "read")
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None

    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.closed and self.error is None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


def _framing_length(headers: list[tuple[bytes, bytes]]) -> int:
    """The Content-Length when it is the body's only framing (one plain decimal header, no
    Transfer-Encoding), else -1: then only the parser reads the body."""
    length = -1
    for name, value in headers:
        if name == b"content-length":
            if length >= 0 or not value.isdigit() or len(value) > 18:
                return -1
            length = int(value)
        elif name == b"transfer-encoding":
            return -1
    return length


class UpstreamPool:
    """Idle keep-alive connections to one upstream (scheme, host, port, TLS verification)."""

    def __init__(
        self,
        host: str,
        port: int,
        tls: ssl.SSLContext | None,
        server_hostname: str | None,
        max_connections: int = MAX_CONNECTIONS_PER_UPSTREAM,
    ) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.server_hostname = server_hostname
        self.max_connections = max_connections
        self.idle: list[UpstreamConnection] = []
        self.open = 0  # connections opened (or being opened) and not yet lost
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def waiting(self) -> int:
        """Requests parked until a connection to this upstream comes free (the pool is at its cap)."""
        return len(self._waiters)

    async def acquire(self) -> UpstreamConnection:
        """A kept-alive idle connection, a new one while under the cap, or the next one to come free."""
        loop = self._loop or asyncio.get_running_loop()
        self._loop = loop
        deadline = 0.0
        while True:
            conn = self._take_idle(loop.time())
            if conn is not None:
                return conn
            if self.open < self.max_connections:
                return await self.connect()
            if not deadline:
                deadline = loop.time() + CONNECT_TIMEOUT
            await self._wait_for_slot(loop, deadline)

    def take_idle(self) -> UpstreamConnection | None:
        """A kept-alive idle connection, ready for a request, or None (`acquire` then dials or waits)."""
        loop = self._loop or asyncio.get_running_loop()
        self._loop = loop
        return self._take_idle(loop.time())

    def _take_idle(self, now: float) -> UpstreamConnection | None:
        idle = self.idle
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < IDLE_KEEPALIVE_SECONDS:
                conn.reused = True
                conn.begin()
                return conn
            conn.close()  # frees its slot when the transport reports the loss
        return None

    async def _wait_for_slot(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise UpstreamTimeout(f"all {self.max_connections} connections to the upstream are busy")
        waiter = loop.create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(remaining):
                await waiter
        except TimeoutError:
            raise UpstreamTimeout(
                f"all {self.max_connections} connections to the upstream are busy"
            ) from None
        finally:
            if not waiter.done():
                waiter.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def connect(self) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        self.open += 1
        try:
            conn = await self._connect(loop)
            if conn.closed:
                raise UpstreamBroken("upstream closed the connection")
        except BaseException:
            self.open -= 1
            self._wake_one()
            raise
        conn.holds_slot = True
        return conn

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> UpstreamConnection:
        protocol = await self.dial(lambda: UpstreamConnection(self))
        protocol.begin()
        return protocol

    async def dial(self, factory: Callable[[], _P]) -> _P:
        """A new connection to this upstream (TLS and SNI as configured) speaking `factory()`'s protocol:
        the pool's own keep-alive connections, and WebSocket tunnels, which leave the pool after it."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                _, protocol = await loop.create_connection(
                    factory,
                    self.host,
                    self.port,
                    ssl=self.tls,
                    server_hostname=self.server_hostname if self.tls else None,
                )
        except TimeoutError:
            raise UpstreamTimeout("connecting to the upstream timed out") from None
        except ssl.SSLError as exc:
            raise ConnectFailed(f"TLS handshake with the upstream failed: {exc.reason or exc}") from None
        except OSError as exc:
            raise ConnectFailed(f"upstream unreachable: {exc.strerror or exc}") from None
        return protocol

    def release(self, conn: UpstreamConnection) -> None:
        if conn.reusable() and len(self.idle) < MAX_IDLE_PER_UPSTREAM:
            conn.idle_since = (self._loop or asyncio.get_running_loop()).time()
            self.idle.append(conn)
            self._wake_one()
        else:
            conn.close()

    def forget(self, conn: UpstreamConnection) -> None:
        """The connection is gone (called once, from `connection_lost`): its slot is free again."""
        if conn.holds_slot:
            conn.holds_slot = False
            self.open -= 1
        with contextlib.suppress(ValueError):
            self.idle.remove(conn)
        self._wake_one()

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


def tls_context(verify: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class PoolRegistry:
    """One pool per upstream key; pools whose upstream no route uses any more are closed."""

    def __init__(self) -> None:
        self.pools: dict[tuple[str, str, int, bool], UpstreamPool] = {}
        self._tls: dict[bool, ssl.SSLContext] = {}

    def get(self, scheme: str, host: str, port: int, verify: bool) -> UpstreamPool:
        key = (scheme, host, port, verify)
        pool = self.pools.get(key)
        if pool is None:
            tls = None
            if scheme == "https":
                tls = self._tls.get(verify)
                if tls is None:
                    tls = self._tls[verify] = tls_context(verify)
            pool = self.pools[key] = UpstreamPool(host, port, tls, host)
        return pool

    def retain(self, keep: set[tuple[str, str, int, bool]]) -> None:
        for key in [k for k in self.pools if k not in keep]:
            self.pools.pop(key).close()

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()
        self.pools.clear()

    def describe(self) -> dict[str, Any]:
        return {f"{k[0]}://{k[1]}:{k[2]}": len(p.idle) for k, p in self.pools.items()}
