"""10,000 Services: the worker lists them in pages, keeps a trimmed cache, proposes only the opted-in
ones, and afterwards reacts to one change by re-evaluating one object (bounded in memory and time)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from nekzus.discovery.kubernetes_worker import KubernetesWorker
from nekzus.discovery.models import Proposal
from nekzus.runtime.kubernetes import KubeConnection
from tests.kube import objects
from tests.kube.emulator import KubeEmulator

TOTAL, OPTED_IN = 10_000, 100


def test_ten_thousand_services(emulator: KubeEmulator, kubeconfig: Path) -> None:
    emulator.apply(objects.namespace("scale"))
    batch = []
    for i in range(TOTAL):
        labels = {"nekzus.enable": "true"} if i % (TOTAL // OPTED_IN) == 0 else {"tier": "backend"}
        svc = objects.service(
            f"svc-{i:05d}", "scale", labels, [{"name": "http", "port": 8080, "protocol": "TCP"}]
        )
        svc["metadata"]["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration": "x" * 500}
        batch.append(svc)
    emulator.apply_many(batch)
    emulator.requests.clear()

    async def scenario() -> None:
        submitted: dict[str, Proposal] = {}
        withdrawn: list[str] = []

        async def submit(p: Proposal) -> None:
            submitted[p.id] = p

        async def withdraw(ids: list[str]) -> None:
            withdrawn.extend(ids)

        async def retain(source: str, ids: set[str]) -> None:
            return None

        worker = KubernetesWorker(
            KubeConnection(str(kubeconfig)),
            submit=submit,
            withdraw=withdraw,
            retain=retain,
            namespaces=["scale"],
            resync_interval=600,
        )
        task = asyncio.create_task(worker.run())
        started = time.monotonic()
        try:
            for _ in range(600):
                if len(submitted) >= OPTED_IN:
                    break
                await asyncio.sleep(0.1)
            elapsed = time.monotonic() - started
            assert len(submitted) == OPTED_IN, len(submitted)
            assert elapsed < 60, elapsed
            services = [k for k in worker.cache if k[0] == "Service"]
            assert len(services) == TOTAL
            # Trimmed: no foreign annotations, no spec/status blobs.
            sample = worker.cache[services[0]]
            assert sample["annotations"] == {} and "selector" not in sample
            pages = [p for m, p in emulator.requests if p == "/api/v1/namespaces/scale/services"]
            assert len(pages) >= TOTAL // 500
            # One change afterwards: exactly one object re-evaluated.
            submitted.clear()
            target = emulator.get("Service", "scale", "svc-00001")
            assert target is not None
            target["metadata"]["labels"]["nekzus.enable"] = "true"
            emulator.apply(target)
            for _ in range(100):
                if submitted:
                    break
                await asyncio.sleep(0.1)
            assert list(submitted) == ["proposal_kubernetes_http_scale_svc_00001_8080"]
            assert not withdrawn
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await worker.conn.close()

    asyncio.run(scenario())


def test_namespace_scoped_permissions(emulator: KubeEmulator, kubeconfig: Path) -> None:
    """Only namespace-scoped RBAC (cluster-wide namespace list forbidden): Services are still proposed."""
    for obj in objects.grafana():
        emulator.apply(obj)
    emulator.forbidden.add("/api/v1/namespaces")

    async def scenario() -> list[str]:
        submitted: list[str] = []

        async def submit(p: Proposal) -> None:
            submitted.append(p.id)

        async def noop(*args: Any) -> None:
            return None

        worker = KubernetesWorker(
            KubeConnection(str(kubeconfig)),
            submit=submit,
            withdraw=noop,
            retain=noop,
            namespaces=["monitoring"],
            resync_interval=600,
        )
        task = asyncio.create_task(worker.run())
        try:
            for _ in range(200):
                if "proposal_kubernetes_http_monitoring_grafana_80" in submitted:
                    break
                await asyncio.sleep(0.1)
            assert worker.healthy
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await worker.conn.close()
        return submitted

    try:
        assert "proposal_kubernetes_http_monitoring_grafana_80" in asyncio.run(scenario())
    finally:
        emulator.forbidden.clear()
