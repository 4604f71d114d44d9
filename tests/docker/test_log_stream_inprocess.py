"""The log-stream handlers driven in-process with a stand-in WebSocket client (the hub itself is
tested end to end in test_ws.py): frames, concurrent streams, unsubscribe, container exit, client close."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import pytest

from nekzus.auth.principal import Principal
from nekzus.config import Config
from nekzus.jobs import JobRunner
from nekzus.runtime.docker import DockerRuntime
from nekzus.runtime.manager import RuntimeManager
from nekzus.runtime.operations import ContainerService
from nekzus.services import Services
from tests.docker.conftest import ContainerFactory
from tests.docker.engine import DockerEngine
from tests.waiting import until

pytestmark = [pytest.mark.xdist_group("docker"), pytest.mark.docker]

LOGGER = [
    "sh",
    "-c",
    "echo out-first; echo err-first >&2; i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.2; done",
]


class FakeClient:
    def __init__(self) -> None:
        self.id = "conn-1"
        self.principal = Principal("user", "user-admin", frozenset({"write:*"}), name="admin")
        self.frames: list[tuple[str, dict[str, Any]]] = []
        self.closers: list[Callable[[FakeClient], Any]] = []
        self.changed = asyncio.Event()

    async def send(self, type_: str, data: dict[str, Any]) -> None:
        self.frames.append((type_, data))
        self.changed.set()

    def on_close(self, callback: Callable[[FakeClient], Any]) -> None:
        self.closers.append(callback)

    async def wait(
        self, match: Callable[[str, dict[str, Any]], bool], timeout: float = 10.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for type_, data in self.frames:
                if match(type_, data):
                    return data
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching frame in {[t for t, _ in self.frames]}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)


def _service(engine: DockerEngine) -> tuple[Services, ContainerService]:
    services = Services.build(Config(), base_url="http://127.0.0.1")
    manager = RuntimeManager()
    manager.add(DockerRuntime(engine.host))
    jobs = JobRunner(services.db, services.bus, services.spawn)
    return services, ContainerService(manager, bus=services.bus, spawn=services.spawn, jobs=jobs)


def test_streams_in_process(docker_engine: DockerEngine, container: ContainerFactory) -> None:
    a = container("inproc-a", LOGGER)
    b = container("inproc-b", LOGGER)

    async def scenario() -> None:
        _services, svc = _service(docker_engine)
        client = FakeClient()
        try:
            await svc._ws_subscribe(client, {"containerId": a[:12], "tail": 0, "timestamps": True})
            await client.wait(lambda t, d: t == "container.logs.started" and d["containerId"] == a[:12])
            out = await client.wait(lambda t, d: t == "container.logs.data" and d["line"] == "out-first")
            assert out["stream"] == "stdout" and out["logTimestamp"].endswith("Z")
            err = await client.wait(lambda t, d: t == "container.logs.data" and d["line"] == "err-first")
            assert err["stream"] == "stderr"
            await svc._ws_subscribe(client, {"containerId": b[:12], "tail": 2})
            await client.wait(lambda t, d: t == "container.logs.data" and d["containerId"] == b[:12])
            assert len(svc._log_streams) == 2
            await svc._ws_unsubscribe(client, {"containerId": a[:12]})
            ended = await client.wait(lambda t, d: t == "container.logs.ended" and d["containerId"] == a[:12])
            assert ended["reason"] == "stopped"
            await asyncio.to_thread(docker_engine.stop_container, b)
            gone = await client.wait(lambda t, d: t == "container.logs.ended" and d["containerId"] == b[:12])
            assert gone["reason"] == "container_stopped"
            # The ended stream's task forgets itself once it has finished.
            await until(lambda: svc._log_streams == {}, timeout=5, what="the stream to be forgotten")

            await svc._ws_subscribe(client, {"containerId": a[:12], "follow": True})
            await client.wait(lambda t, d: t == "container.logs.started" and len(svc._log_streams) == 1)
            for closer in client.closers:
                closer(client)  # the hub reports the connection closed
            await until(lambda: svc._log_streams == {}, timeout=5, what="the client's streams to end")

            await svc._ws_subscribe(client, {"containerId": "ghost"})
            missing = await client.wait(
                lambda t, d: t == "container.logs.error" and d["containerId"] == "ghost"
            )
            assert missing["error"] == "CONTAINER_NOT_FOUND"
        finally:
            await svc.manager.close()

    asyncio.run(scenario())


def test_follow_false_ends_after_tail(docker_engine: DockerEngine, container: ContainerFactory) -> None:
    cid = container("inproc-tail", ["sh", "-c", "for i in 1 2 3 4 5; do echo line$i; done; sleep 3600"])

    async def scenario() -> None:
        _services, svc = _service(docker_engine)
        client = FakeClient()
        try:
            await asyncio.to_thread(docker_engine.wait_logged, cid, "line5")  # the tail is complete
            await svc._ws_subscribe(client, {"containerId": cid[:12], "tail": 2, "follow": False})
            ended = await client.wait(lambda t, d: t == "container.logs.ended")
            assert ended["reason"] == "completed"
            lines = [d["line"] for t, d in client.frames if t == "container.logs.data"]
            assert lines == ["line4", "line5"]
        finally:
            await svc.manager.close()

    asyncio.run(scenario())
