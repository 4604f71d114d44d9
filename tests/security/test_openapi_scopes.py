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
    assert audit["security"] == [{"bearer": ["access:admin"]}]  # a JWT only: API keys are refused


def test_public_list_names_only_real_operations(client: httpx.Client) -> None:
    schema = client.get("/api/v1/openapi.json").json()
    for method, path in PUBLIC:
        assert method.lower() in schema["paths"].get(path, {}), f"{method} {path} is not an operation"
