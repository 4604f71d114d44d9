"""Fixtures for the events domain: WebSocket helpers, an in-process server whose bus the test can drive,
and helpers that obtain real credentials through the API's pairing/login/API-key endpoints."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from nekzus.auth.principal import ADMIN, AuthError, Principal
from tests.inproc_server import InProcNekzus
from tests.nekzus_server import NekzusServer

TIMEOUT = 5.0
_nonce = itertools.count()


class WS:
    """A test WebSocket client speaking Nekzus's protocol."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.hello: dict[str, Any] | None = None
        self.auth: dict[str, Any] | None = None

    @classmethod
    async def open(
        cls,
        url: str,
        token: str | None = "",
        *,
        origin: str | None = None,
        expect_ok: bool = True,
        **kwargs: Any,
    ) -> WS:
        headers = {"Origin": origin} if origin else None
        conn = await websockets.connect(
            url.rstrip("/") + "/api/v1/ws",
            additional_headers=headers,
            open_timeout=TIMEOUT,
            close_timeout=2,
            max_size=4 * 1024 * 1024,
            **kwargs,
        )
        ws = cls(conn)
        if token is not None:
            await ws.send({"type": "auth", "data": {"token": token}})
            ws.auth = await ws.recv()
            if expect_ok:
                assert ws.auth["type"] == "auth_success", ws.auth
                ws.hello = await ws.recv()
                assert ws.hello["type"] == "hello", ws.hello
        return ws

    async def send(self, message: Any) -> None:
        await self.conn.send(message if isinstance(message, str | bytes) else json.dumps(message))

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.conn.recv(), timeout)
        message: dict[str, Any] = json.loads(raw)
        return message

    async def recv_type(self, type_: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            message = await self.recv(max(0.01, deadline - time.monotonic()))
            if message["type"] == type_:
                return message

    async def barrier(self, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
        """Everything the server queued for us before now: ping, and collect until our pong."""
        nonce = f"barrier-{next(_nonce)}"
        await self.send({"type": "ping", "data": {"nonce": nonce}})
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            message = await self.recv(max(0.01, deadline - time.monotonic()))
            if message["type"] == "pong" and (message.get("data") or {}).get("nonce") == nonce:
                return got
            got.append(message)

    async def wait_closed(self, timeout: float = TIMEOUT) -> tuple[int | None, str]:
        """Read until the server closes; return (code, reason)."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                await asyncio.wait_for(self.conn.recv(), max(0.01, deadline - time.monotonic()))
        except websockets.ConnectionClosed:
            pass
        except TimeoutError as exc:
            raise AssertionError("server did not close the connection") from exc
        rcvd = self.conn.protocol.close_rcvd
        return (rcvd.code, rcvd.reason) if rcvd else (None, "")

    async def close(self) -> None:
        await self.conn.close()


def types_of(messages: list[dict[str, Any]], ignore: tuple[str, ...] = ("device_status",)) -> list[str]:
    """Message types in order, without presence noise from other tests' connections."""
    return [m["type"] for m in messages if m["type"] not in ignore]


# --- a stub authenticator, so hub routing can be tested before/independently of identity ---------------
DEVICE_SCOPES = frozenset({"read:catalog", "read:events"})


class StubAuthenticator:
    """Token → principal table: `device:<id>`, `user:<name>`, `apikey:<id>`, `noevents:<id>`,
    `bootstrap`, anything else → AuthError; empty → trusted when from loopback."""

    async def authenticate(self, headers: Mapping[str, str], client_ip: str) -> Principal | None:
        bearer = headers.get("authorization", "")
        token = bearer[7:] if bearer.lower().startswith("bearer ") else ""
        return await self.authenticate_token(token, client_ip)

    async def authenticate_token(self, token: str, client_ip: str) -> Principal | None:
        if not token:
            if client_ip.startswith("127."):
                return Principal("trusted", "local", frozenset({ADMIN}), name="local")
            return None
        kind, _, ident = token.partition(":")
        if kind == "device" and ident:
            return Principal("device", ident, DEVICE_SCOPES, name=ident)
        if kind == "user" and ident:
            return Principal("user", f"user-{ident}", frozenset({ADMIN}), name=ident)
        if kind == "apikey" and ident:
            return Principal("apikey", ident, frozenset({"read:events"}), name=ident)
        if kind == "noevents" and ident:
            return Principal("device", ident, frozenset({"read:catalog"}), name=ident)
        if kind == "bootstrap":
            return Principal("bootstrap", "bootstrap", frozenset())
        if kind == "expired":
            raise AuthError(401, "TOKEN_EXPIRED", "Token has expired")
        raise AuthError(401, "INVALID_TOKEN", "Failed to parse token")


class InProcServer(InProcNekzus):
    """The in-process server (`tests/inproc_server.py`) with the stub authenticator, so a test can
    publish bus events and connect as any principal."""

    def __init__(self, data_dir: Path, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(data_dir, config)
        stub: Any = StubAuthenticator()
        self.services.domains.auth = stub
        self.services.domains.hub.authenticator = stub


@pytest.fixture(scope="module")
def hub_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcServer]:
    srv = InProcServer(tmp_path_factory.mktemp("hub"), {"notifications": {"enabled": True}}).start()
    yield srv
    srv.stop()


# --- real credentials through the API's identity endpoints -------------------------------------------------
def identity_available(server: NekzusServer) -> bool:
    with server.client() as client:
        return client.get("/api/v1/auth/setup-status").status_code == 200


def require_identity(server: NekzusServer) -> None:
    if not identity_available(server):
        pytest.skip("identity domain (pairing, login, API keys) is not merged into this branch yet")


def user_token(server: NekzusServer, username: str = "admin", password: str = "correct-horse-42") -> str:
    """First-run setup (trusted network) + login → the dashboard's user JWT."""
    with server.client() as client:
        client.post("/api/v1/auth/setup", json={"username": username, "password": password})
        reply = client.post("/api/v1/auth/login", json={"username": username, "password": password})
        assert reply.status_code == 200, reply.text
        token: str = reply.json()["token"]
        return token


def pair_device(server: NekzusServer, device_id: str, platform: str = "ios") -> str:
    """QR → /pair (code) → /auth/pair (bootstrap token) → a device JWT."""
    with server.client() as client:
        qr = client.get("/api/v1/auth/qr")
        assert qr.status_code == 200, qr.text
        code = qr.json()["code"]
        config = client.post("/api/v1/pair", json={"code": code}, headers={"X-Pairing-Request": "true"})
        assert config.status_code == 200, config.text
        bootstrap = config.json()["bootstrapToken"]
        paired = client.post(
            "/api/v1/auth/pair",
            json={"device": {"id": device_id, "model": f"Test {device_id}", "platform": platform}},
            headers={"Authorization": f"Bearer {bootstrap}"},
        )
        assert paired.status_code == 200, paired.text
        token: str = paired.json()["accessToken"]
        return token


def create_api_key(server: NekzusServer, scopes: list[str], name: str = "ci") -> str:
    with server.client() as client:
        reply = client.post("/api/v1/apikeys", json={"name": name, "scopes": scopes})
        assert reply.status_code == 201, reply.text
        key: str = reply.json()["key"]
        return key


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))
