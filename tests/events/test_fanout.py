"""The hub's fan-out write path on the real uvicorn sansio stack: one frame shared by every subscriber,
batched per loop tick, written straight onto the transport, with the queue taking over for a client
that stops reading. Audience and topic filters must still decide who gets what, order must hold per
client, and a non-reading client must stay bounded in memory."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest
import websockets

from nekzus.events import Event
from nekzus.events.hub import SEND_QUEUE, Client
from nekzus.events.wire import WRITE_BATCH, direct_wire, text_frame
from tests.events.conftest import WS, InProcServer, run


def _server_clients(server: InProcServer, principal: str) -> list[Client]:
    hub = server.services.domains.hub
    return server.call(lambda: list(hub.by_principal.get(principal, ())))  # type: ignore[no-any-return]


def _seqs(messages: list[dict[str, Any]], type_: str = "discovery") -> list[int]:
    return [m["data"]["seq"] for m in messages if m["type"] == type_]


def test_text_frame_encodes_all_length_forms() -> None:
    assert text_frame(b"hi") == b"\x81\x02hi"
    mid = text_frame(b"x" * 300)
    assert mid[:4] == b"\x81\x7e\x01\x2c" and len(mid) == 304
    big = text_frame(b"x" * 70000)
    assert big[:2] == b"\x81\x7f" and int.from_bytes(big[2:10], "big") == 70000


def test_plain_callables_get_the_asgi_path() -> None:
    async def receive() -> None:
        return None

    assert direct_wire(receive, receive) is None


def test_connections_use_the_direct_wire(hub_server: InProcServer) -> None:
    async def scenario() -> None:
        ws = await WS.open(hub_server.ws_url, "device:wire-check")
        clients = _server_clients(hub_server, "wire-check")
        assert len(clients) == 1 and clients[0]._wire is not None
        await ws.close()

    run(scenario())


def test_one_serialisation_never_widens_the_audience(hub_server: InProcServer) -> None:
    """Targeted, filtered and broadcast events interleaved in one loop tick (one batch per client):
    each client gets exactly what its audience and filter admit, in publish order."""

    async def scenario() -> None:
        alerts = await WS.open(hub_server.ws_url, "device:fo-alerts")
        plain = await WS.open(hub_server.ws_url, "device:fo-plain")
        other = await WS.open(hub_server.ws_url, "device:fo-other")
        await alerts.send({"type": "subscribe", "data": {"topics": ["alerts.#"]}})
        await other.send({"type": "subscribe", "data": {"topics": ["other.+"]}})
        for ws in (alerts, plain, other):
            await ws.barrier()

        def burst() -> None:
            bus = hub_server.services.bus
            for seq in range(60):
                kind = seq % 4
                if kind == 0:  # to fo-alerts only, on a topic it subscribed to
                    bus.publish(Event("discovery", {"seq": seq}, device_id="fo-alerts", topic="alerts.x"))
                elif kind == 1:  # to fo-plain only (no filter)
                    bus.publish(Event("discovery", {"seq": seq}, device_id="fo-plain"))
                elif kind == 2:  # broadcast on an alerts topic: fo-alerts and fo-plain
                    bus.publish(Event("discovery", {"seq": seq}, topic="alerts.y"))
                else:  # targeted at fo-other on a topic it does not subscribe to: nobody
                    bus.publish(Event("discovery", {"seq": seq}, device_id="fo-other", topic="alerts.z"))

        hub_server.call(burst)
        assert _seqs(await alerts.barrier()) == [s for s in range(60) if s % 4 in (0, 2)]
        assert _seqs(await plain.barrier()) == [s for s in range(60) if s % 4 in (1, 2)]
        assert _seqs(await other.barrier()) == []
        for ws in (alerts, plain, other):
            await ws.close()

    run(scenario())


def test_order_holds_across_batching_and_the_slow_path(hub_server: InProcServer) -> None:
    """A client that stops reading: frames first go straight to the transport, then (transport paused)
    into the bounded queue; once it reads again everything arrives once, in order, and new events take
    the direct path again. While it does not read, the server holds at most the transport's high-water
    mark plus one batch, and at most SEND_QUEUE queued messages."""
    pad = "p" * 16 * 1024

    async def scenario() -> None:
        slow = await WS.open(hub_server.ws_url, "device:fo-slow", max_queue=1)
        [client] = _server_clients(hub_server, "fo-slow")
        wire = client._wire
        assert wire is not None

        async def fill() -> dict[str, int]:
            """Publish (one event per tick) until the transport pauses, then a few more to queue."""
            bus = hub_server.services.bus
            seq = 0
            for _ in range(4000):  # ≤ 64 MiB: far beyond any loopback socket buffer
                bus.publish(Event("discovery", {"seq": seq, "pad": pad}, device_id="fo-slow"))
                seq += 1
                await asyncio.sleep(0)
                if client._queue:
                    break
            assert client._queue, "the transport never paused"
            for _ in range(20):
                bus.publish(Event("discovery", {"seq": seq, "pad": pad}, device_id="fo-slow"))
                seq += 1
                await asyncio.sleep(0)
            return {"sent": seq, "queued": len(client._queue), "buffered": wire.buffered()}

        state = hub_server.call(fill)
        assert state["queued"] <= SEND_QUEUE
        assert state["buffered"] <= 64 * 1024 + WRITE_BATCH + 17 * 1024
        got: list[int] = []
        while len(got) < state["sent"]:
            message = json.loads(await asyncio.wait_for(slow.conn.recv(), 10))
            if message["type"] == "discovery":
                got.append(message["data"]["seq"])
        assert got == list(range(state["sent"]))
        # Drained: the next event goes straight to the transport again, after everything before it.
        hub_server.emit("discovery", {"seq": state["sent"]}, device_id="fo-slow")
        assert _seqs(await slow.barrier()) == [state["sent"]]
        assert hub_server.call(lambda: len(client._queue)) == 0
        await slow.close()

    run(scenario())


def test_revocation_drops_what_was_batched(hub_server: InProcServer) -> None:
    """Events batched in the same tick as a revocation are never written to the revoked socket."""

    async def scenario() -> None:
        victim = await WS.open(hub_server.ws_url, "device:fo-revoked")
        await victim.barrier()

        def publish_then_revoke() -> None:
            bus = hub_server.services.bus
            for seq in range(5):
                bus.publish(Event("discovery", {"seq": seq}, device_id="fo-revoked"))
            bus.publish(Event("device_revoked", {"deviceId": "fo-revoked"}))

        hub_server.call(publish_then_revoke)
        seen: list[str] = []
        with contextlib.suppress(websockets.ConnectionClosed):
            for _ in range(50):
                seen.append(json.loads(await asyncio.wait_for(victim.conn.recv(), 5))["type"])
        rcvd = victim.conn.protocol.close_rcvd
        assert rcvd is not None and (rcvd.code, rcvd.reason) == (1008, "device_revoked")
        assert "discovery" not in seen

    run(scenario())


def test_asgi_fallback_keeps_audience_and_order(
    hub_server: InProcServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server whose WebSocket transport the hub cannot reach (another ASGI server) gets the same
    messages through the ASGI send path."""
    import nekzus.events.hub as hub_module

    monkeypatch.setattr(hub_module, "direct_wire", lambda receive, send: None)

    async def scenario() -> None:
        mine = await WS.open(hub_server.ws_url, "device:fb-mine")
        other = await WS.open(hub_server.ws_url, "device:fb-other")
        [client] = _server_clients(hub_server, "fb-mine")
        assert client._wire is None
        await mine.send({"type": "subscribe", "data": {"topics": ["fb.#"]}})
        await mine.barrier()
        await other.barrier()

        def burst() -> None:
            bus = hub_server.services.bus
            for seq in range(30):
                target = "fb-mine" if seq % 2 else "fb-other"
                bus.publish(Event("discovery", {"seq": seq}, device_id=target, topic="fb.x"))

        hub_server.call(burst)
        assert _seqs(await mine.barrier()) == list(range(1, 30, 2))
        assert _seqs(await other.barrier()) == list(range(0, 30, 2))
        await mine.close()
        await other.close()

    run(scenario())
