"""Device-id takeover on re-pair, and lockouts a stranger can trigger.

The server trusts only 127.0.0.2 (the "home" address); 127.0.0.1 and 127.0.0.3 are two different
untrusted sources. Clients bind their source address on loopback.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.nekzus_server import NekzusServer

BOOTSTRAP = "perm-bootstrap-token-for-repair-tests-0123456789"
USER, PASSWORD = "owner", "correct horse battery staple"
HOME, STRANGER, ELSEWHERE = "127.0.0.2", "127.0.0.1", "127.0.0.3"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NekzusServer]:
    config = {
        "auth": {"local_networks": [f"{HOME}/32"]},
        "bootstrap": {"tokens": [BOOTSTRAP]},
        "notifications": {"enabled": True},
    }
    server = NekzusServer(config, data_dir=tmp_path_factory.mktemp("repair")).start()
    with _from(server, HOME) as home:
        r = home.post("/api/v1/auth/setup", json={"username": USER, "password": PASSWORD})
        assert r.status_code == 201, r.text
    yield server
    server.stop()


def _from(server: NekzusServer, source: str) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=source)
    return httpx.Client(base_url=server.url, transport=transport, timeout=15)


def _pair(client: httpx.Client, device_id: str, **headers: str) -> httpx.Response:
    body = {"device": {"id": device_id, "platform": "ios", "model": "phone"}}
    return client.post(
        "/api/v1/auth/pair", json=body, headers={"Authorization": f"Bearer {BOOTSTRAP}", **headers}
    )


def _pending(home: httpx.Client, device_id: str) -> int:
    r = home.get("/api/v1/notifications", params={"deviceId": device_id})
    assert r.status_code == 200, r.text
    total: int = r.json()["total"]
    return total


def test_repair_needs_proof_and_starts_clean(srv: NekzusServer) -> None:
    with _from(srv, STRANGER) as stranger, _from(srv, HOME) as home:
        first = _pair(stranger, "victim-phone")
        assert first.status_code == 200, first.text
        owner_token = first.json()["accessToken"]
        r = home.patch(
            "/api/v1/devices/victim-phone", json={"scopes": ["read:catalog", "read:events", "write:*"]}
        )
        assert r.status_code == 200, r.text
        queued = home.post(
            "/api/v1/webhooks/notify", json={"type": "alert", "data": {"n": 1}, "deviceIds": ["victim-phone"]}
        )
        assert queued.status_code == 200, queued.text
        assert _pending(home, "victim-phone") >= 1

        # Knowing the id (ids are listed to every credential) is not enough to take the device over.
        takeover = _pair(stranger, "victim-phone")
        assert takeover.status_code == 409 and takeover.json()["error"]["code"] == "DEVICE_EXISTS"
        forged = _pair(stranger, "victim-phone", **{"X-Device-Token": "a.b.c"})
        assert forged.status_code == 409
        me = stranger.get("/api/v1/devices/victim-phone", headers={"Authorization": f"Bearer {owner_token}"})
        assert me.status_code == 200 and "write:*" in me.json()["scopes"]

        # The device itself may re-pair: its old token stops working, nothing stored passes over.
        again = _pair(stranger, "victim-phone", **{"X-Device-Token": owner_token})
        assert again.status_code == 200, again.text
        assert sorted(again.json()["scopes"]) == ["read:catalog", "read:events"]
        old = stranger.get("/api/v1/devices", headers={"Authorization": f"Bearer {owner_token}"})
        assert old.status_code == 401
        assert _pending(home, "victim-phone") == 0

        # An administrator may re-pair without the device's token: from the trusted network, or
        # showing a user token from anywhere.
        assert _pair(home, "victim-phone").status_code == 200
        with _from(srv, ELSEWHERE) as admin:
            user_token = _login(admin, PASSWORD).json()["token"]
            assert _pair(admin, "victim-phone", **{"X-Device-Token": user_token}).status_code == 200


def _login(client: httpx.Client, password: str) -> httpx.Response:
    return client.post("/api/v1/auth/login", json={"username": USER, "password": password})


def test_bad_passwords_lock_only_their_source(srv: NekzusServer) -> None:
    with _from(srv, STRANGER) as stranger, _from(srv, ELSEWHERE) as owner, _from(srv, HOME) as home:
        for _ in range(5):
            assert _login(stranger, "wrong password!").status_code == 401
        locked = _login(stranger, PASSWORD)
        assert locked.status_code == 429 and locked.json()["error"]["code"] == "RATE_LIMITED"
        assert _login(owner, PASSWORD).status_code == 200
        # Failures from the trusted network itself never lock it out.
        for _ in range(6):
            assert _login(home, "wrong password!").status_code == 401
        assert _login(home, PASSWORD).status_code == 200


def _redeem(client: httpx.Client, code: str) -> Any:
    return client.post("/api/v1/pair", json={"code": code}, headers={"X-Pairing-Request": "true"})


def test_bad_pairing_codes_lock_only_their_source(srv: NekzusServer) -> None:
    with _from(srv, STRANGER) as stranger, _from(srv, ELSEWHERE) as phone, _from(srv, HOME) as home:
        code = home.get("/api/v1/auth/qr").json()["code"]
        wrong = "ABCDEFGH" if code != "ABCDEFGH" else "HGFEDCBA"
        for _ in range(100):
            assert _redeem(stranger, wrong).status_code == 404
        assert _redeem(stranger, wrong).status_code == 429
        r = _redeem(phone, code)
        assert r.status_code == 200, r.text
