"""Small request and response helpers shared by the routers."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import Request, Security
from pydantic import BaseModel, ValidationError

from nekzus.api.deps import client_ip, services_of
from nekzus.api.security import API_KEY, BEARER, audit_denied, require
from nekzus.auth.principal import Principal
from nekzus.auth.service import AuthService
from nekzus.errors import validation_message
from nekzus.http.errors import ApiError

M = TypeVar("M", bound=BaseModel)


def auth_service(request: Request) -> AuthService:
    return services_of(request).domains.auth


async def read_json(request: Request, max_bytes: int) -> Any:
    """The JSON body, with its own (smaller) size limit; empty or malformed bodies are a 400."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise ApiError(413, "PAYLOAD_TOO_LARGE", f"Request body exceeds {max_bytes} bytes")
    if not body.strip():
        raise ApiError(400, "INVALID_REQUEST", "Request body is required")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, "INVALID_JSON", "Request body is not valid JSON") from None


def validate(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(400, "VALIDATION_ERROR", validation_message(exc.errors())) from None


MAX_INT_PARAM = 2**31 - 1


def int_param(value: str | None, default: int, name: str = "value") -> int:
    """Tolerant integer query parameter: garbage means the default, as older clients expect; a number too
    large for the database is refused rather than passed on to fail there."""
    if value is None or value.strip() == "":
        return default
    try:
        number = int(value)
    except ValueError:
        return default
    if abs(number) > MAX_INT_PARAM:
        raise ApiError(400, "VALIDATION_ERROR", f"{name}: must be between 0 and {MAX_INT_PARAM}")
    return number


def page_window(
    limit: str | None, offset: str | None, *, default: int, maximum: int, minimum: int = 1
) -> tuple[int, int]:
    """(limit, offset) of a paged list, tolerant like `int_param`: a limit below `minimum` means the
    default, one above `maximum` the maximum; a negative offset means 0."""
    lim = int_param(limit, default, "limit")
    if lim < minimum:
        lim = default
    return min(lim, maximum), max(0, int_param(offset, 0, "offset"))


def listing(key: str, items: list[Any], **extra: Any) -> dict[str, Any]:
    """A list answer: the items under their name and how many there are, then the endpoint's own fields
    (`total`, `limit`, `offset`, `enabled`, ...)."""
    return {key: items, "count": len(items), **extra}


def require_self_or(scope: str) -> Callable[[Request, str], Awaitable[Principal]]:
    """The device named in the path may act on itself; anyone else needs `scope`."""
    authenticated = require()

    async def dependency(
        request: Request,
        device_id: str,
        _bearer: Any = Security(BEARER, scopes=[scope]),
        _key: Any = Security(API_KEY, scopes=[scope]),
    ) -> Principal:
        principal = await authenticated(request)
        target = device_id.rstrip("/")
        if principal.device_id == target or principal.allows(scope):
            return principal
        await deny(request, principal, (scope,))
        raise ApiError(403, "FORBIDDEN", f"Missing required scope: {scope}")

    return dependency


async def deny(request: Request, principal: Principal, scopes: tuple[str, ...]) -> None:
    await audit_denied(request, principal, scopes)


def ip_of(request: Request) -> str:
    return client_ip(request)
