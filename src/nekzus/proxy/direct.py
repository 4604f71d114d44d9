"""The proxy's direct path: a plain GET answered from protocol callbacks, without an ASGI task.

`ProxyApp.direct` admits the request with the same phases as the ASGI path and, when an idle upstream
connection is at hand, a `DirectExchange` writes the request to it and watches it. When the response is
complete (the common small answer, often one socket read), the exchange shapes it and writes it to the
client whole. Anything else — a failure or timeout (which may be retried on a fresh connection), a body
to stream (unframed or longer than `MAX_DIRECT_BODY`), a client already gone — is passed on to the ASGI
path's exchange on the same connection, which handles it exactly as it handles its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

from starlette.types import Receive, Scope, Send

from nekzus.proxy.phases import Headers, error_response
from nekzus.proxy.upstream import UpstreamConnection, UpstreamError

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

    def continue_with(self, app: Any) -> None: ...


class DirectExchange:
    """One request on its idle upstream connection, from writing it to answering the client."""

    __slots__ = ("answer", "common", "conn", "proxy", "request", "sent_at", "started", "timer")

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

    def start(self) -> None:
        proxy, conn, request = self.proxy, self.conn, self.request
        self.sent_at = time.perf_counter()
        try:
            conn.write(request.data())
        except UpstreamError:
            # Closed under our feet: the ASGI path's exchange starts over (a fresh connection).
            conn.abort()
            common, started = self.common, self.started

            async def exchange(_scope: Scope, receive: Receive, send: Send) -> None:
                await proxy.exchange(request, receive, send, common, started)

            self.answer.continue_with(exchange)
            return
        proxy.count_active(1)
        request.conn = conn
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(proxy.settings.idle_timeout, conn.time_out, "response")
        conn.watch(self._upstream_ready, MAX_DIRECT_BODY)

    def _upstream_ready(self) -> None:
        """The connection's answer: complete, failed, or to be streamed."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        conn = self.conn
        if conn.error is not None or not conn.complete or self.answer.gone:
            self._pass_on()
            return
        try:
            self._respond()
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
        proxy.count_active(-1)
        proxy.account(request, self.started)

    def _finish_failed(self) -> None:
        request, proxy = self.request, self.proxy
        if request.conn is not None:
            request.conn.abort()
            request.conn = None
        if not request.response_started:
            request.status = 502
            headers, body = error_response(self.common, "BAD_GATEWAY", "Proxy error")
            self.answer.respond(502, headers, body)
        proxy.count_active(-1)
        proxy.account(request, self.started)

    def _pass_on(self) -> None:
        """Continue on the ASGI path with the request already written to `conn`."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.conn.watch(None)
        proxy, request, common, started = self.proxy, self.request, self.common, self.started
        sent = (self.conn, self.sent_at)

        async def exchange(_scope: Scope, receive: Receive, send: Send) -> None:
            await proxy.exchange(request, receive, send, common, started, sent=sent)

        self.answer.continue_with(exchange)
