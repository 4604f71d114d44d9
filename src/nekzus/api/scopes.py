"""Every operation's required scope, published in the OpenAPI document.

Routes declare their scope where they are defined, with `Depends(require(...))`: its security
dependencies put `security` requirements (bearer JWT and/or API key, with the scopes) into each
operation. The few routes that judge the caller themselves or are deliberately open are listed in
`PUBLIC` with the reason. `document_scopes` adds `x-required-scopes` to every operation (`[]` = any valid
credential, or a caller on a trusted network) and `x-public` / `x-scope-note` to the open ones;
`undeclared` lists operations that declare nothing, which a test keeps empty.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from nekzus.api.models import with_error_schemas

# Open to anyone (their own rules apply inside), with the reason. Keys are (method, path template).
PUBLIC: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): "probe; component detail only for trusted or authenticated callers",
    ("GET", "/livez"): "probe",
    ("GET", "/readyz"): "probe",
    ("GET", "/api/v1/healthz"): "probe",
    ("POST", "/api/v1/auth/login"): "exchanges a username and password for a token",
    ("POST", "/api/v1/auth/setup"): "first run only: trusted network or the one-time setup token",
    ("GET", "/api/v1/auth/setup-status"): "tells a client whether first-run setup is still open",
    ("POST", "/api/v1/pair"): "redeems a single-use pairing code",
    ("POST", "/api/v1/auth/pair"): "needs a bootstrap token (from a pairing code or the config)",
    ("POST", "/api/v1/auth/refresh"): "needs the expiring token itself",
    ("GET", "/api/v1/certificates/ca.pem"): "the local CA's public certificate, for installing on devices",
}

_METHODS = ("get", "put", "post", "delete", "patch", "options", "trace")


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for path, item in schema.get("paths", {}).items():
        for method in _METHODS:
            operation = item.get(method)
            if isinstance(operation, dict):
                found.append((method.upper(), path, operation))
    return found


def undeclared(schema: dict[str, Any]) -> list[str]:
    """`METHOD path` of every operation that declares no scope and is not listed as public."""
    return [
        f"{method} {path}"
        for method, path, operation in _operations(schema)
        if not operation.get("security") and (method, path) not in PUBLIC
    ]


def annotate(schema: dict[str, Any]) -> dict[str, Any]:
    for method, path, operation in _operations(schema):
        requirements = operation.get("security") or []
        if requirements:
            scopes = sorted({scope for req in requirements for values in req.values() for scope in values})
            operation["x-required-scopes"] = scopes
            continue
        reason = PUBLIC.get((method, path))
        if reason is not None:
            operation["x-required-scopes"] = []
            operation["x-public"] = True
            operation["x-scope-note"] = reason
    return schema


def document_scopes(api: FastAPI) -> None:
    """Wrap `api.openapi` so every operation in the document carries its scope annotations."""
    build = api.openapi

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            api.openapi_schema = annotate(with_error_schemas(build()))
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]
