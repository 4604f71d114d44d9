"""The HTTP envelope: headers on every response and the API's error shape on every failure."""

from __future__ import annotations

import socket
from collections.abc import Callable

import httpx
import pytest

from tests.nekzus_server import NekzusServer


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "message", "code"}
    assert body["error"]["code"] == code == body["code"]
    assert body["message"] == body["error"]["message"]
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def test_common_headers_on_success(client: httpx.Client) -> None:
    response = client.get("/livez")
    assert response.headers["x-api-version"] == "v1"
    assert len(response.headers["x-request-id"]) >= 16
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert "strict-transport-security" not in response.headers  # plain HTTP


def test_sane_request_id_is_echoed_and_insane_one_replaced(client: httpx.Client) -> None:
    assert (
        client.get("/livez", headers={"X-Request-ID": "abc-123.def"}).headers["x-request-id"] == "abc-123.def"
    )
    replaced = client.get("/livez", headers={"X-Request-ID": "bad id\twith<script>"}).headers["x-request-id"]
    assert replaced != "bad id\twith<script>"
    assert replaced.isalnum()
    too_long = "a" * 500
    assert client.get("/livez", headers={"X-Request-ID": too_long}).headers["x-request-id"] != too_long


def test_unknown_api_path_is_json_404(client: httpx.Client) -> None:
    response = client.get("/api/v1/does-not-exist")
    assert_error(response, 404, "NOT_FOUND")
    assert response.headers["x-api-version"] == "v1"
    assert response.headers["cache-control"] == "no-store"
    assert_error(client.delete("/api/v2/anything"), 404, "NOT_FOUND")
    assert_error(client.get("/no/such/page"), 404, "NOT_FOUND")


def test_wrong_method_is_json_405(client: httpx.Client) -> None:
    response = client.post("/readyz")
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert "GET" in response.headers["allow"]
    assert_error(client.put("/api/v1/healthz"), 405, "METHOD_NOT_ALLOWED")


def test_body_over_the_limit_is_413(make_server: Callable[..., NekzusServer]) -> None:
    srv: NekzusServer = make_server({"server": {"max_body_bytes": 2048}})
    with srv.client() as c:
        assert_error(c.post("/api/v1/anything", content=b"x" * 4096), 413, "PAYLOAD_TOO_LARGE")
        assert c.get("/readyz").text == "ok"


def test_openapi_document_and_docs_page(client: httpx.Client) -> None:
    spec = client.get("/api/v1/openapi.json")
    assert spec.status_code == 200
    document = spec.json()
    assert document["openapi"].startswith("3.")
    assert "/healthz" in document["paths"]
    page = client.get("/api/docs")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert "/api/v1/openapi.json" in page.text


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /livez HTTP/1.1\r\nHost: a\x00b\r\n\r\n",
        b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GARBAGE\r\n\r\n",
    ],
)
def test_malformed_requests_do_not_hurt_the_server(server: NekzusServer, raw: bytes) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(raw)
        reply = sock.recv(4096)
    assert reply == b"" or reply.startswith(b"HTTP/1.1 4")
    assert httpx.get(server.url + "/livez").text == "ok"


def test_openapi_operations_are_unique_and_typed(client: httpx.Client) -> None:
    document = client.get("/api/v1/openapi.json").json()
    ids = [op["operationId"] for ops in document["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    login = document["paths"]["/api/v1/auth/login"]["post"]
    assert "requestBody" in login
    assert "ErrorResponse" in document["components"]["schemas"]
