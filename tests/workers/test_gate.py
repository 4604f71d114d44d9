"""A worker that is still starting holds its first requests until it is ready, instead of refusing them:
the listening socket is shared, so a (re)started worker accepts connections while its siblings serve."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from nekzus.app import create_app
from nekzus.config import Config
from nekzus.workers.shared import Mirrors, SharedState
from nekzus.workers.wiring import WorkerGate


def test_a_starting_worker_holds_requests_until_ready(tmp_path: Path) -> None:
    async def run() -> None:
        config = Config.model_validate(
            {"storage": {"database_path": str(tmp_path / "nexus.db")}, "server": {"workers": 1}}
        )
        app = create_app(config)
        gate = WorkerGate(app, Mirrors(SharedState().generations))
        transport = httpx.ASGITransport(app=gate)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            # The probes answer at once (they say "not ready"); an API call waits for readiness.
            assert (await client.get("/readyz")).status_code == 503
            pending = asyncio.ensure_future(client.get("/api/v1/auth/setup-status"))
            done, _ = await asyncio.wait({pending}, timeout=0.3)
            assert not done, "the request was answered before the worker was ready"
            await app.services.start()
            reply = await asyncio.wait_for(pending, 10)
            assert reply.status_code != 503, reply.text
            assert (await client.get("/readyz")).status_code == 200
        await app.services.stop()

    asyncio.run(run())


def test_crash_repair_runs_once_per_instance_start() -> None:
    """Repairs of what a crash left behind (jobs, script runs, toolbox deployments) run in the first
    leader only: a follower, or a worker restarted beside running ones, must not fail their work."""
    from nekzus.workers import WorkerInfo

    for hook in ("jobs", "scripts", "toolbox-recovery"):
        assert WorkerInfo().runs(hook)  # the single-process server
        assert WorkerInfo(index=0, count=2).runs(hook)
        assert not WorkerInfo(index=1, count=2).runs(hook)
        assert not WorkerInfo(index=0, count=2, restarted=True).runs(hook)
    assert WorkerInfo(index=1, count=2).runs("toolbox")  # the catalog itself loads everywhere
