"""uvicorn's httptools protocol, hardened and with the response head and the first body chunk sent together.

Hardening, enforced here because it must happen before anything is buffered:
- the request head (request line + headers) is capped at `MAX_HEAD_BYTES`; past it the client gets 431
  and the connection closes, so a client cannot make the server hold megabytes of unfinished headers;
- a head must arrive within `head_timeout` seconds of its first byte (408 otherwise), and a body may not
  stall for more than `body_timeout` seconds between chunks while the server is waiting for it;
- malformed requests are answered in the API's JSON error shape instead of uvicorn's plain text.

uvicorn writes the status line + headers and then the body as two separate socket writes; with
TCP_NODELAY that is two syscalls and two packets for every small response, which is most of what the
reverse proxy serves. Holding the head until the first body write (or the end of the current event-loop
turn, so a slow stream still gets its headers at once) halves the writes per response.

Direct answers: a request the server's `direct` claim accepts (the reverse proxy's plain GETs) is not
run as an ASGI task. The claim answers it from callbacks (`DirectAnswer.respond`, or `stream` for a body
that follows in pieces), or hands it to the ASGI app after all (`DirectAnswer.continue_with`); an ASGI
task, its coroutines and its messages cost more CPU than forwarding a small response does.

ASGI requests are offered one extension, `nekzus.http.abort`: a way to end a response whose body cannot be
completed by closing the connection, without uvicorn reporting the app for returning early.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import json
import logging
import re
import urllib.parse
from collections.abc import Callable
from typing import Any, ClassVar, Protocol, cast

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle

_STATUS_PREFIX = b"HTTP/1.1 "
_CONTINUE = b"HTTP/1.1 100 "
_CONCAT_LIMIT = 16 * 1024


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
            if len(data) <= _CONCAT_LIMIT:
                self._transport.write(held + data)
            else:  # one vectored write; concatenating would copy a large body piece once more
                self._transport.writelines((held, data))
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


MAX_HEAD_BYTES = 64 * 1024

# A Host header is an IP literal or a registered name, with an optional port: no whitespace, `/`, `@`,
# or anything else an upstream or a log could read as a different target.
_HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]+)(?::[0-9]{1,5})?")


def host_problem(headers: list[tuple[bytes, bytes]], http_version: str) -> str | None:
    """Why the request's Host header is unacceptable, or None (HTTP/1.1 needs exactly one)."""
    hosts = [value for name, value in headers if name == b"host"]
    if len(hosts) > 1:
        return "Duplicate Host header"
    if not hosts:
        return "Missing Host header" if http_version == "1.1" else None
    if not _HOST.fullmatch(hosts[0]):
        return "Invalid Host header"
    return None


_INTERNAL_ERROR = b"Internal Server Error"
_INTERNAL_ERROR_HEADERS = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", b"21"),
]

_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


def raw_error_response(status: int, code: str, message: str) -> bytes:
    """A complete HTTP/1.1 error response in the API's error shape, closing the connection."""
    body = json.dumps({"error": {"code": code, "message": message}, "code": code, "message": message})
    data = body.encode()
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"connection: close\r\n\r\n" % (status, _REASONS.get(status, b"Error"), len(data))
    ) + data


class StreamEvents(Protocol):
    """What the owner of a streamed direct answer is told about the client's connection."""

    def writable(self, ready: bool) -> None:
        """The client's socket stopped (False) or started again (True) taking data."""

    def lost(self) -> None:
        """The client disconnected before the answer ended."""


