"""Audit rows for every security event; the activity feed; admin info and stats."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.auth.conftest import TRUSTED, bearer, create_admin, error_code, login, pair
from tests.nekzus_server import NekzusServer


@pytest.fixture(scope="module")
def srv(module_server: Callable[..., NekzusServer]) -> NekzusServer:
    return module_server(TRUSTED)


@pytest.fixture(scope="module")
def admin(srv: NekzusServer) -> dict[str, str]:
    with srv.client() as c:
        create_admin(c)
        c.post("/api/v1/auth/login", json={"username": "admin", "password": "wrong password"})
        return bearer(login(c))


def audit(client: httpx.Client, admin: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    r = client.get("/api/v1/audit-logs", params=params, headers=admin)
    assert r.status_code == 200, r.text
    logs: list[dict[str, Any]] = r.json()["logs"]
    return logs


def find(
    client: httpx.Client, admin: dict[str, str], action: str, timeout: float = 5.0, **match: Any
) -> dict[str, Any]:
    """The newest row of `action` matching `match` (audit writes for refusals may land a moment later)."""
    deadline = time.monotonic() + timeout
    while True:
        for row in audit(client, admin, action=action, limit=1000):
            if all(row.get(k) == v for k, v in match.items()):
                return row
        if time.monotonic() > deadline:
            raise AssertionError(f"no audit row {action} {match}")
        time.sleep(0.1)


def test_audit_log_shape_and_auth(client: httpx.Client, admin: dict[str, str]) -> None:
    r = client.get("/api/v1/audit-logs")  # trusted network, but strict JWT
    assert r.status_code == 401 and error_code(r) == "UNAUTHORIZED"
    r = client.get("/api/v1/audit-logs", headers=admin)
    body = r.json()
    assert set(body) >= {"logs", "limit", "offset", "count"}
    assert body["limit"] == 100 and body["offset"] == 0 and body["count"] == len(body["logs"])
    row = body["logs"][0]
    assert set(row) >= {"id", "action", "actor", "target", "details", "ip", "timestamp"}
    assert isinstance(row["details"], str) and isinstance(json.loads(row["details"]), dict)
    assert row["timestamp"].endswith("Z")
    ids = [r["id"] for r in body["logs"]]
    assert ids == sorted(ids, reverse=True)


def test_user_events_are_audited(client: httpx.Client, admin: dict[str, str]) -> None:
    setup = find(client, admin, "auth.setup", actor="user-admin")
    assert setup["ip"] == "127.0.0.1"
    assert find(client, admin, "auth.login", actor="user-admin", success=True)
    failed = find(client, admin, "auth.login", actor="user-admin", success=False)
    assert json.loads(failed["details"])["reason"] == "bad credentials"
    token = login(client)
    client.post("/api/v1/auth/logout", headers=bearer(token))
    assert find(client, admin, "auth.logout", actor="user-admin")


def test_pairing_and_device_events_are_audited(client: httpx.Client, admin: dict[str, str]) -> None:
    code = client.get("/api/v1/auth/qr", headers=admin).json()["code"]
    config = client.post("/api/v1/pair", json={"code": code}, headers={"X-Pairing-Request": "true"}).json()
    pair(client, "audited-phone", token=config["bootstrapToken"])
    assert find(client, admin, "pairing.qr", actor="user-admin")
    assert find(client, admin, "pairing.redeem", success=True)
    paired = find(client, admin, "device.paired", actor="audited-phone")
    assert paired["target"] == "audited-phone"
    assert json.loads(paired["details"])["platform"] == "ios"
    client.post("/api/v1/pair", json={"code": "ZZZZZZZZ"}, headers={"X-Pairing-Request": "true"})
    assert find(client, admin, "pairing.redeem", success=False)
    client.post("/api/v1/auth/pair", json={"device": {"platform": "ios"}}, headers=bearer("bogus-token"))
    assert find(client, admin, "device.pair", success=False)

    client.patch("/api/v1/devices/audited-phone", json={"deviceName": "Renamed"}, headers=admin)
    assert find(client, admin, "device.updated", target="audited-phone", actor="user-admin")
    client.delete("/api/v1/devices/audited-phone", headers=admin)
    revoked = find(client, admin, "device.revoked", target="audited-phone")
    assert revoked["actor"] == "user-admin" and revoked["ip"] == "127.0.0.1"


def test_api_key_and_denial_events_are_audited(client: httpx.Client, admin: dict[str, str]) -> None:
    created = client.post(
        "/api/v1/apikeys", json={"name": "ci", "scopes": ["read:catalog"]}, headers=admin
    ).json()
    row = find(client, admin, "apikey.created", target=created["id"])
    assert created["key"] not in row["details"]
    # A scope denial
    r = client.get("/api/v1/apikeys", headers={"X-API-Key": created["key"]})
    assert r.status_code == 403
    denied = find(client, admin, "access.denied", actor=created["id"])
    assert denied["target"] == "/api/v1/apikeys" and not denied["success"]
    # Revocation, then a refused use of the revoked key
    client.delete(f"/api/v1/apikeys/{created['id']}", headers=admin)
    assert find(client, admin, "apikey.revoked", target=created["id"])
    assert client.get("/api/v1/devices", headers={"X-API-Key": created["key"]}).status_code == 401
    assert find(client, admin, "apikey.denied", target=created["id"])
    # A forged token
    assert client.get("/api/v1/devices", headers=bearer("x.y.z")).status_code == 401
    assert find(client, admin, "auth.token_rejected", ip="127.0.0.1")


def test_audit_filters_and_paging(client: httpx.Client, admin: dict[str, str]) -> None:
    # Events of its own, so the test does not depend on which tests ran before it in this process.
    for name in ("paging-a", "paging-b"):
        created = client.post(
            "/api/v1/apikeys", json={"name": name, "scopes": ["read:catalog"]}, headers=admin
        )
        client.delete(f"/api/v1/apikeys/{created.json()['id']}", headers=admin)
    everything = audit(client, admin, limit=1000)
    assert len(everything) >= 5
    logins = audit(client, admin, action="auth.login")
    assert logins and all(r["action"] == "auth.login" for r in logins)
    mine = audit(client, admin, actor="user-admin", action="auth.login")
    assert mine and all(r["actor"] == "user-admin" for r in mine)
    page = client.get("/api/v1/audit-logs", params={"limit": 2, "offset": 1}, headers=admin).json()
    assert page["limit"] == 2 and page["offset"] == 1
    assert [r["id"] for r in page["logs"]] == [r["id"] for r in everything[1:3]]
    assert client.get("/api/v1/audit-logs", params={"limit": 5000}, headers=admin).json()["limit"] == 1000
    assert client.get("/api/v1/audit-logs", params={"limit": "junk"}, headers=admin).json()["limit"] == 100
    assert audit(client, admin, action="no.such.action") == []


def test_activity_feed(client: httpx.Client, admin: dict[str, str]) -> None:
    for i in range(12):
        pair(client, f"feed-{i}")
    r = client.get("/api/v1/activity/recent")
    assert r.status_code == 200
    items = r.json()
    assert isinstance(items, list) and len(items) >= 12  # not capped at 10
    newest = items[0]
    assert newest["type"] == "device_paired" and newest["message"] == "Device paired: Model of feed-11"
    assert newest["icon"] == "Smartphone" and newest["iconClass"] == "success"
    assert isinstance(newest["timestamp"], int) and newest["timestamp"] > 1_700_000_000_000
    assert len({i["id"] for i in items}) == len(items)
    pair(client, "feed-0")  # re-pairing gives a new, distinct id
    again = client.get("/api/v1/activity/recent").json()
    assert again[0]["id"] != items[11 - 0]["id"]

    page = client.get("/api/v1/activity/recent", params={"limit": 5, "offset": 2}).json()
    assert set(page) == {"activities", "total", "limit", "offset"}
    assert page["limit"] == 5 and page["offset"] == 2 and page["total"] >= 13
    assert [a["id"] for a in page["activities"]] == [a["id"] for a in again[2:7]]
    assert client.get("/api/v1/activity/recent", params={"limit": 0}).json()["activities"] == []

    client.delete("/api/v1/devices/feed-3", headers=admin)
    latest = client.get("/api/v1/activity/recent").json()[0]
    assert latest["type"] == "device_revoked" and "feed-3" in latest["id"]


def test_devices_listing(client: httpx.Client) -> None:
    pair(client, "list-a")
    r = client.get("/api/v1/devices")
    assert r.status_code == 200 and isinstance(r.json(), list)
    page = client.get("/api/v1/devices", params={"limit": 2}).json()
    assert set(page) == {"devices", "total", "limit", "offset"}
    assert len(page["devices"]) == 2 and page["total"] >= 2
    assert client.get("/api/v1/devices", params={"offset": 10_000}).json()["devices"] == []
    assert client.get("/api/v1/admin/devices").json() == client.get("/api/v1/devices").json()
    assert client.get("/api/v1/devices/nope").status_code == 404
    assert error_code(client.get("/api/v1/devices/nope")) == "DEVICE_NOT_FOUND"
    r = client.get("/api/v1/devices/a..b")
    assert r.status_code == 400 and error_code(r) == "INVALID_DEVICE_ID"
    r = client.get("/api/v1/devices/" + "x" * 101)
    assert r.status_code == 400
    r = client.patch("/api/v1/devices/list-a", json={"deviceName": ""})
    assert r.status_code == 400 and error_code(r) == "VALIDATION_ERROR"
    r = client.patch("/api/v1/devices/list-a", json={"deviceName": "n" * 256})
    assert r.status_code == 400
    r = client.patch("/api/v1/devices/list-a", content=b"{")
    assert r.status_code == 400
    r = client.patch("/api/v1/devices/list-a", content=b'{"deviceName":"' + b"n" * 11000 + b'"}')
    assert r.status_code == 413
    r = client.patch("/api/v1/devices/list-a", json={"device_name": "Snake case"})
    assert r.status_code == 200 and r.json()["deviceName"] == "Snake case"


def test_admin_info_and_stats(client: httpx.Client, srv: NekzusServer) -> None:
    info = client.get("/api/v1/admin/info").json()
    assert info["version"] and info["buildDate"]
    assert info["nexusId"].startswith("nexus_") and isinstance(info["capabilities"], list)
    token = pair(client, "stats-phone")["accessToken"]
    client.get("/api/v1/devices", headers=bearer(token))
    stats = client.get("/api/v1/stats").json()
    assert set(stats) == {"routes", "devices", "discoveries", "requests"}
    assert stats["devices"]["value"] >= 1
    assert stats["devices"]["trend"].endswith("online now") and stats["devices"]["trendUp"] is True
    assert stats["requests"]["value"] > 0 and stats["requests"]["trend"].endswith(" total")
    assert stats["routes"] == {"value": 0, "trend": "0 active", "trendUp": False}
    assert stats["discoveries"]["value"] == 0
    assert client.get("/api/v1/stats/quick").status_code == 401  # strict JWT
    quick = client.get("/api/v1/stats/quick", headers=bearer(token)).json()
    assert quick["devicesTotal"] >= 1 and quick["devicesOnline"] >= 1 and "avgLatency" in quick
