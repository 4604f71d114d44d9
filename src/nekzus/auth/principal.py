"""Who is calling, and what they may do. Shared by every route, the proxy and the WebSocket hub."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from nekzus.errors import NekzusError

PrincipalKind = Literal["trusted", "device", "user", "apikey", "bootstrap"]

ADMIN = "access:admin"


def scope_satisfied(held: Iterable[str], required: str) -> bool:
    """`access:admin` implies everything; `read:*` / `write:*` cover any `read:…` / `write:…`."""
    held_set = set(held)
    if ADMIN in held_set or required in held_set:
        return True
    return any(scope.endswith(":*") and required.startswith(scope[:-1]) for scope in held_set)


def scopes_satisfied(held: Iterable[str], required: Iterable[str]) -> bool:
    held_list = list(held)
    return all(scope_satisfied(held_list, r) for r in required)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller.

    kind: `trusted` (a request from `auth.local_networks`, acts as admin), `device` (paired device JWT),
    `user` (dashboard login JWT), `apikey`, `bootstrap` (pairing only).
    """

    kind: PrincipalKind
    id: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    name: str = ""
    token_id: str | None = None
    # When the credential stops being valid (token `exp`, API key expiry); long-lived connections
    # opened with it are closed then.
    expires_at: float | None = None

    def allows(self, *required: str) -> bool:
        return scopes_satisfied(self.scopes, required)

    @property
    def device_id(self) -> str | None:
        return self.id if self.kind == "device" else None

    @property
    def rate_key(self) -> str:
        return f"{self.kind}:{self.id}"


# A request from `auth.local_networks` without a credential: acts as administrator. The one copy.
TRUSTED = Principal("trusted", "local", frozenset({ADMIN}), name="local")


class AuthError(NekzusError):
    """A presented credential is bad (401) or not enough (403)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message, code=code)
        self.status = status


class Headers(Protocol):
    """Case-insensitive header lookup (Starlette's Headers, a plain dict, the proxy's raw-header view)."""

    def get(self, key: str, /) -> str | None: ...


class Authenticator(Protocol):
    """The one authentication step (implemented by the identity domain, `services.domains.auth`).

    `authenticate` looks at `Authorization: Bearer …` and `X-API-Key`, and the client address:
    - a presented credential is judged by itself: bad/expired/revoked → AuthError(401);
    - no credential from a trusted network → a `trusted` principal with `access:admin`;
    - no credential otherwise → None.
    It must be cheap (no database round trip per request on the proxy path).
    """

    async def authenticate(self, headers: Headers, client_ip: str) -> Principal | None: ...

    async def authenticate_token(self, token: str, client_ip: str) -> Principal | None: ...
