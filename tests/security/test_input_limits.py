"""Hostile input gets a clear 4xx: numbers too large for the database, JSON nested past the parser's
limit, and webhook mutations with a read-only credential."""

from __future__ import annotations

import httpx

from tests.events.conftest import create_api_key, user_token
from tests.nekzus_server import NekzusServer

DEEP = b'{"a":' * 50_000 + b"1" + b"}" * 50_000


def test_huge_paging_numbers_are_a_400(server: NekzusServer) -> None:
    auth = {"Authorization": f"Bearer {user_token(server)}"}
    with server.client(headers=auth) as client:
        for path in ("/api/v1/audit-logs", "/api/v1/activity/recent", "/api/v1/devices"):
            for param in ("offset", "limit"):
                r = client.get(path, params={param: "9" * 40})
                assert r.status_code == 400, (path, param, r.text)
                assert r.json()["error"]["code"] == "VALIDATION_ERROR"
            assert client.get(path, params={"offset": "0", "limit": "5"}).status_code == 200


def test_deeply_nested_json_is_a_400(client: httpx.Client) -> None:
    headers = {"Content-Type": "application/json"}
    for path in ("/api/v1/webhooks/notify", "/api/v1/webhooks/activity", "/api/v1/notifications/retry"):
        r = client.post(path, content=DEEP, headers=headers)
        assert r.status_code == 400, (path, r.status_code, r.text[:200])
        assert "error" in r.json()


def test_webhooks_need_a_write_credential(server: NekzusServer) -> None:
    reader = create_api_key(server, ["read:catalog", "read:events"], name="reader")
    writer = create_api_key(server, ["write:*"], name="writer")
    body = {"message": "Security alert: click here", "deviceIds": []}
    with server.client() as c:
        for path in ("/api/v1/webhooks/activity", "/api/v1/webhooks/notify"):
            refused = c.post(path, json=body | {"data": {}}, headers={"X-API-Key": reader})
            assert refused.status_code == 403, refused.text
            accepted = c.post(path, json=body | {"data": {}}, headers={"X-API-Key": writer})
            assert accepted.status_code == 200, accepted.text