class DirectAnswer:
    """One request a direct claim took: answer it whole now or later (`respond`), stream the answer
    (`stream`, `write`, `end`), or pass it on to an ASGI app (`continue_with`). One of these, once."""

    __slots__ = ("_protocol", "cycle", "events", "taken")

    def __init__(self, protocol: CoalescingHttpToolsProtocol, cycle: RequestResponseCycle) -> None:
        self._protocol = protocol
        self.cycle = cycle
        self.taken = False  # answered or passed on
        self.events: StreamEvents | None = None  # while streaming

    @property
    def gone(self) -> bool:
        """Whether the client has disconnected (an answer would not reach it)."""
        return self.cycle.disconnected or self._protocol.transport.is_closing()

    def respond(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """Write the whole response in one write, framed as uvicorn frames an ASGI response: the server's
        default headers first, `connection: close` (and closing) when the connection is not kept alive.
        `headers` are lower-case, carry the body's Content-Length, and no hop-by-hop fields."""
        if self.taken:
            return
        self.taken = True
        cycle = self.cycle
        cycle.response_started = True
        transport = self._protocol.transport
        if not cycle.disconnected and not transport.is_closing():
            transport.write(self._head(status, headers, body))
        self._complete()

    def _complete(self) -> None:
        """The response is whole: close a connection not kept alive, or serve its next request."""
        cycle = self.cycle
        cycle.response_complete = True
        if not cycle.keep_alive:
            self._protocol.transport.close()
        cycle.message_event.set()
        cycle.on_response()

    def _head(self, status: int, headers: list[tuple[bytes, bytes]], first: bytes) -> bytes:
        parts = [STATUS_LINE[status]]
        for name, value in self._protocol.server_state.default_headers:
            parts += (name, b": ", value, b"\r\n")
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
        if not self.cycle.keep_alive:
            parts.append(b"connection: close\r\n")
        parts += (b"\r\n", first)
        return b"".join(parts)

    def stream(
        self, status: int, headers: list[tuple[bytes, bytes]], first: bytes, events: StreamEvents
    ) -> None:
        """Write the head (as `respond` frames it; `headers` carry the Content-Length) and the first body
        bytes; the rest follows through `write`, and `end` completes the response. `events` hears when
        the client's socket fills up and drains again, and when the client goes away."""
        if self.taken:
            return
        self.taken = True
        self.cycle.response_started = True
        self.events = events
        self._protocol.streaming = self
        self._protocol.transport.write(self._head(status, headers, first))

    def write(self, data: bytes) -> None:
        transport = self._protocol.transport
        if not transport.is_closing():
            transport.write(data)

    def end(self) -> None:
        """The whole body was written: the connection serves the next request (or closes)."""
        if self.cycle.response_complete:
            return
        self._stop()
        self._complete()

    def abort(self) -> None:
        """The body cannot be completed: close the connection (the client sees it cut short)."""
        self._stop()
        self._protocol.transport.close()

    def _stop(self) -> None:
        self.events = None
        if self._protocol.streaming is self:
            self._protocol.streaming = None

    def continue_with(self, app: Any) -> None:
        """Serve the request with the ASGI callable `app` in a task, as any other request is served."""
        if self.taken:
            return
        self.taken = True
        self._protocol._run_asgi(self.cycle, app)


# Decides, from a request's ASGI scope, whether the app answers it directly (see the module docstring).
DirectClaim = Callable[[dict[str, Any], DirectAnswer], bool]

# Offered to every ASGI request in `scope["extensions"]`: `abort()` ends a response whose body cannot
# be completed (the reverse proxy's upstream failed mid-body, or the stream was cut on revocation) by
# closing the connection. The client sees the body cut short, and the app is not reported for having
# returned without completing its response.
ABORT_EXTENSION = "nekzus.http.abort"


def _abort(cycle: RequestResponseCycle) -> None:
    cycle.disconnected = True  # later sends are dropped, and uvicorn reports nothing when the app returns
    cycle.keep_alive = False
    cycle.transport.close()


# What the connection's single timer should watch once the current `data_received` has been fed.
_HEAD = 1
_BODY = 2


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    head_timeout: ClassVar[float] = 10.0
    body_timeout: ClassVar[float] = 60.0

    _head_open = True
    _head_seen = 0
    _timer: asyncio.TimerHandle | None = None
    _want = 0  # _HEAD or _BODY: arm that timer when the data at hand is fed (0: nothing to wait for)
    _coalescing: CoalescingTransport | None = None  # one per connection, handed to each cycle
    direct_claim: ClassVar[tuple[DirectClaim, ...]] = ()  # one claim, or none
    streaming: DirectAnswer | None = None  # a direct answer whose body is being written

    @classmethod
    def configured(
        cls, *, head_timeout: float, body_timeout: float, direct: DirectClaim | None = None
    ) -> type[CoalescingHttpToolsProtocol]:
        """A subclass carrying the server's read timeouts and direct claim (uvicorn instantiates the
        class itself)."""
        attrs = {
            "head_timeout": head_timeout,
            "body_timeout": body_timeout,
            "direct_claim": (direct,) if direct is not None else (),
        }
        return type("ConfiguredHttpToolsProtocol", (cls,), attrs)

    _claiming = False  # a direct claim is running

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        claim = self.direct_claim
        if claim and app is self.app and cycle.scope["type"] == "http":
            if self._claiming:
                # An answer given at once ends its response, and that starts the next pipelined request
                # from inside the claim: start it on the next loop turn instead, or a long pipeline of
                # such answers would nest one call deeper per request.
                self.loop.call_soon(self._start_asgi_task, cycle, app)
                return
            answer = DirectAnswer(self, cycle)
            self._claiming = True
            try:
                if claim[0](cast(dict[str, Any], cycle.scope), answer):
                    return
            except Exception:
                logging.getLogger("nekzus.http").exception("answering a request directly failed")
                if answer.taken:
                    return
                cycle.keep_alive = False
                answer.respond(500, _INTERNAL_ERROR_HEADERS, _INTERNAL_ERROR)
                return
            finally:
                self._claiming = False
        self._run_asgi(cycle, app)

    def _run_asgi(self, cycle: RequestResponseCycle, app: Any) -> None:
        """Run `app` for the request in a task, as uvicorn does, with the abort extension offered."""
        if cycle.scope["type"] == "http":
            extensions = cycle.scope.setdefault("extensions", {})
            extensions[ABORT_EXTENSION] = {"abort": functools.partial(_abort, cycle)}
        HttpToolsProtocol._start_asgi_task(self, cycle, app)

    def data_received(self, data: bytes) -> None:
        if not self._head_open:
            super().data_received(data)
            self._settle_timer()
            return
        allowed = MAX_HEAD_BYTES - self._head_seen
        if len(data) <= allowed:
            self._head_seen += len(data)
            super().data_received(data)
            self._settle_timer()
            return
        # Feed only what the cap allows; if the head is still unfinished, refuse before buffering more.
        super().data_received(data[:allowed])
        if self.transport.is_closing():
            return
        if self._head_open:
            self._reject(431, "HEADERS_TOO_LARGE", "Request head exceeds 64 KiB")
            return
        protocol = self.transport.get_protocol()
        if protocol is self:
            self.data_received(data[allowed:])
        else:  # upgraded to WebSocket while feeding: the rest belongs to the new protocol
            protocol.data_received(data[allowed:])

    _bad_request = "Malformed HTTP request"

    def send_400_response(self, msg: str) -> None:
        self._reject(400, "BAD_REQUEST", self._bad_request)

    def _reject(self, status: int, code: str, message: str) -> None:
        self._cancel_timer()
        if not self.transport.is_closing():
            self.transport.write(raw_error_response(status, code, message))
            self.transport.close()

    def _settle_timer(self) -> None:
        """Arm the head or body timer once per read, after the parser has seen it all.

        A request that arrives whole in one read (most GETs) then never creates a timer: arming in the
        parser callbacks cost a timer for the head and one for the body per request, each cancelled
        microseconds later. A head or body still incomplete at the end of a read is timed from here,
        which is when its bytes were received."""
        want = self._want
        if want:
            self._want = 0
            if self.transport.is_closing() or self.transport.get_protocol() is not self:
                return
            if want == _HEAD:
                self._arm(self.head_timeout, self._head_expired)
            else:
                self._arm(self.body_timeout, self._body_stalled)

    def _arm(self, delay: float, callback: Any) -> None:
        self._cancel_timer()
        self._timer = self.loop.call_later(delay, callback)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_expired(self) -> None:
        self._timer = None
        if self._head_open:
            self._reject(408, "REQUEST_TIMEOUT", "Request head not received in time")

    def _body_stalled(self) -> None:
        self._timer = None
        cycle = self.cycle
        if cycle is None or not cycle.more_body or self.transport.is_closing():
            return
        if self.flow.read_paused:  # we stopped reading, the client is not to blame: check again later
            self._arm(self.body_timeout, self._body_stalled)
            return
        if cycle.response_started:
            self.transport.close()
        else:
            self._reject(408, "REQUEST_TIMEOUT", "Request body not received in time")

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        super().connection_lost(exc)
        answer = self.streaming
        if answer is not None and answer.events is not None:
            events = answer.events
            answer._stop()
            events.lost()

    def pause_writing(self) -> None:
        super().pause_writing()
        answer = self.streaming
        if answer is not None and answer.events is not None:
            answer.events.writable(False)

    def resume_writing(self) -> None:
        super().resume_writing()
        answer = self.streaming
        if answer is not None and answer.events is not None:
            answer.events.writable(True)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_open = True
        self._want = _HEAD

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        if self._timer is not None or self._want:
            self._want = _BODY  # restarted once this read is fed: a stall is measured from the last data

    def on_message_complete(self) -> None:
        self._cancel_timer()
        self._want = 0
        super().on_message_complete()
        self._head_open = True
        self._head_seen = 0

    def on_headers_complete(self) -> None:
        self._head_open = False
        self._head_seen = 0
        problem = host_problem(self.headers, self.parser.get_http_version())
        if problem is not None:
            # Raising from a parser callback makes the parser fail, which answers 400 and closes.
            self._bad_request = problem
            raise ValueError(problem)
        self._cancel_timer()
        self._want = 0 if self.parser.should_upgrade() else _BODY
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and not isinstance(cycle.transport, CoalescingTransport):
            coalescing = self._coalescing
            if coalescing is None or coalescing._transport is not cycle.transport:
                coalescing = self._coalescing = CoalescingTransport(cycle.transport, self.loop)
            cycle.transport = coalescing  # type: ignore[assignment]

    def on_response_complete(self) -> None:
        cycle = self.cycle
        if cycle is not None and isinstance(cycle.transport, CoalescingTransport):
            cycle.transport.flush()
        super().on_response_complete()


# -- WebSocket tunnels: an upgrade request whose new owner takes the client connection itself -------------

TUNNEL_EXTENSION = "nekzus.tunnel"
# Decides, from the upgrade request's scope, whether the app will tunnel it byte for byte (the reverse
# proxy's WebSocket routes); everything else goes through uvicorn's own WebSocket protocol.
TunnelClaim = Callable[[dict[str, Any]], bool]
_HELD_LIMIT = 64 * 1024


def valid_websocket_key(headers: list[tuple[bytes, bytes]]) -> bool:
    """The handshake fields a byte tunnel relies on: exactly one version-13 line and one 16-byte key."""
    keys = [v for k, v in headers if k == b"sec-websocket-key"]
    versions = [v.strip() for k, v in headers if k == b"sec-websocket-version"]
    if len(keys) != 1 or versions != [b"13"]:
        return False
    try:
        return len(base64.b64decode(keys[0].strip(), validate=True)) == 16
    except (binascii.Error, ValueError):
        return False


class HeldConnection(asyncio.Protocol):
    """A client connection taken away from HTTP after an upgrade request's head.

    Until its new owner `attach`es its own protocol, bytes that arrive are kept (reading pauses past a
    small limit) and a loss is remembered. Before the upgrade is answered the owner talks ASGI (`run`):
    a refusal is written as a plain HTTP response and the connection closes. The connection stays in the
    server's connection set until `release`, so a server shutdown reaches the owner (`on_shutdown`).
    """

    def __init__(
        self,
        transport: asyncio.Transport,
        loop: asyncio.AbstractEventLoop,
        connections: set[Any],
        max_message: int,
    ) -> None:
        self.transport = transport
        self.loop = loop
        self.max_message = max_message  # the server's cap on one client WebSocket message
        self.lost: asyncio.Future[None] = loop.create_future()
        self.on_shutdown: Callable[[], object] | None = None
        self.upgraded = False  # set by the owner once it answered 101
        self._connections = connections
        self._buffer = bytearray()
        self._answered = False
        self._response: dict[str, Any] | None = None
        self._body: list[bytes] = []
        connections.add(self)

    # asyncio.Protocol (until attached)
    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > _HELD_LIMIT:
            self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)

    def attach(self, protocol: asyncio.Protocol) -> bytes:
        """Hand the connection to `protocol`; returns what the client sent after the request head."""
        self.transport.set_protocol(protocol)
        data = bytes(self._buffer)
        self._buffer.clear()
        if not self.transport.is_closing():
            self.transport.resume_reading()
        return data

    def shutdown(self) -> None:
        """Server shutdown (called by uvicorn for every connection in its set)."""
        if self.on_shutdown is not None:
            self.on_shutdown()
        elif not self.upgraded and not self._answered:
            self._write_response(503, [], b"")
        else:
            self.transport.close()

    def release(self) -> None:
        self._connections.discard(self)

    # ASGI, for the app's answer before the upgrade
    async def run(self, app: Any, scope: dict[str, Any]) -> None:
        connected = False

        async def receive() -> dict[str, Any]:
            nonlocal connected
            if not connected:
                connected = True
                return {"type": "websocket.connect"}
            await asyncio.shield(self.lost)
            return {"type": "websocket.disconnect", "code": 1006}

        async def send(message: dict[str, Any]) -> None:
            kind = message["type"]
            if self._answered or self.upgraded:
                return  # already answered (e.g. 503 at shutdown) or tunnelled: nothing more to say
            if kind == "websocket.http.response.start":
                self._response = message
            elif kind == "websocket.http.response.body" and self._response is not None:
                self._body.append(message.get("body", b""))
                if not message.get("more_body", False):
                    start = self._response
                    body = b"".join(self._body)
                    self._write_response(start["status"], list(start.get("headers", [])), body)
            elif kind == "websocket.close":
                # A close before accept is a refusal, answered as uvicorn answers it.
                self._write_response(403, [], b"")
            else:
                raise RuntimeError(f"{kind} is not supported on a tunnelled WebSocket")

        try:
            await app(scope, receive, send)
        except Exception:
            logging.getLogger("nekzus.http").exception("tunnelled WebSocket failed")
        finally:
            if not self._answered and not self.upgraded:
                self._write_response(500, [], b"")
            elif not self._answered and not self.transport.is_closing():
                self.transport.close()
            self.release()

    def _write_response(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self._answered = True
        if self.transport.is_closing():
            return
        phrase = _PHRASES.get(status, b"")
        parts = [b"HTTP/1.1 %d %s\r\n" % (status, phrase)]
        for name, value in headers:
            if name.lower() not in (b"content-length", b"connection"):
                parts.append(b"%s: %s\r\n" % (name, value))
        parts.append(b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        self.transport.write(b"".join(parts) + body)
        self.transport.close()


def _phrases() -> dict[int, bytes]:
    import http

    return {s.value: s.phrase.encode() for s in http.HTTPStatus}


_PHRASES = _phrases()


class TunnellingHttpToolsProtocol(CoalescingHttpToolsProtocol):
    """Hands WebSocket upgrades that `tunnel_claim` accepts to the app with the client connection itself
    (scope extension `nekzus.tunnel`: {"connection": HeldConnection}); others upgrade as usual."""

    tunnel_claim: ClassVar[tuple[TunnelClaim, ...]] = ()  # one decision function, or none

    @classmethod
    def tunnelling(
        cls, base: type[CoalescingHttpToolsProtocol], claim: TunnelClaim | None
    ) -> type[CoalescingHttpToolsProtocol]:
        """`base` (a configured protocol class) that also hands claimed upgrades to the app."""
        if claim is None:
            return base
        return type("TunnellingHttpToolsProtocol", (cls, base), {"tunnel_claim": (claim,)})

    def handle_websocket_upgrade(self) -> None:
        scope = self._tunnel_scope() if self.tunnel_claim else None
        if scope is None or not self.tunnel_claim[0](scope):
            super().handle_websocket_upgrade()
            return
        self.connections.discard(self)
        held = HeldConnection(self.transport, self.loop, self.connections, self.config.ws_max_size)
        scope["extensions"][TUNNEL_EXTENSION] = {"connection": held}
        self.transport.set_protocol(held)
        task = self.loop.create_task(held.run(self.app, scope))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    def _tunnel_scope(self) -> dict[str, Any] | None:
        """The ASGI WebSocket scope of this upgrade request, or None when it is no plain GET handshake."""
        if self.scope.get("method") != "GET" or not valid_websocket_key(self.headers):
            return None
        try:
            parsed = httptools.parse_url(self.url)
        except httptools.HttpParserInvalidURLError:
            return None
        raw_path = parsed.path or b"/"
        path = raw_path.decode("latin-1")
        if "%" in path:
            path = urllib.parse.unquote(path)
        subprotocols: list[str] = []
        for name, value in self.headers:
            if name == b"sec-websocket-protocol":
                subprotocols += [p.strip() for p in value.decode("latin-1").split(",") if p.strip()]
        return {
            "type": "websocket",
            "asgi": {"version": self.asgi_version, "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": "wss" if self.scheme == "https" else "ws",
            "server": self.server,
            "client": self.client,
            "root_path": self.root_path,
            "path": self.root_path + path,
            "raw_path": self.root_path.encode("ascii") + raw_path,
            "query_string": parsed.query or b"",
            "headers": self.headers,
            "subprotocols": subprotocols,
            "state": self.app_state.copy(),
            "extensions": {"websocket.http.response": {}},
        }
