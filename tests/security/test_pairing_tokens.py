"""Pairing secrets are single-use, also when requests race: one pairing code, one redemption; one
temporary bootstrap token, one device."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from tests.nekzus_server import NekzusServer


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NekzusServer]:
    server = NekzusServer(data_dir=tmp_path_factory.mktemp("pairing")).start()
    yield server
    server.stop()


def _redeem(client: httpx.Client, code: str) -> httpx.Response:
    return client.post("/api/v1/pair", json={"code": code}, headers={"X-Pairing-Request": "true"})


def test_pairing_code_is_single_use(srv: NekzusServer) -> None:
    with srv.client() as c:
        code = c.get("/api/v1/auth/qr").json()["code"]
        first = _redeem(c, code)
        assert first.status_code == 200 and first.json()["bootstrapToken"]
        second = _redeem(c, code)
        assert second.status_code == 404 and second.json()["error"]["code"] == "INVALID_CODE"


def test_racing_pairings_with_one_temporary_token_pair_one_device(srv: NekzusServer) -> None:
    with srv.client() as c:
        code = c.get("/api/v1/auth/qr").json()["code"]
        bootstrap = _redeem(c, code).json()["bootstrapToken"]

    async def race() -> list[int]:
        limits = httpx.Limits(max_connections=10)
        async with httpx.AsyncClient(base_url=srv.url, limits=limits, timeout=15) as client:

            async def one(i: int) -> int:
                body = {"device": {"id": f"racer-{i}", "platform": "ios"}}
                r = await client.post(
                    "/api/v1/auth/pair", json=body, headers={"Authorization": f"Bearer {bootstrap}"}
                )
                return r.status_code

            return list(await asyncio.gather(*(one(i) for i in range(8))))

    statuses = asyncio.run(asyncio.wait_for(race(), 60))
    assert statuses.count(200) == 1, statuses
    assert all(s in (401, 429) for s in statuses if s != 200), statuses
    with srv.client() as c:
        paired = [d["deviceId"] for d in c.get("/api/v1/devices").json()]
    assert len([d for d in paired if d.startswith("racer-")]) == 1


def test_malformed_body_does_not_spend_the_token(srv: NekzusServer) -> None:
    with srv.client() as c:
        code = c.get("/api/v1/auth/qr").json()["code"]
        bootstrap = _redeem(c, code).json()["bootstrapToken"]
        headers = {"Authorization": f"Bearer {bootstrap}"}
        bad = c.post("/api/v1/auth/pair", json={"device": {"platform": "toaster"}}, headers=headers)
        assert bad.status_code == 400
        good = {"device": {"id": "patient", "platform": "ios"}}
        ok = c.post("/api/v1/auth/pair", json=good, headers=headers)
        assert ok.status_code == 200, ok.text
