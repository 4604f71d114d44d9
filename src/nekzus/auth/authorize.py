"""The one authorization decision, shared by REST routes, the proxy, proxied WebSockets and the hub.

Authentication (who is calling) is `AuthService.authenticate`; this module answers the second question
(may this principal do this) the same way everywhere, so a rule changed here changes for every entry
point at once. It has no side effects: callers audit a denial when `Decision.audit` is set.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from nekzus.auth.principal import Principal
from nekzus.errors import NekzusError, error_for

JWT_KINDS = ("device", "user")


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    status: int = 200
    code: str = ""
    message: str = ""
    # A scope denial by a valid credential: a security event worth an audit record.
    audit: bool = False

    def error(self) -> NekzusError:
        return error_for(self.status, self.code, self.message)

    def as_tuple(self) -> tuple[int, str, str] | None:
        """(status, code, message) of a refusal, None when allowed (the proxy's error shape)."""
        return None if self.allowed else (self.status, self.code, self.message)


ALLOW = Decision(True)


def decide(
    principal: Principal | None,
    scopes: Iterable[str] = (),
    *,
    jwt_only: bool = False,
    credential_only: bool = False,
    public: bool = False,
) -> Decision:
    """May `principal` (None = anonymous) act where `scopes` are required?

    - `public`: anyone may (a public proxied app); the principal is still passed on when there is one.
    - no principal → 401; `jwt_only` and not a device/user JWT → 401 (trusted networks included);
      `credential_only` and neither a JWT nor an API key → 401 (no trusted-network shortcut).
    - a bootstrap token only ever pairs → 403.
    - missing scope → 403 (audited). `access:admin` implies every scope, `read:*`/`write:*` their family.
    """
    if public:
        return ALLOW
    if principal is None:
        return Decision(False, 401, "UNAUTHORIZED", "Authentication required")
    if jwt_only and principal.kind not in JWT_KINDS:
        return Decision(False, 401, "UNAUTHORIZED", "A valid JWT token is required")
    if credential_only and principal.kind not in (*JWT_KINDS, "apikey"):
        return Decision(False, 401, "UNAUTHORIZED", "A valid JWT token or API key is required")
    if principal.kind == "bootstrap":
        return Decision(False, 403, "FORBIDDEN", "Bootstrap tokens can only be used for pairing")
    required = tuple(scopes)
    if required and not principal.allows(*required):
        return Decision(False, 403, "FORBIDDEN", f"Missing required scope: {', '.join(required)}", audit=True)
    return ALLOW
