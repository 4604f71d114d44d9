"""Exception handlers that turn framework errors into the API's error shape."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from nekzus.errors import NekzusError, validation_message
from nekzus.http.errors import error_response

log = logging.getLogger("nekzus.http")


_LOCATIONS = ("body", "query", "path", "header")


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in _LOCATIONS]
    return ".".join(parts)


async def _domain_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, NekzusError)
    if exc.status >= 500 and type(exc) is NekzusError:
        log.error("domain error: %s", exc.code, exc_info=exc)
    return error_response(exc.status, exc.code, exc.message, exc.headers, exc.extra)


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 404:
        return error_response(404, "NOT_FOUND", "Resource not found", headers)
    if exc.status_code == 405:
        return error_response(405, "METHOD_NOT_ALLOWED", "Method not allowed for this path", headers)
    detail = exc.detail if isinstance(exc.detail, str) else None
    return error_response(exc.status_code, None, detail, headers)


async def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {}
    kind = first.get("type", "")
    if kind == "json_invalid":
        return error_response(400, "INVALID_JSON", "Request body is not valid JSON")
    field = _field(tuple(first.get("loc", ())))
    if kind == "missing" and not field:
        return error_response(400, "INVALID_REQUEST", "Request body is required")
    return error_response(400, "VALIDATION_ERROR", validation_message(errors, skip=_LOCATIONS))


async def _unhandled(_request: Request, exc: Exception) -> Response:
    log.error("unhandled error: %s", type(exc).__name__, exc_info=exc)
    return error_response(500, "INTERNAL_ERROR", "Internal server error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(NekzusError, _domain_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unhandled)
