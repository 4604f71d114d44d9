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
"""

from __future__ import annotations

from collections.abc import Mapping
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
]


class NekzusError(Exception):
    """Base of every error a domain reports to a caller."""

    status: ClassVar[int] = 500
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
