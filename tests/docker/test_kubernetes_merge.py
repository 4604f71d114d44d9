"""Docker and Kubernetes side by side: one container list with a `runtime` field on every entry, filters
per runtime and namespace, and `runtimes.primary` choosing where an unqualified id is looked up."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.docker.conftest import ContainerFactory
from tests.docker.engine import DockerEngine
from tests.kube import objects
from tests.kube.conftest import emulator, kubeconfig  # noqa: F401 - module fixtures reused here
from tests.kube.emulator import KubeEmulator
from tests.nekzus_server import NekzusServer

pytestmark = [pytest.mark.xdist_group("docker"), pytest.mark.docker]


@pytest.fixture
def both(
    emulator: KubeEmulator,  # noqa: F811
    kubeconfig: Path,  # noqa: F811
    docker_engine: DockerEngine,
    tmp_path: Path,
) -> Iterator[Callable[[str], NekzusServer]]:
    for obj in objects.grafana():
        emulator.apply(obj)
    started: list[NekzusServer] = []

    def make(primary: str) -> NekzusServer:
        srv = NekzusServer(
            {
                "runtimes": {
                    "primary": primary,
                    "docker": {"enabled": True, "socket_path": docker_engine.host},
                    "kubernetes": {"enabled": True, "kubeconfig": str(kubeconfig)},
                }
            },
            data_dir=tmp_path / primary,
        )
        started.append(srv)
        srv.start(timeout=90)
        return srv

    yield make
    for srv in started:
        srv.stop()


def test_merged_list_and_primary(both: Callable[[str], NekzusServer], container: ContainerFactory) -> None:
    cid = container("merged-web")
    srv = both("kubernetes")
    with srv.client() as client:
        items = client.get("/api/v1/containers").json()
        runtimes = {c["runtime"] for c in items}
        assert runtimes == {"docker", "kubernetes"}
        docker_item = next(c for c in items if c["runtime"] == "docker" and c["id"] == cid[:12])
        assert docker_item["namespace"] == ""
        only_pods = client.get("/api/v1/containers", params={"runtime": "kubernetes"}).json()
        assert only_pods and all(c["runtime"] == "kubernetes" for c in only_pods)
        only_docker = client.get("/api/v1/containers", params={"runtime": "docker"}).json()
        assert only_docker and all(c["runtime"] == "docker" for c in only_docker)
        in_ns = client.get("/api/v1/containers", params={"namespace": "monitoring"}).json()
        assert {c["runtime"] for c in in_ns} == {"kubernetes"}
        pod = only_pods[0]
        # Primary is Kubernetes: a bare id (no runtime) is a pod in the configured/default namespaces;
        # the Docker container needs `runtime=docker`.
        assert client.get(f"/api/v1/containers/{cid[:12]}").status_code == 404
        assert client.get(f"/api/v1/containers/{cid[:12]}", params={"runtime": "docker"}).status_code == 200
        assert (
            client.get(f"/api/v1/containers/{pod['id']}", params={"namespace": "monitoring"}).status_code
            == 200
        )
    srv.stop()
    docker_primary = both("docker")
    with docker_primary.client() as client:
        assert client.get(f"/api/v1/containers/{cid[:12]}").status_code == 200
