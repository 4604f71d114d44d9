"""The proxy's direct path: a plain GET answered from protocol callbacks, without an ASGI task.

`ProxyApp.direct` admits the request with the same phases as the ASGI path and, when an idle upstream
connection is at hand, a `DirectExchange` writes the request to it and watches it. When the response is
complete (the common small answer, often one socket read), the exchange shapes it and writes it to the
client whole. A longer body framed by its Content-Length (a download) is relayed: each piece the
upstream socket delivers is written to the client's as it comes, reading from the upstream pauses while
the client's socket is full, and a stall of the idle timeout ends it. Anything else — a failure or
timeout before the head (which may be retried on a fresh connection), a chunked or unframed body (SSE),
a body to rewrite, a client already gone — is passed on to the ASGI path's exchange on the same
connection, which handles it exactly as it handles its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

from starlette.types import Receive, Scope, Send

from nekzus.auth.connections import ConnectionHandle
from nekzus.proxy.phases import Headers, abort_of, error_response
from nekzus.proxy.upstream import StreamCut, UpstreamConnection, UpstreamError

if TYPE_CHECKING:
    from nekzus.proxy.app import ProxiedRequest, ProxyApp

log = logging.getLogger("nekzus.proxy")

# Responses up to this size are gathered and written in one go; longer ones are streamed.
MAX_DIRECT_BODY = 64 * 1024


class DirectAnswer(Protocol):
    """How the HTTP server lets the proxy answer one request (`nekzus.http.protocol.DirectAnswer`)."""

    @property
    def gone(self) -> bool: ...

    def respond(self, status: int, headers: Headers, body: bytes) -> None: ...

    def stream(self, status: int, headers: Headers, first: bytes, events: DirectExchange) -> None: ...

    def write(self, data: bytes) -> None: ...

    def end(self) -> None: ...

    def abort(self) -> None: ...

    def continue_with(self, app: Any) -> None: ...


class DirectExchange:
    """One request on its idle upstream connection, from writing it to answering the client."""

    __slots__ = (
        "answer",
        "common",
        "conn",
        "done",
        "handle",
        "last_piece",
        "loop",
        "paused",
        "proxy",
        "request",
        "sent_at",
        "started",
        "timer",
    )

    def __init__(
        self,
        proxy: ProxyApp,
        request: ProxiedRequest,
        conn: UpstreamConnection,
        answer: DirectAnswer,
        common: Headers,
        started: float,
    ) -> None:
        self.proxy = proxy
        self.request = request
        self.conn = conn
        self.answer = answer
        self.common = common
        self.started = started
        self.sent_at = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.loop = asyncio.get_running_loop()
        self.last_piece = 0.0  # loop time of the last body piece relayed
        self.paused = False  # reading from the upstream paused: the client's socket is full
        self.done = False
        self.handle: ConnectionHandle | None = None  # the credential a relayed body is filed under

    def start(self) -> None:
        proxy, conn, request = self.proxy, self.conn, self.request
        self.sent_at = time.perf_counter()
        try:
            conn.write(request.data())
        except UpstreamError:
            # Closed under our feet: the ASGI path's exchange starts over (a fresh connection).
            conn.abort()
            self._pass_on(written=False)
            return
        proxy.active += 1
        request.conn = conn
        self.timer = self.loop.call_later(proxy.settings.idle_timeout, conn.time_out, "response")
        conn.watch(self._upstream_ready, MAX_DIRECT_BODY)

    def _upstream_ready(self) -> None:
        """The connection's answer: complete, failed, or to be streamed."""
        self._cancel_timer()
        conn = self.conn
        if conn.error is not None or self.answer.gone:
            self._pass_on()
            return
        try:
            if conn.complete:
                self._respond()
            elif conn.framed_length < 0 or not self._relay():
                self._pass_on()
        except Exception:
            log.exception("proxying to %s failed", self.request.route.spec.route_id)
            self._finish_failed()

    def _respond(self) -> None:
        proxy, request, conn = self.proxy, self.request, self.conn
        route = request.route
        route.metrics["upstream"](time.perf_counter() - self.sent_at)
        status = request.status = conn.status
        shape, body_type = proxy.shape(request, conn)
        body = conn.take_body()
        headers = shape.headers
        if body_type is not None:
            body, headers = proxy.rewrite(request, body_type, body, shape)
        elif shape.length != len(body) and status not in (204, 304):
            # Framed by chunks upstream (or by a Content-Length a Transfer-Encoding overrode): the whole
            # body is here, so the client gets its length.
            headers = [h for h in headers if h[0] != b"content-length"]
            headers.append((b"content-length", b"%d" % len(body)))
        proxy.release(request)
        request.response_started = True
        request.bytes_out = len(body)
        self.answer.respond(status, headers + self.common, body)
        self._finish()

    # -- relaying a long body -------------------------------------------------------------------------

    def _relay(self) -> bool:
        """Start relaying a Content-Length-framed body; False (nothing done) when it is to be rewritten."""
        proxy, request, conn = self.proxy, self.request, self.conn
        shape, body_type = proxy.shape(request, conn)
        if body_type is not None:
            return False
        request.route.metrics["upstream"](time.perf_counter() - self.sent_at)
        status = request.status = conn.status
        first = conn.take_body()
        request.bytes_out = len(first)
        conn.relay(self._piece)
        conn.watch(self._relayed)
        request.response_started = True
        self.last_piece = self.loop.time()
        self.timer = self.loop.call_later(proxy.settings.idle_timeout, self._check_idle)
        self.answer.stream(status, shape.headers + self.common, first, self)
        self.handle = proxy.follow_credential(request, conn.cut)
        return True

    def _piece(self, data: bytes) -> None:
        self.request.bytes_out += len(data)
        self.last_piece = self.loop.time()
        self.answer.write(data)

    def writable(self, ready: bool) -> None:
        """The client's socket is full (pause reading from the upstream) or drained (resume)."""
        if self.done:
            return
        self.paused = not ready
        if ready:
            self.last_piece = self.loop.time()  # the idle timeout counts from now
            self.conn.resume_reading()
        else:
            self.conn.pause_reading()

    def lost(self) -> None:
        """The client went away mid-body: drop the upstream connection."""
        if self.done:
            return
        self.request.status = 499
        self._drop_upstream()
        self._finish()

    def _check_idle(self) -> None:
        self.timer = None
        if self.done:
            return
        timeout = self.proxy.settings.idle_timeout
        waited = self.loop.time() - self.last_piece
        if self.paused or waited < timeout:  # a full client socket is not the upstream's stall
            self.timer = self.loop.call_later(timeout if self.paused else timeout - waited, self._check_idle)
            return
        self.conn.time_out("read")  # tells `_relayed`

    def _relayed(self) -> None:
        """The relayed body is complete, or the upstream failed (or stalled) in the middle of it."""
        if self.done:
            return
        conn, request = self.conn, self.request
        error = conn.error
        if conn.complete and error is None:
            self.answer.end()
            self.proxy.release(request)
        elif isinstance(error, StreamCut):  # its credential was revoked (`follow_credential`)
            log.info("response from %s cut short: %s", request.route.spec.route_id, error)
            self._drop_upstream()
            self.answer.abort()
        else:
            status = error.status if isinstance(error, UpstreamError) else 502
            code = error.code if isinstance(error, UpstreamError) else "BAD_GATEWAY"
            request.status = status
            self.proxy.metrics.proxy_upstream_errors_total.labels(
                request.route.spec.app_id, code.lower()
            ).inc()
            self._drop_upstream()
            self.answer.abort()
        self._finish()

    def _drop_upstream(self) -> None:
        request = self.request
        self.conn.watch(None)
        if request.conn is not None:
            request.conn.abort()
            request.conn = None

    # -- endings --------------------------------------------------------------------------------------

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _finish(self) -> None:
        """Count the request once: it is no longer active, and its metrics and access log are written."""
        if self.done:
            return
        self.done = True
        self._cancel_timer()
        if self.handle is not None:
            self.handle.release()
            self.handle = None
        self.proxy.active -= 1
        self.proxy.account(self.request, self.started)

    def _finish_failed(self) -> None:
        request = self.request
        if request.conn is not None:
            request.conn.abort()
            request.conn = None
        if not request.response_started:
            request.status = 502
            headers, body = error_response(self.common, "BAD_GATEWAY", "Proxy error")
            self.answer.respond(502, headers, body)
        else:
            self.answer.abort()
        self._finish()

    def _pass_on(self, *, written: bool = True) -> None:
        """Continue on the ASGI path: with the request already written to `conn` (counted as active), or
        from the start on a fresh connection."""
        self._cancel_timer()
        self.done = True  # counted from here on by the ASGI path's exchange
        self.conn.watch(None)
        proxy, request, common, started = self.proxy, self.request, self.common, self.started
        sent = (self.conn, self.sent_at) if written else None

        async def exchange(scope: Scope, receive: Receive, send: Send) -> None:
            await proxy.exchange(request, receive, send, common, started, sent=sent, abort=abort_of(scope))

        self.answer.continue_with(exchange)
