"""What the device list tells about each device on a real server: online while its last request is within
`devices.offline_threshold` (reloaded live), today's authenticated requests (counted in memory, written in
batches, kept across a restart) and the certificate pins it received when pairing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from nekzus.config import Config
from tests.auth.conftest import TRUSTED, bearer, pair
from tests.nekzus_server import NekzusServer
from tests.waiting import wait_until as poll


@pytest.fixture(scope="module")
def srv(module_server: Callable[..., NekzusServer]) -> NekzusServer:
    return module_server(TRUSTED)


def device(client: httpx.Client, device_id: str) -> dict[str, Any]:
    got = client.get(f"/api/v1/devices/{device_id}")
    assert got.status_code == 200, got.text
    data: dict[str, Any] = got.json()
    return data


def set_threshold(srv: NekzusServer, value: str) -> None:
    srv.edit_config(lambda config: config.update(devices={"offline_threshold": value}))


def test_requests_today_counts_each_request_and_survives_restart(srv: NekzusServer) -> None:
    with srv.client() as c:
        token = pair(c, "usage-phone")["accessToken"]
        before = device(c, "usage-phone")
        assert before["requestsToday"] == 0
        assert before["spkiPins"] == []  # paired over plain HTTP: nothing to pin
        for _ in range(5):
            assert c.get("/api/v1/devices/usage-phone", headers=bearer(token)).status_code == 200
        after = device(c, "usage-phone")
        assert after["requestsToday"] == 5
        listed = {d["deviceId"]: d for d in c.get("/api/v1/devices").json()}
        assert listed["usage-phone"]["requestsToday"] == 5
    srv.restart()  # the stop flushes the counts that were still in memory
    with srv.client() as c:
        assert device(c, "usage-phone")["requestsToday"] == 5
        assert c.get("/api/v1/devices/usage-phone", headers=bearer(token)).status_code == 200
        assert device(c, "usage-phone")["requestsToday"] == 6


def test_online_follows_the_configured_threshold(srv: NekzusServer) -> None:
    with srv.client() as c:
        token = pair(c, "status-phone")["accessToken"]
        assert c.get("/api/v1/devices/status-phone", headers=bearer(token)).status_code == 200
        d = device(c, "status-phone")
        assert (d["status"], d["online"]) == ("online", True)
        assert d["lastSeenAt"] and d["pairedAt"] and d["platform"] == "ios"
        set_threshold(srv, "1ms")
        d = poll(lambda: (x := device(c, "status-phone"))["status"] == "offline" and x, what="offline")
        assert d["online"] is False
        set_threshold(srv, "5m")
        poll(lambda: device(c, "status-phone")["online"], what="online again")


def test_threshold_must_be_positive() -> None:
    with pytest.raises(ValidationError):
        Config.model_validate({"devices": {"offline_threshold": 0}})
    assert Config.model_validate({"devices": {"offline_threshold": "2m"}}).devices.offline_threshold == 120
