"""The one error hierarchy of Nekzus' domain code.

Domain services raise these; they never import the HTTP layer. One handler (`nekzus.http.handlers`)
turns each into the API's error shape ``{"error": {"code", "message"}}`` with the status its class
names, so a router never translates exceptions by hand.

    NekzusError                 500  INTERNAL_ERROR   (base; also "something we did not expect")
    ├── Invalid                 400  VALIDATION_ERROR  bad input the caller can fix
    ├── Unauthorized            401  UNAUTHORIZED      no credential, or one that does not verify
    ├── Forbidden               403  FORBIDDEN         a valid credential without the needed scope
    ├── NotFound                404  NOT_FOUND         the named thing does not exist
    ├── Conflict                409  CONFLICT          the request contradicts current state
    ├── Gone                    410  GONE              existed once, no longer usable (expired code)
    ├── PayloadTooLarge         413  PAYLOAD_TOO_LARGE
    ├── RateLimited             429  RATE_LIMIT_EXCEEDED
    ├── Unavailable             503  SERVICE_UNAVAILABLE  a feature is off or an engine is unreachable
    └── UpstreamError           502  BAD_GATEWAY       an engine or peer answered with an error
        └── UpstreamTimeout     504  GATEWAY_TIMEOUT

Every error carries a machine-readable ``code`` (the API's error codes, such as ``ROUTE_NOT_FOUND`` or
``PORT_CONFLICT``), a human ``message`` safe to show to the caller (never a secret, never a stack trace),
optional response ``headers`` (``Retry-After``) and ``extra`` fields merged into the error object.

Domain errors that predate this module (`AuthError`, `CatalogError`, `DiscoveryError`, the runtime
errors) are subclasses that set their status per instance; `error_for(status, code, message)` builds
the class that matches a status. A failed audit write is never an error: `AuditService.record` logs it
and returns, so a committed change is never reported as failed because its audit row was not written.
Validation failures of any pydantic model are worded once, by `validation_message`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

__all__ = [
    "Conflict",
    "Forbidden",
    "Gone",
    "Invalid",
    "NekzusError",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "Unauthorized",
    "Unavailable",
    "UpstreamError",
    "UpstreamTimeout",
    "error_for",
    "validation_message",
]


class NekzusError(Exception):
    """Base of every error a domain reports to a caller."""

    status: int = 500
    default_code: ClassVar[str] = "INTERNAL_ERROR"
    default_message: ClassVar[str] = "Internal server error"

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.code = code or self.default_code
        self.message = message or self.default_message
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})
        super().__init__(f"{self.code}: {self.message}")


class Invalid(NekzusError):
    status = 400
    default_code = "VALIDATION_ERROR"
    default_message = "Invalid request"


class Unauthorized(NekzusError):
    status = 401
    default_code = "UNAUTHORIZED"
    default_message = "Authentication required"


class Forbidden(NekzusError):
    status = 403
    default_code = "FORBIDDEN"
    default_message = "Insufficient permissions"


class NotFound(NekzusError):
    status = 404
    default_code = "NOT_FOUND"
    default_message = "Resource not found"


class Conflict(NekzusError):
    status = 409
    default_code = "CONFLICT"
    default_message = "The request conflicts with the current state"


class Gone(NekzusError):
    status = 410
    default_code = "GONE"
    default_message = "No longer available"


class PayloadTooLarge(NekzusError):
    status = 413
    default_code = "PAYLOAD_TOO_LARGE"
    default_message = "Request body too large"


class RateLimited(NekzusError):
    status = 429
    default_code = "RATE_LIMIT_EXCEEDED"
    default_message = "Too many requests"


class Unavailable(NekzusError):
    status = 503
    default_code = "SERVICE_UNAVAILABLE"
    default_message = "Service unavailable"


class UpstreamError(NekzusError):
    status = 502
    default_code = "BAD_GATEWAY"
    default_message = "Bad gateway"


class UpstreamTimeout(UpstreamError):
    status = 504
    default_code = "GATEWAY_TIMEOUT"
    default_message = "Gateway timeout"


_BY_STATUS: dict[int, type[NekzusError]] = {
    400: Invalid,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    413: PayloadTooLarge,
    429: RateLimited,
    502: UpstreamError,
    503: Unavailable,
    504: UpstreamTimeout,
}


def error_for(status: int, code: str, message: str) -> NekzusError:
    """The error of the class that answers `status` (for codes where the status is data, not a type)."""
    cls = _BY_STATUS.get(status, NekzusError)
    error = cls(message, code=code)
    error.status = status
    return error


def validation_message(errors: Sequence[Mapping[str, Any]], *, skip: tuple[str, ...] = ()) -> str:
    """The first pydantic error as `field.path: reason` (pydantic's "Value error, " prefix dropped;
    a missing field reads "is required"). `skip` drops location parts such as "body" or "query"."""
    first: Mapping[str, Any] = errors[0] if errors else {}
    field = ".".join(str(p) for p in first.get("loc", ()) if p not in skip)
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if first.get("type") == "missing":
        message = "is required"
    return f"{field}: {message}" if field else message
