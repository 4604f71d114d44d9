"""Response models shared across routers (also what the OpenAPI document shows)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


def _error(description: str) -> dict[str, object]:
    # The schema is referenced, not given as `model`: FastAPI would build a pydantic validator for every
    # status of every route (~300 of them, a tenth of the start-up time) only to describe the response.
    # `with_error_schemas` puts the referenced schema into the document when it is generated.
    schema = {"$ref": "#/components/schemas/ErrorResponse"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    400: _error("Bad request"),
    401: _error("Authentication required"),
    403: _error("Insufficient permissions"),
    429: _error("Rate limit exceeded"),
}


def with_error_schemas(document: dict[str, Any]) -> dict[str, Any]:
    """Add `ErrorResponse` (and what it references) to the OpenAPI document's component schemas."""
    schema = ErrorResponse.model_json_schema(
        ref_template="#/components/schemas/{model}", mode="serialization"
    )
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name, definition in schema.pop("$defs", {}).items():
        schemas.setdefault(name, definition)
    schemas.setdefault("ErrorResponse", schema)
    return document
