"""Token and API-key expiry against an injected clock: exact boundaries, no real-second waits."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from nekzus.auth.principal import AuthError
from nekzus.auth.tokens import TokenCodec
from tests.auth.standalone import auth_service, open_services


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_token_expires_exactly_at_exp() -> None:
    clock = Clock()
    codec = TokenCodec("s" * 40, "nekzus", "nekzus-mobile", 60, clock)
    token, claims = codec.issue("dev1", ["read:catalog"], kind="device")
    clock.now = claims["exp"] - 0.001
    assert codec.verify(token)["sub"] == "dev1"
    clock.now = claims["exp"]
    with pytest.raises(AuthError) as exc:
        codec.verify(token)
    assert exc.value.code == "TOKEN_EXPIRED" and exc.value.status == 401
    assert codec.verify(token, allow_expired=True)["sub"] == "dev1"


def test_api_key_expiry_follows_the_clock(tmp_path: Path) -> None:
    async def run() -> None:
        config, services = await open_services(tmp_path / "nexus.db")
        clock = Clock()
        auth = auth_service(config, services, tmp_path, clock)
        await auth.start()
        _row, key = await auth.create_api_key("ci", ["read:*"], clock.now + 30, "admin")
        headers = {"x-api-key": key}
        principal = await auth.authenticate(headers, "10.0.0.9")
        assert principal is not None and principal.kind == "apikey"
        clock.now += 30
        with pytest.raises(AuthError) as exc:
            await auth.authenticate(headers, "10.0.0.9")
        assert exc.value.status == 401
        await auth.stop()
        await services.stop()

    asyncio.run(run())
