"""Docker-suite fixtures: one private dockerd per session (all docker tests run in one xdist worker,
group "docker"), a Nekzus server wired to it, and helpers to wait for WebSocket messages."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import httpx
import pytest

from tests.docker.engine import DockerEngine
from tests.nekzus_server import NekzusServer, free_port


def docker_config(engine: DockerEngine, *, discovery: bool = True, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "runtimes": {"docker": {"enabled": True, "socket_path": engine.host}},
    }
    if discovery:
        config["discovery"] = {
            "enabled": True,
            "docker": {
                "enabled": True,
                "socket_path": engine.host,
                "network_mode": "published",
                "poll_interval": "3s",
            },
        }
    config.update(extra)
    return config


class ContainerFactory(Protocol):
    """The `container` fixture: `DockerEngine.run` with an optional name, removed after the test."""

    def __call__(
        self,
        name: str | None = None,
        cmd: list[str] | None = None,
        *,
        ports: Mapping[int, int] | None = None,
        labels: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        init: bool = True,
        start: bool = True,
        extra: Mapping[str, Any] | None = None,
        host_extra: Mapping[str, Any] | None = None,
    ) -> str: ...


class HttpdFactory(Protocol):
    """The `httpd` fixture: a busybox web server on a fresh 127.0.0.1 port; returns (id, port)."""

    def __call__(self, name: str, labels: Mapping[str, str] | None = None) -> tuple[str, int]: ...


@pytest.fixture(scope="session")
def dserver(docker_engine: DockerEngine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NekzusServer]:
    """A Nekzus with the Docker runtime and published-mode discovery on the test engine, shared by
    every docker module (they run in one worker): tests make their own containers and remove them."""
    srv = NekzusServer(docker_config(docker_engine), data_dir=tmp_path_factory.mktemp("dsrv"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def dclient(dserver: NekzusServer) -> Iterator[httpx.Client]:
    with dserver.client(timeout=60.0) as c:
        yield c


@pytest.fixture
def container(docker_engine: DockerEngine) -> Iterator[ContainerFactory]:
    """Factory for containers removed at the end of the test."""
    made: list[str] = []

    def factory(
        name: str | None = None,
        cmd: list[str] | None = None,
        *,
        ports: Mapping[int, int] | None = None,
        labels: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        init: bool = True,
        start: bool = True,
        extra: Mapping[str, Any] | None = None,
        host_extra: Mapping[str, Any] | None = None,
    ) -> str:
        cid = docker_engine.run(
            name or f"t{time.monotonic_ns()}",
            cmd,
            ports=ports,
            labels=labels,
            env=env,
            init=init,
            start=start,
            extra=extra,
            host_extra=host_extra,
        )
        made.append(cid)
        return cid

    yield factory
    for cid in made:
        docker_engine.remove(cid)


@pytest.fixture
def httpd(docker_engine: DockerEngine) -> Iterator[HttpdFactory]:
    """Factory for busybox web servers on a fresh 127.0.0.1 port; returns (id, port)."""
    made: list[str] = []

    def factory(name: str, labels: Mapping[str, str] | None = None) -> tuple[str, int]:
        port = free_port()
        cid = docker_engine.httpd(name, port, labels=labels)
        made.append(cid)
        wait_http(f"http://127.0.0.1:{port}/")
        return cid, port

    yield factory
    for cid in made:
        docker_engine.remove(cid)


def wait_http(url: str, timeout: float = 10.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            return httpx.get(url, timeout=2.0)
        except httpx.TransportError as exc:
            last = exc
            time.sleep(0.05)
    raise AssertionError(f"{url} not answering: {last}")


_SCANS = re.compile(
    r'^nekzus_discovery_scans_total\{(?=[^}]*source="docker")(?=[^}]*status="success")[^}]*\} (\S+)$', re.M
)


def discovery_scans(client: httpx.Client) -> int:
    """How many full Docker discovery scans this server has completed (its `/metrics` counter)."""
    found = _SCANS.search(client.get("/metrics").text)
    return int(float(found.group(1))) if found else 0


def wait_full_scan(client: httpx.Client, *, kick: bool = False, timeout: float = 20.0) -> None:
    """Return once a full Docker discovery scan has both started and finished after this call: two
    more completed scans, as the first may already have been under way (and have listed the containers
    before the caller's change). `kick` starts each scan at once through `rediscover` (which also
    clears proposals and dismissals) instead of waiting for the poll interval."""
    start = discovery_scans(client)
    if kick:
        assert client.post("/api/v1/discovery/rediscover").status_code == 200
    poll(lambda: discovery_scans(client) > start, timeout, what="a discovery scan")
    if kick:
        assert client.post("/api/v1/discovery/rediscover").status_code == 200
    poll(lambda: discovery_scans(client) > start + 1, timeout, what="a second discovery scan")


def poll(check: Callable[[], Any], timeout: float = 15.0, interval: float = 0.1, what: str = "") -> Any:
    """Call `check` until it returns something truthy (bounded in time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what or check}")
