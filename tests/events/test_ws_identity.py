"""WebSocket auth with real credentials from the API's identity endpoints (device JWT from pairing, user JWT
from dashboard login, API keys): success, expiry, revocation, missing scope, offline delivery to a device.

These need the identity domain; they skip (with that reason) on a tree where it is not merged yet."""

from __future__ import annotations

import time
from collections.abc import Callable

import jwt
import pytest

from tests.events.conftest import WS, create_api_key, pair_device, require_identity, run, user_token
from tests.nekzus_server import NekzusServer

SECRET = "k9Qz7Lr2Vx8Np4Ws6Ty1Ub3Hc5Jd0MfAa"


@pytest.fixture
def idp(make_server: Callable[..., NekzusServer]) -> NekzusServer:
    srv = make_server({"auth": {"hs256_secret": SECRET}, "notifications": {"enabled": True}})
    require_identity(srv)
    return srv


def test_each_credential_kind_authenticates(idp: NekzusServer) -> None:
    device = pair_device(idp, "dev-ws-kinds")
    user = user_token(idp)
    key = create_api_key(idp, ["read:events"], name="ws-reader")

    async def scenario() -> None:
        for token, expected in ((device, "dev-ws-kinds"), (user, "user-admin"), (key, None)):
            ws = await WS.open(idp.ws_url, token)
            assert ws.auth is not None
            if expected is not None:
                assert ws.auth["data"]["deviceId"] == expected
            await ws.close()

    run(scenario())


def test_expired_bad_and_scopeless_credentials_fail(idp: NekzusServer) -> None:
    pair_device(idp, "dev-ws-expired")
    now = int(time.time())
    expired = jwt.encode(
        {
            "iss": "nekzus",
            "aud": "nekzus-mobile",
            "sub": "dev-ws-expired",
            "scopes": ["read:catalog", "read:events"],
            "iat": now - 7200,
            "exp": now - 3600,
        },
        SECRET,
        algorithm="HS256",
    )
    catalog_only = create_api_key(idp, ["read:catalog"], name="catalog-only")

    async def scenario() -> None:
        for token in (expired, expired[:-4] + "AAAA", "nekzus_" + "0" * 64):
            ws = await WS.open(idp.ws_url, token, expect_ok=False)
            assert ws.auth is not None and ws.auth["type"] == "auth_failed", token
            assert ws.auth["data"]["code"] and ws.auth["data"]["error"]
            assert (await ws.wait_closed())[0] == 1008
        ws = await WS.open(idp.ws_url, catalog_only, expect_ok=False)
        assert ws.auth is not None and ws.auth["type"] == "auth_failed"
        assert ws.auth["data"]["code"] == "FORBIDDEN"

    run(scenario())


def test_revoking_a_device_closes_its_socket(idp: NekzusServer) -> None:
    token = pair_device(idp, "dev-ws-revoked")

    async def scenario() -> None:
        watcher = await WS.open(idp.ws_url, "")
        victim = await WS.open(idp.ws_url, token)
        with idp.client() as http:
            assert http.delete("/api/v1/devices/dev-ws-revoked").status_code == 200
        code, reason = await victim.wait_closed()
        assert code == 1008 and reason == "device_revoked"
        told = await watcher.recv_type("device_revoked")
        assert told["data"]["deviceId"] == "dev-ws-revoked"
        again = await WS.open(idp.ws_url, token, expect_ok=False)
        assert again.auth is not None and again.auth["type"] == "auth_failed"
        await watcher.close()

    run(scenario())


def test_offline_device_gets_notification_on_reconnect(idp: NekzusServer) -> None:
    token = pair_device(idp, "dev-ws-offline")
    with idp.client() as http:
        http.post("/api/v1/webhooks/notify", json={"data": {"n": 1}, "deviceIds": ["dev-ws-offline"]})

    async def scenario() -> None:
        ws = await WS.open(idp.ws_url, token)
        got = await ws.recv_type("webhook")
        assert got["data"]["data"] == {"n": 1}
        await ws.send({"type": "notification_ack", "notificationId": got["notificationId"]})
        await ws.barrier()
        await ws.close()
        deadline = time.monotonic() + 5
        with idp.client() as http:
            while time.monotonic() < deadline:
                stats = http.get("/api/v1/notifications/stats").json()
                if stats["totalDelivered"] == 1:
                    break
                time.sleep(0.05)
            assert stats["totalDelivered"] == 1
        back = await WS.open(idp.ws_url, token)
        assert [m for m in await back.barrier() if m["type"] == "webhook"] == []
        await back.close()

    run(scenario())
