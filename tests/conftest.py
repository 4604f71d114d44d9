"""Shared fixtures: a real Nekzus server per test session, and a factory for tests that need their own."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.nekzus_server import NekzusServer

if TYPE_CHECKING:  # imported lazily below: only docker tests pay for the engine module
    from tests.docker.engine import DockerEngine


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NekzusServer]:
    """A shared server on loopback (a trusted network by default), rate limits off."""
    srv = NekzusServer(data_dir=tmp_path_factory.mktemp("shared"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def client(server: NekzusServer) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    """One private dockerd for every docker test package of the session (docker tests share a worker)."""
    from tests.docker.engine import DockerEngine

    engine = DockerEngine().start()
    try:
        yield engine
    finally:
        engine.stop()


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., NekzusServer]]:
    """Start extra servers with their own config; all are stopped at the end of the test."""
    started: list[NekzusServer] = []

    def factory(config: dict[str, Any] | None = None, *, start: bool = True, **kwargs: Any) -> NekzusServer:
        kwargs.setdefault("data_dir", tmp_path / f"srv{len(started)}")
        srv = NekzusServer(config, **kwargs)
        started.append(srv)
        if start:
            srv.start()
        return srv

    yield factory
    for srv in started:
        srv.stop()


def pytest_itemcollected(item: pytest.Item) -> None:
    """Under `--dist loadgroup`, a test without an explicit `xdist_group` is grouped by its file, so
    modules keep the `loadfile` behaviour (one module-scoped server, tests in order) while every
    docker module shares the "docker" group, one worker and one test Docker engine.

    Marked as each item is collected: xdist's worker turns the marks into `@group` node-id suffixes in
    its own `pytest_collection_modifyitems`, which can run before a conftest's (then nothing groups).
    (xdist 3.8 renames `item._nodeid`, which pytest 9 no longer reads: pytest is pinned below 9.)"""
    if item.get_closest_marker("xdist_group") is None:
        item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))
