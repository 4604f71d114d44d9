"""Route security declared in one place: `Depends(require("write:*"))` on each route.

`require()` with no scope = any authenticated caller; `require(scope)` = caller must hold the scope.
`strict=True` = a JWT (device or user) is needed even from a trusted network.
`credential=True` = a JWT or an API key is needed even from a trusted network (no trusted-network
shortcut), for changes that re-key what every device pins.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from types import EllipsisType
from typing import Any

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPBearer

from nekzus.api.deps import client_ip, services_of
from nekzus.auth.authorize import decide
from nekzus.auth.principal import Authenticator, Principal
from nekzus.errors import Forbidden, Unauthorized
from nekzus.http.errors import ApiError
from nekzus.services import Services
from nekzus.ui.sessions import CSRF_HEADER, SAFE_METHODS, SESSION_COOKIE, UI_SESSIONS


async def current_principal(request: Request) -> Principal | None:
    """Authenticate once per request (cached on request.state)."""
    cached: Principal | EllipsisType | None = getattr(request.state, "principal", ...)
    if not isinstance(cached, EllipsisType):
        return cached
    services = services_of(request)
    ip = client_ip(request)
    authenticator: Authenticator = services.domains.auth
    token = _session_token(request, services)
    if token is not None:
        principal = await authenticator.authenticate_token(token, ip)
    else:
        principal = await authenticator.authenticate(request.headers, ip)
    request.state.principal = principal
    return principal


def _session_token(request: Request, services: Services) -> str | None:
    """The dashboard's session cookie, used only when the request carries no header credential.

    The cookie maps (server-side) to the user token issued at sign-in. A cookie alone must never be
    enough to change anything: every mutation also needs the session's CSRF token in `X-CSRF-Token`,
    which a cross-site page cannot read.
    """
    store = services.domains.features.get(UI_SESSIONS)
    session_id = request.cookies.get(SESSION_COOKIE)
    if store is None or not session_id:
        return None
    if "authorization" in request.headers or "x-api-key" in request.headers:
        return None
    # Background polling (marked by the page) must not keep an idle session alive.
    session = store.get(session_id, touch="x-nekzus-background" not in request.headers)
    if session is None:
        raise Unauthorized("Your session has ended, please sign in again", code="SESSION_EXPIRED")
    if request.method not in SAFE_METHODS and not store.csrf_ok(session, request.headers.get(CSRF_HEADER)):
        raise Forbidden("Missing or invalid CSRF token", code="CSRF_TOKEN_INVALID")
    token: str = session.token
    return token


async def audit_denied(request: Request, principal: Principal, scopes: Iterable[str]) -> None:
    """A scope denial is a security event: audited with the path, method and the scopes required."""
    await services_of(request).domains.audit.record(
        "access.denied",
        actor=principal.id,
        target=request.url.path,
        ip=client_ip(request),
        details={"method": request.method, "required": list(scopes), "kind": principal.kind},
        success=False,
    )


# Declared as security schemes so the OpenAPI document shows, per operation, which credentials are
# accepted and which scopes they need. Parsing is done by the authenticator, not by these objects.
BEARER = HTTPBearer(auto_error=False, scheme_name="bearer", description="Device or user JWT")
API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="apiKey", description="API key")


def require(
    *scopes: str, strict: bool = False, credential: bool = False
) -> Callable[..., Awaitable[Principal]]:
    async def check(request: Request) -> Principal:
        principal = await current_principal(request)
        decision = decide(principal, scopes, jwt_only=strict, credential_only=credential)
        if not decision.allowed:
            if decision.audit and principal is not None:
                await audit_denied(request, principal, scopes)
            raise ApiError(decision.status, decision.code, decision.message)
        assert principal is not None  # an allowed, non-public decision always has a principal
        return principal

    if strict:

        async def jwt_only(
            request: Request, _bearer: Any = Security(BEARER, scopes=list(scopes))
        ) -> Principal:
            return await check(request)

        return jwt_only

    async def any_credential(
        request: Request,
        _bearer: Any = Security(BEARER, scopes=list(scopes)),
        _key: Any = Security(API_KEY, scopes=list(scopes)),
    ) -> Principal:
        return await check(request)

    return any_credential
