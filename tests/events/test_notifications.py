"""Offline delivery: queued while away, delivered on reconnect and by the retry timer, never again once
acknowledged; plus the admin endpoints (list, retry, delete)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.events.conftest import WS, InProcServer, run
from tests.nekzus_server import NekzusServer

QUEUE_CONFIG = {"notifications": {"enabled": True, "queue": {"retry_interval": "0.5s"}}}


def _rows(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    reply = client.get("/api/v1/notifications", params=params)
    assert reply.status_code == 200, reply.text
    rows: list[dict[str, Any]] = reply.json()["notifications"]
    return rows


def _wait_status(client: httpx.Client, nid: int, status: str, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = next(r for r in _rows(client) if r["id"] == nid)
        if row["status"] == status:
            return row
        time.sleep(0.05)
    raise AssertionError(f"notification {nid} never became {status}")


def test_offline_notification_delivered_on_reconnect_until_acked(
    make_server: Callable[..., NekzusServer],
) -> None:
    srv = make_server(QUEUE_CONFIG)
    with srv.client() as http:
        reply = http.post(
            "/api/v1/webhooks/notify",
            json={"type": "build", "data": {"title": "Build Complete"}, "deviceIds": ["local"]},
        )
        assert reply.status_code == 200 and reply.json() == {"success": True, "sent": True}
        rows = _rows(http, device_id="local")
        assert len(rows) == 1
        row = rows[0]
        assert row["status"] == "pending" and row["type"] == "webhook.notify"
        assert row["deliveredAt"] is None and row["createdAt"].endswith("Z")

        async def scenario() -> None:
            ws = await WS.open(srv.ws_url, "")
            first = await ws.recv_type("webhook")
            assert first["notificationId"] == row["notificationId"]
            assert first["data"] == {
                "type": "build",
                "data": {"title": "Build Complete"},
                "deviceIds": ["local"],
            }
            # Not acknowledged: the retry timer sends it again.
            again = await ws.recv_type("webhook", timeout=5)
            assert again["notificationId"] == row["notificationId"]
            await ws.send({"type": "notification_ack", "notificationId": first["notificationId"]})
            delivered = await asyncio.to_thread(_wait_status, http, row["id"], "delivered")
            assert delivered["deliveredAt"] is not None
            assert delivered["retryCount"] >= 1
            # Acknowledged: the retry timer (0.5 s) stays quiet for three periods.
            with pytest.raises(TimeoutError):
                await ws.recv_type("webhook", timeout=1.5)
            await ws.close()
            back = await WS.open(srv.ws_url, "")
            with pytest.raises(TimeoutError):
                await back.recv_type("webhook", timeout=1.5)
            await back.close()

        run(scenario())
        stats = http.get("/api/v1/notifications/stats").json()
        assert stats["enabled"] is True and stats["totalDelivered"] == 1 and stats["totalPending"] == 0


def test_ack_in_data_and_reconnect_redelivery(make_server: Callable[..., NekzusServer]) -> None:
    srv = make_server({"notifications": {"enabled": True}})
    with srv.client() as http:
        http.post("/api/v1/webhooks/activity", json={"message": "Deployed", "deviceIds": ["local"]})
        row = _rows(http)[0]

        async def scenario() -> None:
            ws = await WS.open(srv.ws_url, "")
            got = await ws.recv_type("webhook")
            assert got["data"]["message"] == "Deployed" and got["data"]["type"] == "webhook.activity"
            await ws.close()
            ws = await WS.open(srv.ws_url, "")  # not acked → sent again on reconnect
            again = await ws.recv_type("webhook")
            assert again["notificationId"] == got["notificationId"]
            await ws.send({"type": "notification_ack", "data": {"notificationId": got["notificationId"]}})
            await asyncio.to_thread(_wait_status, http, row["id"], "delivered")
            await ws.send({"type": "notification_ack", "data": {}})
            assert (await ws.recv_type("error"))["data"]["code"] == "INVALID_MESSAGE"
            await ws.close()

        run(scenario())


def test_admin_endpoints(make_server: Callable[..., NekzusServer]) -> None:
    srv = make_server({"notifications": {"enabled": True}})
    with srv.client() as http:
        for n in range(3):
            http.post("/api/v1/webhooks/notify", json={"data": {"n": n}, "deviceIds": [f"away-{n % 2}"]})
        rows = _rows(http)
        assert len(rows) == 3 and all(r["status"] == "pending" for r in rows)
        assert len(_rows(http, device_id="away-0")) == 2
        assert _rows(http, status="delivered") == []
        paged = http.get("/api/v1/notifications", params={"limit": 1, "offset": 1}).json()
        assert paged["total"] == 3 and paged["limit"] == 1 and paged["offset"] == 1
        assert len(paged["notifications"]) == 1

        stats = http.get("/api/v1/notifications/stats").json()
        assert stats["totalPending"] == 3 and stats["staleCount"] == 0 and stats["enabled"] is True
        assert http.get("/api/v1/notifications/stale").json() == {"staleThresholdHours": 24, "devices": []}

        one = next(r for r in rows if r["deviceId"] == "away-1")
        assert http.post(f"/api/v1/notifications/{one['id']}/retry").json()["status"] == "offline"
        dismissed = http.delete(f"/api/v1/notifications/{one['id']}")
        assert dismissed.status_code == 200
        assert dismissed.json() == {
            "status": "dismissed",
            "id": one["id"],
            "message": "Notification dismissed",
        }
        again = http.delete(f"/api/v1/notifications/{one['id']}")
        assert again.status_code == 404 and again.json()["error"]["code"] == "NOT_FOUND"
        bad = http.delete("/api/v1/notifications/abc")
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "INVALID_ID"
        assert http.post("/api/v1/notifications/999999/retry").status_code == 404

        device = http.delete("/api/v1/notifications/device/away-0")
        assert device.json() == {
            "status": "dismissed",
            "deviceId": "away-0",
            "count": 2,
            "message": "Notifications dismissed for device",
        }
        retried = http.post("/api/v1/notifications/retry", json={"ids": [r["id"] for r in rows]})
        assert retried.json()["status"] == "queued" and retried.json()["count"] == 3
        empty = http.post("/api/v1/notifications/retry", json={"ids": []})
        assert empty.status_code == 400 and empty.json()["error"]["code"] == "INVALID_REQUEST"
        cleared = http.delete("/api/v1/notifications/delivered").json()
        assert cleared == {"status": "cleared", "count": 0, "message": "Delivered notifications cleared"}


def test_admin_endpoints_need_credentials(make_server: Callable[..., NekzusServer]) -> None:
    srv = make_server({"auth": {"local_networks": []}})
    with srv.client() as http:
        for method, path in [
            ("GET", "/api/v1/notifications"),
            ("GET", "/api/v1/notifications/stats"),
            ("DELETE", "/api/v1/notifications/delivered"),
            ("GET", "/api/v1/admin/websocket/clients"),
        ]:
            reply = http.request(method, path)
            assert reply.status_code == 401, (path, reply.text)
            assert reply.json()["error"]["code"] == "UNAUTHORIZED"


def test_revoked_device_notifications_are_deleted(hub_server: InProcServer) -> None:
    queue = hub_server.services.domains.notifications
    hub_server.call(queue.enqueue, "gone-dev", "health_alert", {"title": "down"})
    with hub_server.client() as http:
        assert len(_rows(http, device_id="gone-dev")) == 1
        hub_server.emit("device_revoked", {"deviceId": "gone-dev"})
        deadline = time.monotonic() + 5
        while _rows(http, device_id="gone-dev") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _rows(http, device_id="gone-dev") == []


def test_notifications_respect_subscriptions_and_retry_limit(hub_server: InProcServer) -> None:
    queue = hub_server.services.domains.notifications

    async def scenario() -> None:
        ws = await WS.open(hub_server.ws_url, "device:limit-dev")
        await ws.barrier()
        row = hub_server.call(queue.enqueue, "limit-dev", "health_alert", {"t": 1}, max_retries=1)
        first = await ws.recv_type("health_alert")
        assert first["notificationId"] == row["notificationId"]
        # Re-sends count retries; past max_retries the row fails instead of being sent forever.
        hub_server.call(queue.deliver_pending, "limit-dev", due_only=False)
        assert (await ws.recv_type("health_alert"))["notificationId"] == row["notificationId"]
        hub_server.call(queue.deliver_pending, "limit-dev", due_only=False)
        assert [m for m in await ws.barrier() if m["type"] == "health_alert"] == []
        with hub_server.client() as http:
            failed = next(r for r in _rows(http, device_id="limit-dev") if r["id"] == row["id"])
        assert failed["status"] == "failed" and failed["retryCount"] == 1
        # A topic filter that excludes the type holds the notification back.
        await ws.send({"type": "subscribe", "data": {"topics": ["webhook"]}})
        await ws.recv_type("suback")
        hub_server.call(queue.enqueue, "limit-dev", "health_alert", {"t": 2})
        assert [m for m in await ws.barrier() if m["type"] == "health_alert"] == []
        await ws.close()

    run(scenario())


def test_configured_max_retries_caps_every_type_and_counts_only_real_resends(tmp_path: Path) -> None:
    """`notifications.queue.max_retries` is the ceiling: a webhook notification (whose own default is 5)
    fails after one re-send when the config says 1, and a pass that re-sends nothing counts no retry."""
    config = {"notifications": {"enabled": True, "queue": {"max_retries": 1}}}
    srv = InProcServer(tmp_path, config).start()
    queue = srv.services.domains.notifications

    def row_of(nid: int) -> dict[str, Any]:
        with srv.client() as http:
            return next(r for r in _rows(http, device_id="cap-dev") if r["id"] == nid)

    async def scenario() -> None:
        ws = await WS.open(srv.ws_url, "device:cap-dev")
        await ws.barrier()
        row = srv.call(queue.enqueue, "cap-dev", "webhook.notify", {"t": 1})
        assert row["maxRetries"] == 1
        assert (await ws.recv_type("webhook"))["notificationId"] == row["notificationId"]
        srv.call(queue.deliver_pending, "cap-dev", due_only=False)  # the one retry allowed
        assert (await ws.recv_type("webhook"))["notificationId"] == row["notificationId"]
        for _ in range(3):
            srv.call(queue.deliver_pending, "cap-dev", due_only=False)
        assert [m for m in await ws.barrier() if m["type"] == "webhook"] == []
        failed = row_of(row["id"])
        assert (failed["status"], failed["retryCount"], failed["maxRetries"]) == ("failed", 1, 1)

        # Sent once, then held back by the device's topic filter: passes that send nothing are no retries.
        held = srv.call(queue.enqueue, "cap-dev", "health_alert", {"t": 2})
        assert held["maxRetries"] == 1
        assert (await ws.recv_type("health_alert"))["notificationId"] == held["notificationId"]
        await ws.send({"type": "subscribe", "data": {"topics": ["webhook"]}})
        await ws.recv_type("suback")
        for _ in range(3):
            srv.call(queue.deliver_pending, "cap-dev", due_only=False)
        assert [m for m in await ws.barrier() if m["type"] == "health_alert"] == []
        pending = row_of(held["id"])
        assert (pending["status"], pending["retryCount"]) == ("pending", 0)
        await ws.close()

    try:
        run(scenario())
    finally:
        srv.stop()
