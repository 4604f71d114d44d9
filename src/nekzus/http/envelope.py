"""The outermost layer of every non-proxy request: request id, version and security headers,
client address, body limit, access log, and the error boundary that keeps stack traces inside."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nekzus import API_VERSION
from nekzus.http.clientip import IPNetwork, resolve_client_ip
from nekzus.http.errors import error_body
from nekzus.http.requestid import new_request_id, request_id_or_new
from nekzus.metrics import Metrics

access_log = logging.getLogger("nekzus.access")
log = logging.getLogger("nekzus.http")


def request_id_from(scope: Scope) -> str:
    """The client's `X-Request-ID` if it passes the shared rule (`nekzus.http.requestid`), else a new id."""
    for key, value in scope.get("headers", ()):
        if key == b"x-request-id":
            return request_id_or_new(value).decode("latin-1")
    return new_request_id().decode("latin-1")


def common_headers(request_id: str, *, tls: bool) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"x-api-version", API_VERSION.encode()),
        (b"x-request-id", request_id.encode()),
    ]
    if tls:
        headers.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
    return headers


SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a streamed body passes the limit.

    An HTTPException so that framework body parsing re-raises it as-is (a 413), not as a parse error.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"Request body exceeds {limit} bytes")


class EnvelopeMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        trusted_proxies: tuple[IPNetwork, ...],
        tls: bool,
        metrics: Metrics | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body_bytes
        self.trusted_proxies = trusted_proxies
        self.tls = tls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_from(scope)
        client_ip = resolve_client_ip(scope, self.trusted_proxies)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["client_ip"] = client_ip
        extra_headers = common_headers(request_id, tls=self.tls) + SECURITY_HEADERS
        status_holder = {"status": 0, "started": False}

        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send, extra_headers, started, status_holder)
            return

        length = _content_length(scope)
        if length is not None and length > self.max_body:
            await self._send_error(
                send, extra_headers, 413, "PAYLOAD_TOO_LARGE", f"Request body exceeds {self.max_body} bytes"
            )
            self._log(scope, 413, started, request_id, client_ip)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLarge(self.max_body)
            return message

        async def wrapped_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = True
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [h for h in extra_headers if h[0] not in present]
                if b"cache-control" not in present and scope["path"].startswith("/api/"):
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, limited_receive, wrapped_send)
        except BodyTooLarge:
            if not status_holder["started"]:
                await self._send_error(
                    send,
                    extra_headers,
                    413,
                    "PAYLOAD_TOO_LARGE",
                    f"Request body exceeds {self.max_body} bytes",
                )
                status_holder["status"] = 413
        except Exception:
            log.exception(
                "unhandled error (request %s %s, id %s)", scope.get("method"), scope["path"], request_id
            )
            if not status_holder["started"]:
                await self._send_error(send, extra_headers, 500, "INTERNAL_ERROR", "Internal server error")
                status_holder["status"] = 500
        self._log(scope, int(status_holder["status"]), started, request_id, client_ip)

    async def _websocket(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        extra_headers: list[tuple[bytes, bytes]],
        started: float,
        status_holder: dict[str, Any],
    ) -> None:
        async def wrapped_send(message: Message) -> None:
            if message["type"] == "websocket.accept":
                status_holder["status"] = 101
                headers = list(message.get("headers", []))
                headers += [h for h in extra_headers[:2]]
                message = {**message, "headers": headers}
            elif message["type"] == "websocket.close" and not status_holder["status"]:
                status_holder["status"] = 403
            elif message["type"] == "websocket.http.response.start":
                status_holder["status"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, wrapped_send)
        except Exception:
            log.exception("unhandled websocket error (id %s)", scope.get("state", {}).get("request_id"))
        self._log(
            scope,
            int(status_holder["status"]),
            started,
            scope["state"]["request_id"],
            scope["state"]["client_ip"],
        )

    async def _send_error(
        self, send: Send, extra: list[tuple[bytes, bytes]], status: int, code: str, message: str
    ) -> None:
        body = error_body(code, message)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            *extra,
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _log(self, scope: Scope, status: int, started: float, request_id: str, client_ip: str) -> None:
        elapsed = time.perf_counter() - started
        if self.metrics is not None:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "WS")
            self.metrics.http_requests_total.labels(method, template, str(status)).inc()
            self.metrics.http_request_duration_seconds.labels(method, template).observe(elapsed)
        if not access_log.isEnabledFor(logging.INFO):
            return
        duration_ms = elapsed * 1000
        # The path only: query strings may carry tokens.
        access_log.info(
            "%s %s %d %.1fms",
            scope.get("method", "WS"),
            scope["path"],
            status,
            duration_ms,
            extra={
                "request_id": request_id,
                "client_ip": client_ip,
                "status": status,
                "duration_ms": round(duration_ms, 2),
                "method": scope.get("method", "WS"),
                "path": scope["path"],
            },
        )


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
