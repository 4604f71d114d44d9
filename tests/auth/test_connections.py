"""The registry of long-lived connections by credential: the per-credential cap counts sockets and
tunnels, not responses still streaming, and revoking a credential closes both kinds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from nekzus.auth.connections import DEVICE_REVOKED, EXPIRED, ConnectionRegistry, TooManyConnections
from nekzus.auth.principal import Principal


def test_streams_are_closed_with_their_credential_but_not_capped() -> None:
    registry = ConnectionRegistry(max_per_principal=2)
    device = Principal(kind="device", id="phone")
    closed: list[tuple[str, str]] = []

    def closer(name: str) -> Callable[[str], object]:
        return lambda reason: closed.append((name, reason))

    sockets = [registry.register(device, closer(f"socket{i}")) for i in range(2)]
    with pytest.raises(TooManyConnections):
        registry.register(device, closer("third socket"))
    streams = [registry.register(device, closer(f"stream{i}"), capped=False) for i in range(5)]
    assert registry.count(device) == 2  # the cap counts the sockets only
    streams[0].release()  # a stream that ended on its own is forgotten
    sockets[0].release()
    registry.register(device, closer("socket again"))  # its slot is free again

    assert registry.close_device("phone") == 6
    assert sorted(name for name, _ in closed) == [
        "socket again",
        "socket1",
        "stream1",
        "stream2",
        "stream3",
        "stream4",
    ]
    assert {reason for _, reason in closed} == {DEVICE_REVOKED}
    assert registry.count(device) == 0 and registry.close_all("shutdown") == 0


def test_a_stream_closes_when_its_credential_expires() -> None:
    async def run() -> list[str]:
        loop = asyncio.get_running_loop()
        registry = ConnectionRegistry(clock=lambda: loop.time())
        token = Principal(kind="user", id="user-ann", token_id="t1", expires_at=loop.time() + 0.05)
        reasons: list[str] = []
        ended = asyncio.Event()

        def close(reason: str) -> None:
            reasons.append(reason)
            ended.set()

        registry.register(token, close, capped=False)
        await asyncio.wait_for(ended.wait(), 5)
        return reasons

    assert asyncio.run(run()) == [EXPIRED]
