"""Identity and access: principals, credentials, scopes."""

from __future__ import annotations

from nekzus.auth.principal import (
    ADMIN,
    Authenticator,
    AuthError,
    Principal,
    scope_satisfied,
    scopes_satisfied,
)

__all__ = ["ADMIN", "AuthError", "Authenticator", "Principal", "scope_satisfied", "scopes_satisfied"]
