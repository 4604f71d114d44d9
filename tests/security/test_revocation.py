"""Revocation, logout, deletion and expiry reach sockets that are already open, and one credential holds
a bounded number of sockets. Each test opens a real hub socket with a real credential, changes that
credential through the API and waits for the server to close the socket."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.events.conftest import WS, create_api_key, pair_device, run, user_token
from tests.nekzus_server import NekzusServer

CLOSE_POLICY = 1008


@pytest.fixture(scope="module")
def module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., NekzusServer]]:
    started: list[NekzusServer] = []

    def factory(config: dict[str, Any] | None = None) -> NekzusServer:
        srv = NekzusServer(config, data_dir=tmp_path_factory.mktemp("revocation"))
        started.append(srv)
        return srv.start()

    yield factory
    for srv in started:
        srv.stop()


@pytest.fixture(scope="module")
def srv(module_server: Callable[..., NekzusServer]) -> NekzusServer:
    return module_server({"server": {"ws_max_per_principal": 3}})


async def _closed_with_notice(ws: WS, code: str) -> str:
    """The server says why (`session_closed`) and closes with 1008 and that reason; returns it."""
    notice = await ws.recv_type("session_closed")
    assert notice["data"]["code"] == code, notice
    closed_code, closed_reason = await ws.wait_closed()
    reason: str = notice["data"]["reason"]
    assert closed_code == CLOSE_POLICY and closed_reason == reason
    return reason


@pytest.mark.parametrize("permanent", [False, True], ids=["revoked", "deleted"])
def test_revoked_or_deleted_api_key_socket_closes(srv: NekzusServer, permanent: bool) -> None:
    key = create_api_key(srv, ["read:events"], name=f"ws-{permanent}")
    with srv.client() as c:
        key_id = next(k["id"] for k in c.get("/api/v1/apikeys").json() if k["name"] == f"ws-{permanent}")

    async def scenario() -> None:
        ws = await WS.open(srv.ws_url, key)
        other = await WS.open(srv.ws_url, create_api_key(srv, ["read:events"], name=f"other-{permanent}"))
        with srv.client() as c:
            r = c.delete(f"/api/v1/apikeys/{key_id}", params={"permanent": str(permanent).lower()})
            assert r.status_code == 200, r.text
        assert await _closed_with_notice(ws, "CREDENTIAL_REVOKED") == "credential revoked"
        # Only that key's sockets: another key's socket stays open and answers.
        await other.send({"type": "ping", "data": {"n": 1}})
        assert (await other.recv_type("pong"))["data"] == {"n": 1}
        await other.close()

    run(scenario())


def test_logged_out_user_token_socket_closes(srv: NekzusServer) -> None:
    token = user_token(srv)
    second = user_token(srv)

    async def scenario() -> None:
        ws = await WS.open(srv.ws_url, token)
        survivor = await WS.open(srv.ws_url, second)
        with srv.client() as c:
            r = c.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200, r.text
        assert await _closed_with_notice(ws, "CREDENTIAL_REVOKED") == "logged out"
        # Logging out one token leaves the same user's other sessions alone.
        await survivor.send({"type": "ping"})
        await survivor.recv_type("pong")
        await survivor.close()

    run(scenario())


def test_revoked_device_socket_closes(srv: NekzusServer) -> None:
    token = pair_device(srv, "revocation-phone")

    async def scenario() -> None:
        ws = await WS.open(srv.ws_url, token)
        with srv.client() as c:
            assert c.delete("/api/v1/devices/revocation-phone").status_code == 200
        assert await _closed_with_notice(ws, "CREDENTIAL_REVOKED") == "device_revoked"

    run(scenario())


def test_rescoped_device_socket_closes(srv: NekzusServer) -> None:
    token = pair_device(srv, "rescoped-phone")

    async def scenario() -> None:
        ws = await WS.open(srv.ws_url, token)
        with srv.client() as c:
            r = c.patch("/api/v1/devices/rescoped-phone", json={"scopes": ["read:catalog"]})
            assert r.status_code == 200, r.text
        assert await _closed_with_notice(ws, "CREDENTIAL_REVOKED") == "scopes changed"

    run(scenario())


def test_expired_token_socket_closes(module_server: Callable[..., NekzusServer]) -> None:
    short = module_server({"auth": {"token_ttl": "3s"}})
    token = user_token(short)

    async def scenario() -> None:
        ws = await WS.open(short.ws_url, token)
        assert await _closed_with_notice(ws, "TOKEN_EXPIRED") == "credential expired"

    run(scenario())


def test_concurrent_socket_cap_per_credential(srv: NekzusServer) -> None:
    key = create_api_key(srv, ["read:events"], name="capped")

    async def scenario() -> None:
        held = [await WS.open(srv.ws_url, key) for _ in range(3)]
        refused = await WS.open(srv.ws_url, key, expect_ok=False)
        assert refused.auth is not None and refused.auth["type"] == "auth_failed"
        assert refused.auth["data"]["code"] == "TOO_MANY_CONNECTIONS"
        assert (await refused.wait_closed())[0] == 1013
        # Another credential is not affected by this one's cap; a released slot can be reused.
        other = await WS.open(srv.ws_url, create_api_key(srv, ["read:events"], name="uncapped"))
        await other.close()
        await held.pop().close()
        for _ in range(50):  # the server releases the slot when it sees the close
            try:
                again = await WS.open(srv.ws_url, key)
                break
            except AssertionError:
                continue
        else:
            raise AssertionError("slot was never released")
        for ws in [*held, again]:
            await ws.close()

    run(scenario())
