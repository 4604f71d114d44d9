"""Every operation in the OpenAPI document declares the scope it needs (or why it is public)."""

from __future__ import annotations

import httpx

from nekzus.api.scopes import PUBLIC, undeclared


def test_every_operation_declares_its_scope(client: httpx.Client) -> None:
    schema = client.get("/api/v1/openapi.json").json()
    assert undeclared(schema) == []
    assert set(schema["components"]["securitySchemes"]) >= {"bearer", "apiKey"}
    routes_post = schema["paths"]["/api/v1/routes"]["post"]
    assert routes_post["x-required-scopes"] == ["write:*"]
    assert {"bearer": ["write:*"]} in routes_post["security"]
    login = schema["paths"]["/api/v1/auth/login"]["post"]
    assert login["x-public"] is True and login["x-required-scopes"] == [] and login["x-scope-note"]
    audit = schema["paths"]["/api/v1/audit-logs"]["get"]
    # A JWT only (API keys are refused), or the dashboard session that stands for one.
    assert audit["security"] == [{"bearer": ["access:admin"]}, {"session": ["access:admin"]}]


def test_session_cookie_is_a_documented_credential(client: httpx.Client) -> None:
    """The dashboard's cookie is offered wherever a credential is; changes need the CSRF header with it."""
    schema = client.get("/api/v1/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["session"] == {
        "type": "apiKey",
        "in": "cookie",
        "name": "nekzus_session",
        "description": schemes["session"]["description"],
    }
    assert schemes["csrf"]["in"] == "header" and schemes["csrf"]["name"] == "X-CSRF-Token"
    assert {"session": ["write:*"], "csrf": []} in schema["paths"]["/api/v1/routes"]["post"]["security"]
    assert {"session": ["read:catalog"]} in schema["paths"]["/api/v1/routes"]["get"]["security"]
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            security = operation.get("security") or []
            sessions = [req for req in security if "session" in req]
            if not security:
                continue
            assert len(sessions) == 1, f"{method} {path}"
            assert ("csrf" in sessions[0]) == (method not in ("get", "head", "options")), f"{method} {path}"
    login = schema["paths"]["/api/v1/auth/login"]["post"]
    assert "security" not in login  # public operations take no credential


def test_public_list_names_only_real_operations(client: httpx.Client) -> None:
    schema = client.get("/api/v1/openapi.json").json()
    for method, path in PUBLIC:
        assert method.lower() in schema["paths"].get(path, {}), f"{method} {path} is not an operation"
