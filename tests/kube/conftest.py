"""Kubernetes-suite fixtures: the API emulator on loopback and a kubeconfig pointing at it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.kube.emulator import KubeEmulator


@pytest.fixture(scope="module")
def emulator() -> Iterator[KubeEmulator]:
    emu = KubeEmulator().start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture(scope="module")
def kubeconfig(emulator: KubeEmulator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return emulator.write_kubeconfig(tmp_path_factory.mktemp("kube") / "config")


def poll(check: Callable[[], Any], timeout: float = 15.0, interval: float = 0.1, what: str = "") -> Any:
    """Call `check` until it returns something truthy (bounded in time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what or check}")


def proposals(client: httpx.Client) -> dict[str, dict[str, Any]]:
    response = client.get("/api/v1/discovery/proposals")
    assert response.status_code == 200, response.text
    return {p["id"]: p for p in response.json()}
