"""Hub routing against the real ASGI stack on a loopback port, with a stub authenticator so every
principal kind can be exercised, and bus events published from the test."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
import websockets

from nekzus.events.types import EventType
from tests.events.conftest import WS, InProcServer, run, types_of

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")

# Every server → client message type the API lists (plus the other event types on the bus).
REF_TYPES = [
    "discovery",
    "config_reload",
    "device_paired",
    "health_change",
    "webhook",
    "container.start.completed",
    "container.stop.completed",
    "container.restart.completed",
    "container.logs.data",
    "app_registered",
    "proposal_dismissed",
]


def test_auth_success_hello_and_envelope(hub_server: InProcServer) -> None:
    async def scenario() -> None:
        ws = await WS.open(hub_server.ws_url, "device:dev-a1")
        assert ws.auth is not None and ws.hello is not None
        assert ws.auth["data"] == {"deviceId": "dev-a1", "message": "authenticated"}
        assert RFC3339.match(ws.auth["timestamp"])
        hello = ws.hello["data"]
        assert hello["message"] == "connected"
        assert re.match(r"^nexus_[0-9a-f]{12}$", hello["nexusId"])
        assert hello["version"] and isinstance(hello["timestamp"], int)
        assert RFC3339.match(ws.hello["timestamp"])
        await ws.close()

    run(scenario())


@pytest.mark.parametrize(
    ("token", "code"),
    [
        ("garbage", "INVALID_TOKEN"),
        ("expired:x", "TOKEN_EXPIRED"),
        ("noevents:dev-x", "FORBIDDEN"),
        ("bootstrap", "FORBIDDEN"),
    ],
)
def test_auth_failures(hub_server: InProcServer, token: str, code: str) -> None:
    async def scenario() -> None:
        ws = await WS.open(hub_server.ws_url, token, expect_ok=False)
        assert ws.auth is not None
        assert ws.auth["type"] == "auth_failed"
        assert ws.auth["data"]["code"] == code
        assert ws.auth["data"]["error"]
        closed, _ = await ws.wait_closed()
        assert closed == 1008

    run(scenario())


def test_first_frame_must_be_auth(hub_server: InProcServer) -> None:
    async def scenario() -> None:
        ws = await WS.open(hub_server.ws_url, None)
        await ws.send({"type": "subscribe", "data": {"topics": ["#"]}})
        failed = await ws.recv()
        assert failed["type"] == "auth_failed"
        assert failed["data"]["error"] == "expected auth message"
        assert (await ws.wait_closed())[0] == 1008

    run(scenario())


def test_auth_timeout(hub_server: InProcServer) -> None:
    hub = hub_server.services.domains.hub
    hub.auth_timeout = 0.3

    async def scenario() -> None:
        ws = await WS.open(hub_server.ws_url, None)
        failed = await ws.recv()
        assert failed["type"] == "auth_failed"
        assert failed["data"] == {"error": "timeout waiting for auth message", "code": "AUTH_TIMEOUT"}
        assert (await ws.wait_closed())[0] == 1008

    try:
        run(scenario())
    finally:
        hub.auth_timeout = 15.0


def test_every_message_type_reaches_its_audience_only(hub_server: InProcServer) -> None:
    async def scenario() -> None:
        a1 = await WS.open(hub_server.ws_url, "device:aud-a")
        a2 = await WS.open(hub_server.ws_url, "device:aud-a")
        b = await WS.open(hub_server.ws_url, "device:aud-b")
        user = await WS.open(hub_server.ws_url, "user:alice")
        trusted = await WS.open(hub_server.ws_url, "")
        everyone = {"a1": a1, "a2": a2, "b": b, "user": user, "trusted": trusted}
        for ws in everyone.values():
            await ws.barrier()  # swallow device_status noise from the set-up
        a1_id = hub_server.call(lambda: _connection_of(hub_server, "aud-a", 0))

        cases: list[tuple[dict[str, Any], set[str]]] = [
            ({}, set(everyone)),
            ({"device_id": "aud-a"}, {"a1", "a2"}),
            ({"device_id": "aud-b", "include_admins": True}, {"b", "user", "trusted"}),
            ({"connection_id": a1_id}, {"a1"}),
            ({"device_id": "nobody"}, set()),
        ]
        for type_ in REF_TYPES:
            for audience, expected in cases:
                payload = {"probe": type_, "audience": sorted(audience)}
                hub_server.emit(type_, payload, **audience)
                for name, ws in everyone.items():
                    got = [m for m in await ws.barrier() if m["type"] == type_]
                    if name in expected:
                        assert len(got) == 1, (type_, audience, name, got)
                        assert got[0]["data"] == payload
                        assert RFC3339.match(got[0]["timestamp"])
                    else:
                        assert got == [], (type_, audience, name, got)
        for ws in everyone.values():
            await ws.close()

    run(scenario())


def _connection_of(server: InProcServer, principal: str, index: int) -> str:
    hub = server.services.domains.hub
    clients = sorted(hub.by_principal[principal], key=lambda c: c.connected_at)
    return str(clients[index].id)


def test_topic_subscriptions_filter_everything(hub_server: InProcServer) -> None:
    async def scenario() -> None:
        ws = await WS.open(hub_server.ws_url, "device:topics-1")
        plain = await WS.open(hub_server.ws_url, "device:topics-2")
        await ws.send({"type": "subscribe", "data": {"topics": ["container.+.completed", "health_change"]}})
        ack = await ws.recv_type("suback")
        assert ack["data"] == {"topics": ["container.+.completed", "health_change"], "success": True}
        await ws.barrier()
        await plain.barrier()

        hub_server.emit("container.start.completed", {"n": 1})
        hub_server.emit("container.logs.data", {"n": 2}, device_id="topics-1")
        hub_server.emit("discovery", {"n": 3})
        hub_server.emit("health_change", {"n": 4}, device_id="topics-1")
        hub_server.emit("custom", {"n": 5}, topic="container.x.completed")
        assert _numbers(await ws.barrier()) == [1, 4, 5]
        assert _numbers(await plain.barrier()) == [1, 3, 5]

        await ws.send({"type": "subscribe", "data": {"topics": ["bad..topic"]}})
        nack = await ws.recv_type("suback")
        assert nack["data"]["success"] is False and nack["data"]["error"]
        await ws.send({"type": "subscribe", "data": {"topics": ["a.#.b"]}})
        assert (await ws.recv_type("suback"))["data"]["success"] is False

        await ws.send({"type": "unsubscribe", "data": {"topics": ["container.+.completed", "health_change"]}})
        unack = await ws.recv_type("unsuback")
        assert unack["data"]["success"] is True
        hub_server.emit("discovery", {"n": 6})
        assert [m["data"]["n"] for m in await ws.barrier() if m["type"] == "discovery"] == [6]

        await ws.send({"type": "subscribe", "data": {"topics": ["#"]}})
        await ws.recv_type("suback")
        hub_server.emit("anything.at.all", {"n": 7})
        assert _numbers(await ws.barrier()) == [7]
        await ws.close()
        await plain.close()

    run(scenario())


def _numbers(messages: list[dict[str, Any]]) -> list[int]:
    return [m["data"]["n"] for m in messages if m["type"] != "device_status"]


def test_device_status_online_offline(hub_server: InProcServer) -> None:
    async def scenario() -> None:
        watcher = await WS.open(hub_server.ws_url, "user:watcher")
        await watcher.barrier()
        first = await WS.open(hub_server.ws_url, "device:status-dev")
        second = await WS.open(hub_server.ws_url, "device:status-dev")
        statuses = [m["data"] for m in await watcher.barrier() if m["type"] == "device_status"]
        assert statuses == [{"deviceId": "status-dev", "status": "online"}]
        await first.close()
        await second.barrier()
        assert [m for m in await watcher.barrier() if m["type"] == "device_status"] == []
        await second.close()
        offline = await watcher.recv_type("device_status")
        assert offline["data"] == {"deviceId": "status-dev", "status": "offline"}
        await watcher.close()

    run(scenario())


def test_revoked_device_sockets_close_and_others_are_told(hub_server: InProcServer) -> None:
    async def scenario() -> None:
        victim1 = await WS.open(hub_server.ws_url, "device:revoke-me")
        victim2 = await WS.open(hub_server.ws_url, "device:revoke-me")
        other = await WS.open(hub_server.ws_url, "device:bystander")
        await other.barrier()
        hub_server.emit("device_revoked", {"deviceId": "revoke-me"})
        for victim in (victim1, victim2):
            code, reason = await victim.wait_closed()
            assert (code, reason) == (1008, "device_revoked")
        told = await other.recv_type("device_revoked")
        assert told["data"] == {"deviceId": "revoke-me"}
        await other.close()

    run(scenario())


def test_admin_disconnect_and_client_list(hub_server: InProcServer) -> None:
    async def scenario() -> None:
        ws = await WS.open(hub_server.ws_url, "device:kick-me")
        with hub_server.client() as http:
            listing = http.get("/api/v1/admin/websocket/clients").json()
            assert listing["devices"]["kick-me"] == 1
            assert listing["totalConnections"] >= 1
            assert any(c["deviceId"] == "kick-me" for c in listing["clients"])
            reply = http.delete("/api/v1/admin/websocket/disconnect/kick-me")
            assert reply.status_code == 200
            assert reply.json() == {"deviceId": "kick-me", "disconnectedCount": 1}
        code, _ = await ws.wait_closed()
        assert code == 1008
        with hub_server.client() as http:
            assert "kick-me" not in http.get("/api/v1/admin/websocket/clients").json()["devices"]

    run(scenario())


def test_registered_handlers_and_failures_are_contained(hub_server: InProcServer) -> None:
    hub = hub_server.services.domains.hub

    async def echo(client: Any, data: dict[str, Any]) -> None:
        await client.send("test.echoed", {"got": data, "by": client.principal.id, "conn": client.id})

    async def broken(client: Any, data: dict[str, Any]) -> None:
        raise RuntimeError("boom")

    closed: list[str] = []

    async def track(client: Any, data: dict[str, Any]) -> None:
        client.on_close(lambda c: closed.append(c.id))
        await client.send("test.tracked", {})

    hub.register_handler("test.echo", echo)
    hub.register_handler("test.broken", broken)
    hub.register_handler("test.track", track)

    async def scenario() -> None:
        ws = await WS.open(hub_server.ws_url, "device:handlers")
        await ws.send({"type": "test.echo", "data": {"x": 1}})
        echoed = await ws.recv_type("test.echoed")
        assert echoed["data"]["got"] == {"x": 1}
        assert echoed["data"]["by"] == "handlers"
        await ws.send({"type": "test.broken", "data": {}})
        error = await ws.recv_type("error")
        assert error["data"]["code"] == "INTERNAL_ERROR"
        await ws.send({"type": "test.track"})
        await ws.recv_type("test.tracked")
        conn_id = echoed["data"]["conn"]
        await ws.close()
        for _ in range(100):
            if conn_id in closed:
                break
            await asyncio.sleep(0.02)
        assert closed == [conn_id]

    run(scenario())


def test_bad_input_is_answered_and_contained(hub_server: InProcServer) -> None:
    async def scenario() -> None:
        ws = await WS.open(hub_server.ws_url, "device:bad-input")
        bystander = await WS.open(hub_server.ws_url, "device:bystander-2")
        await ws.send("this is not json")
        assert (await ws.recv_type("error"))["data"]["code"] == "INVALID_JSON"
        await ws.send(json.dumps([1, 2, 3]))
        assert (await ws.recv_type("error"))["data"]["code"] == "INVALID_MESSAGE"
        await ws.send({"type": "no.such.type"})
        unknown = await ws.recv_type("error")
        assert unknown["data"]["code"] == "UNKNOWN_TYPE"
        await ws.send({"type": "auth", "data": {"token": "x"}})
        assert (await ws.recv_type("error"))["data"]["code"] == "ALREADY_AUTHENTICATED"
        await ws.send(b'{"type":"ping","data":{"bin":true}}')
        assert (await ws.recv_type("pong"))["data"] == {"bin": True}
        await ws.send("x" * (70 * 1024))
        assert (await ws.recv_type("error"))["data"]["code"] == "MESSAGE_TOO_LARGE"
        assert (await ws.wait_closed())[0] == 1009
        assert set(types_of(await bystander.barrier())) <= {"device_status"}
        await bystander.close()

    run(scenario())


def test_flood_is_rate_limited_then_closed(hub_server: InProcServer) -> None:
    async def scenario() -> None:
        flooder = await WS.open(hub_server.ws_url, "device:flooder")
        bystander = await WS.open(hub_server.ws_url, "device:bystander-3")
        for i in range(400):
            try:
                await flooder.send({"type": "ping", "data": {"i": i}})
            except websockets.ConnectionClosed:
                break
        seen_limit = False
        code = None
        try:
            while True:
                message = await flooder.recv()
                if message["type"] == "error" and message["data"]["code"] == "RATE_LIMITED":
                    seen_limit = True
        except websockets.ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else None
        assert seen_limit
        assert code == 1008
        hub_server.emit("config_reload", {"message": "Configuration reloaded"})
        assert types_of(await bystander.barrier()) == ["config_reload"]
        await bystander.close()

    run(scenario())


def test_slow_consumer_is_dropped_then_disconnected(hub_server: InProcServer) -> None:
    hub = hub_server.services.domains.hub
    dropped = hub.m_dropped

    async def scenario() -> None:
        slow = await WS.open(hub_server.ws_url, "device:slowpoke", max_queue=1)
        fast = await WS.open(hub_server.ws_url, "device:fast-reader")
        before = dropped._value.get()
        blob = "y" * 32 * 1024

        def flood() -> None:
            for i in range(3000):
                hub_server.services.bus.emit(EventType.DISCOVERY, {"i": i, "pad": blob}, device_id="slowpoke")

        hub_server.call(flood)
        code, reason = await slow.wait_closed(timeout=15)
        assert (code, reason) == (1013, "slow consumer")
        assert dropped._value.get() - before >= 64
        hub_server.emit("config_reload", {})
        assert types_of(await fast.barrier()) == ["config_reload"]
        await fast.close()

    run(scenario())


def test_origin_check(hub_server: InProcServer) -> None:
    async def scenario() -> None:
        with pytest.raises(websockets.InvalidStatus) as refused:
            await WS.open(hub_server.ws_url, "", origin="https://evil.example")
        assert refused.value.response.status_code == 403
        with pytest.raises(websockets.InvalidStatus):
            await WS.open(hub_server.ws_url, "", origin="null")
        same = await WS.open(hub_server.ws_url, "", origin=hub_server.url)
        await same.close()
        no_origin = await WS.open(hub_server.ws_url, "")
        await no_origin.close()

    run(scenario())


def test_last_will_published_on_unexpected_disconnect(hub_server: InProcServer) -> None:
    async def scenario() -> None:
        watcher = await WS.open(hub_server.ws_url, "user:lw-watcher")
        dying = await WS.open(hub_server.ws_url, "device:lw-dev")
        await dying.send(
            {"type": "set_last_will", "data": {"topic": "devices.lw-dev.gone", "message": {"bye": 1}}}
        )
        ack = (await dying.recv_type("lwtack"))["data"]
        assert ack == {"success": True, "topic": "client.devices.lw-dev.gone"}
        await watcher.barrier()
        dying.conn.transport.abort()  # no close frame: an unexpected disconnect
        will = await watcher.recv_type("client.devices.lw-dev.gone")
        assert will["data"] == {"bye": 1}
        assert will["topic"] == "client.devices.lw-dev.gone"
        assert will["sender"] == "lw-dev"
        await watcher.close()

    run(scenario())


def test_last_will_cannot_forge_a_server_event(hub_server: InProcServer) -> None:
    """A client naming an internal event type (here a revocation of someone else) only ever produces a
    `client.`-namespaced message: no domain reacts, the victim stays connected, nobody sees a revocation."""

    async def scenario() -> None:
        victim = await WS.open(hub_server.ws_url, "device:lw-victim")
        attacker = await WS.open(hub_server.ws_url, "device:lw-attacker")
        await attacker.send(
            {
                "type": "set_last_will",
                "data": {"topic": "device_revoked", "message": {"deviceId": "lw-victim"}},
            }
        )
        assert (await attacker.recv_type("lwtack"))["data"]["topic"] == "client.device_revoked"
        await victim.barrier()
        attacker.conn.transport.abort()
        got = await victim.recv_type("client.device_revoked")
        assert got["sender"] == "lw-attacker"
        after = await victim.barrier()  # still connected, and told of no revocation
        assert "device_revoked" not in types_of(after)
        await victim.close()

    run(scenario())
