"""The hub in the real `nekzus` process: trusted-network auth, untrusted refusal, auth timeout."""

from __future__ import annotations

from collections.abc import Callable

from tests.events.conftest import WS, run
from tests.nekzus_server import NekzusServer


def test_trusted_client_connects_without_token(server: NekzusServer) -> None:
    async def scenario() -> None:
        ws = await WS.open(server.ws_url, "")
        assert ws.auth is not None and ws.auth["data"]["deviceId"] == "local"
        assert ws.hello is not None and ws.hello["data"]["message"] == "connected"
        await ws.send({"type": "ping", "data": {"n": 1}})
        pong = await ws.recv_type("pong")
        assert pong["data"] == {"n": 1}
        await ws.close()

    run(scenario())


def test_untrusted_client_without_token_is_refused_and_timeout_applies(
    make_server: Callable[..., NekzusServer],
) -> None:
    srv = make_server({"auth": {"local_networks": []}}, env={"NEKZUS_WS_AUTH_TIMEOUT": "0.5"})

    async def scenario() -> None:
        ws = await WS.open(srv.ws_url, "", expect_ok=False)
        assert ws.auth is not None
        assert ws.auth["type"] == "auth_failed"
        assert ws.auth["data"]["error"] == "token required for external connections"
        assert (await ws.wait_closed())[0] == 1008

        bad = await WS.open(srv.ws_url, "not-a-real-token", expect_ok=False)
        assert bad.auth is not None and bad.auth["type"] == "auth_failed"
        assert bad.auth["data"]["code"]

        silent = await WS.open(srv.ws_url, None)
        failed = await silent.recv(timeout=5)
        assert failed["type"] == "auth_failed"
        assert failed["data"]["error"] == "timeout waiting for auth message"
        assert (await silent.wait_closed())[0] == 1008

    run(scenario())


def test_foreign_origin_refused(server: NekzusServer) -> None:
    import pytest
    import websockets

    async def scenario() -> None:
        with pytest.raises(websockets.InvalidStatus) as refused:
            await WS.open(server.ws_url, "", origin="http://attacker.example:8080")
        assert refused.value.response.status_code == 403
        ok = await WS.open(server.ws_url, "", origin=server.url)
        await ok.close()

    run(scenario())
