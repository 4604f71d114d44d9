"""`POST /api/v1/webhooks/activity` and `/notify`: delivery, targeting, validation, credentials."""

from __future__ import annotations

import re
from collections.abc import Callable

from tests.events.conftest import WS, create_api_key, pair_device, require_identity, run, types_of
from tests.nekzus_server import NekzusServer


def test_activity_webhook_broadcast(server: NekzusServer) -> None:
    async def scenario() -> None:
        ws = await WS.open(server.ws_url, "")
        with server.client() as http:
            reply = http.post(
                "/api/v1/webhooks/activity",
                json={
                    "message": "Deployment completed",
                    "icon": "CheckCircle",
                    "iconClass": "success",
                    "details": "Version 2.0.0 deployed successfully",
                },
            )
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["success"] is True and re.match(r"^webhook-\d+$", body["eventId"])
        got = await ws.recv_type("webhook")
        event = got["data"]
        assert event["id"] == body["eventId"] and event["type"] == "webhook.activity"
        assert event["message"] == "Deployment completed" and event["icon"] == "CheckCircle"
        assert event["iconClass"] == "success" and event["details"] == "Version 2.0.0 deployed successfully"
        assert isinstance(event["timestamp"], int)
        await ws.close()

    run(scenario())


def test_notify_webhook_targets_devices_only(server: NekzusServer) -> None:
    async def scenario() -> None:
        ws = await WS.open(server.ws_url, "")
        with server.client() as http:
            reply = http.post(
                "/api/v1/webhooks/notify",
                json={
                    "type": "custom_event",
                    "data": {"title": "Build Complete"},
                    "device_ids": ["someone-else"],
                },
            )
            assert reply.json() == {"success": True, "sent": True}
            assert types_of(await ws.barrier()) == []
            http.post("/api/v1/webhooks/notify", json={"type": "custom_event", "data": {"status": "success"}})
        got = await ws.recv_type("webhook")
        assert got["data"] == {"type": "custom_event", "data": {"status": "success"}, "deviceIds": []}
        await ws.close()

    run(scenario())


def test_webhook_validation(server: NekzusServer) -> None:
    with server.client() as http:
        missing = http.post("/api/v1/webhooks/activity", json={"icon": "Bell"})
        assert missing.status_code == 400
        assert missing.json()["error"] == {
            "code": "INVALID_REQUEST",
            "message": "Missing required field: message",
        }
        broken = http.post(
            "/api/v1/webhooks/activity", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert broken.status_code == 400 and broken.json()["error"]["message"] == "Invalid JSON payload"
        ids = http.post("/api/v1/webhooks/notify", json={"deviceIds": "dev-1"})
        assert ids.status_code == 400 and ids.json()["error"]["code"] == "INVALID_REQUEST"
        data = http.post("/api/v1/webhooks/notify", json={"data": [1, 2]})
        assert data.status_code == 400
        assert http.get("/api/v1/webhooks/notify").status_code == 405


def test_webhooks_need_credentials_from_untrusted_networks(make_server: Callable[..., NekzusServer]) -> None:
    srv = make_server({"auth": {"local_networks": []}})
    with srv.client() as http:
        for path in ("/api/v1/webhooks/activity", "/api/v1/webhooks/notify"):
            reply = http.post(path, json={"message": "x"})
            assert reply.status_code == 401 and reply.json()["error"]["code"] == "UNAUTHORIZED"


def test_api_key_webhook_from_untrusted_network_reaches_device(
    make_server: Callable[..., NekzusServer],
) -> None:
    """Credentials made on a trusted start, then the same data served with no trusted networks."""
    first = make_server({"notifications": {"enabled": True}})
    require_identity(first)
    key = create_api_key(first, ["write:*"], name="ci-webhooks")
    token = pair_device(first, "dev-webhook-target")
    first.stop()
    srv = make_server(
        {"auth": {"local_networks": []}, "notifications": {"enabled": True}}, data_dir=first.data_dir
    )

    async def scenario() -> None:
        ws = await WS.open(srv.ws_url, token)
        assert ws.auth is not None and ws.auth["data"]["deviceId"] == "dev-webhook-target"
        with srv.client() as http:
            reply = http.post(
                "/api/v1/webhooks/notify",
                json={"type": "ci", "data": {"ok": True}, "deviceIds": ["dev-webhook-target", "dev-offline"]},
                headers={"X-API-Key": key},
            )
            assert reply.status_code == 200, reply.text
            got = await ws.recv_type("webhook")
            assert got["data"]["data"] == {"ok": True}
            activity = http.post(
                "/api/v1/webhooks/activity", json={"message": "hello"}, headers={"X-API-Key": key}
            )
            assert activity.status_code == 200
            assert (await ws.recv_type("webhook"))["data"]["message"] == "hello"
            queued = http.get(
                "/api/v1/notifications", params={"device_id": "dev-offline"}, headers={"X-API-Key": key}
            )
            assert queued.status_code in (200, 403)
        await ws.close()

    run(scenario())
