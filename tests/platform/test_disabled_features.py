"""Switched-off features answer with a clear reason, in the error shape."""

from __future__ import annotations

import httpx


def test_discovery_disabled(client: httpx.Client) -> None:
    assert client.get("/api/v1/discovery/proposals").json() == []
    response = client.post("/api/v1/discovery/rediscover")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "DISCOVERY_DISABLED"


def test_containers_disabled(client: httpx.Client) -> None:
    for method, path in [("GET", "/api/v1/containers"), ("POST", "/api/v1/containers/abc/start")]:
        response = client.request(method, path)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "RUNTIME_UNAVAILABLE"
