"""The one error shape every failure leaves the server in: {"error": {"code", "message"}}."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.responses import Response
from starlette.types import Send

from nekzus.errors import NekzusError

STATUS_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    408: "REQUEST_TIMEOUT",
    409: "CONFLICT",
    410: "GONE",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "VALIDATION_ERROR",
    429: "RATE_LIMIT_EXCEEDED",
    500: "INTERNAL_ERROR",
    502: "BAD_GATEWAY",
    503: "SERVICE_UNAVAILABLE",
    504: "GATEWAY_TIMEOUT",
}

DEFAULT_MESSAGES = {
    400: "Invalid request",
    401: "Authentication required",
    403: "Insufficient permissions",
    404: "Resource not found",
    405: "Method not allowed",
    413: "Request body too large",
    429: "Too many requests",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}


class ApiError(NekzusError):
    """The HTTP layer's own refusals (a router's parse step), with the status given per instance.

    Domain code raises the classes of `nekzus.errors` instead; both reach the same handler."""

    def __init__(
        self,
        status: int,
        code: str | None = None,
        message: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            message or DEFAULT_MESSAGES.get(status, "Request failed"),
            code=code or STATUS_CODES.get(status, "ERROR"),
            headers=headers,
            extra=extra,
        )
        self.status = status


def error_body(code: str, message: str, extra: Mapping[str, Any] | None = None) -> bytes:
    """The API's error object under `error`, plus `message` and `code` at the top level: the documented
    shape nests them, and existing dashboards read the top-level `message`."""
    error: dict[str, Any] = {"code": code, "message": message}
    if extra:
        error.update(extra)
    return json.dumps({"error": error, "message": message, "code": code}, separators=(",", ":")).encode()


def error_response(
    status: int,
    code: str | None = None,
    message: str | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Response:
    err = ApiError(status, code, message, headers=headers, extra=extra)
    return Response(
        error_body(err.code, err.message, err.extra),
        status_code=status,
        media_type="application/json",
        headers=err.headers,
    )


async def send_error(
    send: Send,
    status: int,
    code: str | None = None,
    message: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Answer from raw ASGI code (middleware, the proxy) with the same shape."""
    err = ApiError(status, code, message, headers=headers)
    body = error_body(err.code, err.message)
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in err.headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
