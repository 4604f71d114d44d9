"""The web dashboard at `/`: an HTML shell, hashed static assets and the browser sign-in.

The page is a thin client of the public REST API and WebSocket hub: everything it shows or changes goes
through the same endpoints (and so the same scopes, validation and audit) as any other client. This module
only adds what a browser needs on top: a session cookie instead of a bearer token, and the files.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from nekzus.api.auth import Credentials
from nekzus.api.auth import login as api_login
from nekzus.api.deps import client_ip, services_of
from nekzus.errors import Forbidden, NekzusError, NotFound, error_for
from nekzus.services import Services
from nekzus.ui.assets import AssetTable
from nekzus.ui.sessions import CSRF_HEADER, SESSION_COOKIE, UI_SESSIONS, SessionStore

# Scripts, styles and connections only from this origin; no inline script, no framing, no plugins.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}
ASSET_CACHE = "public, max-age=31536000, immutable"
# The browser sends the session cookie only to the API (and its WebSocket), never to proxied apps under
# /apps/, which share this origin: an upstream must not receive an admin credential.
COOKIE_PATH = "/api/"


# The OpenAPI document names the session cookie (and, for changes, the CSRF header that must go with it)
# as one more way to call every authenticated operation.
SESSION_SCHEME = {
    "type": "apiKey",
    "in": "cookie",
    "name": SESSION_COOKIE,
    "description": "Dashboard session (set by POST /api/v1/ui/login); changes also need the csrf header",
}
CSRF_SCHEME = {
    "type": "apiKey",
    "in": "header",
    "name": "X-CSRF-Token",
    "description": "The session CSRF token (GET /api/v1/ui/session), sent with the cookie on changes",
}
_SAFE = ("get", "head", "options")


def add_session_scheme(schema: dict[str, Any]) -> dict[str, Any]:
    """Offer cookie (+ CSRF header on changes) on every operation that already takes a credential."""
    schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes["session"] = SESSION_SCHEME
    schemes["csrf"] = CSRF_SCHEME
    for item in schema.get("paths", {}).values():
        for method, operation in item.items():
            requirements = operation.get("security") if isinstance(operation, dict) else None
            if not requirements:
                continue
            scopes = sorted({scope for req in requirements for values in req.values() for scope in values})
            cookie: dict[str, list[str]] = {"session": scopes}
            if method not in _SAFE:
                cookie["csrf"] = []
            if cookie not in requirements:
                requirements.append(cookie)
    return schema


class LoginBody(BaseModel):
    username: str = ""
    password: str = ""


def _store(request: Request) -> SessionStore:
    return services_of(request).domains.features.require(UI_SESSIONS)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or bool(services_of(request).config.tls_enabled)


def _session_json(request: Request, username: str, csrf: str) -> dict[str, Any]:
    store = _store(request)
    return {
        "authenticated": True,
        "user": {"username": username},
        "csrfToken": csrf,
        "idleTimeout": int(store.idle_timeout),
    }


def install(api: FastAPI, services: Services) -> None:
    cfg = services.config.dashboard
    if not cfg.enabled:
        return
    assets = AssetTable()
    store = services.domains.features.provide(UI_SESSIONS, SessionStore(cfg.session_idle_timeout))
    auth = services.domains.auth
    services.domains.hub.cookie_token = store.token_from_cookies
    build_openapi = api.openapi

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            api.openapi_schema = add_session_scheme(build_openapi())
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]

    @api.get("/", include_in_schema=False)
    async def shell() -> Response:
        return Response(assets.shell(), media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    @api.get("/ui/assets/{name}", include_in_schema=False)
    async def asset(name: str, request: Request) -> Response:
        found = assets.by_hashed.get(name)
        if found is None:
            raise NotFound("No such asset")
        headers = {
            "Cache-Control": ASSET_CACHE,
            "X-Content-Type-Options": "nosniff",
            "Vary": "Accept-Encoding",
        }
        if "gzip" in request.headers.get("accept-encoding", "") and len(found.gzipped) < len(found.body):
            headers["Content-Encoding"] = "gzip"
            return Response(found.gzipped, media_type=found.media_type, headers=headers)
        return Response(found.body, media_type=found.media_type, headers=headers)

    @api.get("/api/v1/ui/session", include_in_schema=False)
    async def session_status(request: Request) -> Any:
        """Who the browser is signed in as (with the CSRF token its scripts send on mutations)."""
        setup_required = await auth.user_count() == 0
        trusted = auth.trusted(client_ip(request))
        session_id = request.cookies.get(SESSION_COOKIE, "")
        session = store.get(session_id) if session_id else None
        if session is not None:
            try:
                await auth.authenticate_token(session.token, client_ip(request))
            except NekzusError:
                store.drop(session.id)
                session = None
        body: dict[str, Any]
        if session is None:
            body = {"authenticated": False, "setupRequired": setup_required, "trustedNetwork": trusted}
        else:
            body = _session_json(request, session.username, session.csrf)
            body.update(setupRequired=False, trustedNetwork=trusted)
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    @api.post("/api/v1/ui/login", include_in_schema=False)
    async def ui_login(request: Request, body: LoginBody) -> Any:
        """Sign in with the same checks as `POST /api/v1/auth/login`; the token stays server-side."""
        if not request.headers.get("content-type", "").startswith("application/json"):
            # A JSON body cannot be sent cross-site without a CORS preflight, which we never grant.
            raise error_for(415, "UNSUPPORTED_MEDIA_TYPE", "Send the credentials as application/json")
        result = await api_login(request, Credentials(username=body.username, password=body.password))
        username = str(result["user"]["username"])
        old = request.cookies.get(SESSION_COOKIE)
        if old:
            store.drop(old)
        session = store.create(str(result["token"]), username)
        response = JSONResponse(_session_json(request, username, session.csrf))
        response.headers["Cache-Control"] = "no-store"
        response.set_cookie(
            SESSION_COOKIE,
            session.id,
            httponly=True,
            secure=_secure(request),
            samesite="strict",
            path=COOKIE_PATH,
        )
        return response

    @api.post("/api/v1/ui/logout", include_in_schema=False)
    async def ui_logout(request: Request) -> Any:
        """End the session: the user token behind it is revoked, the cookie cleared."""
        session_id = request.cookies.get(SESSION_COOKIE, "")
        session = store.get(session_id, touch=False) if session_id else None
        if session is not None:
            if not store.csrf_ok(session, request.headers.get(CSRF_HEADER)):
                raise Forbidden("Missing or invalid CSRF token", code="CSRF_TOKEN_INVALID")
            store.drop(session.id)
            try:
                principal = await auth.authenticate_token(session.token, client_ip(request))
            except NekzusError:
                principal = None  # an already invalid token needs no revoking
            if principal is not None:
                await auth.revoke_token(principal)
                await auth.audit(
                    "auth.logout", actor=principal.id, target=principal.token_id or "", ip=client_ip(request)
                )
        response = JSONResponse({"message": "Logged out successfully"})
        response.delete_cookie(
            SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict", secure=_secure(request)
        )
        return response
