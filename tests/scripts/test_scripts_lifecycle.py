"""Bounded queue, persistence across restarts, crash recovery and schedules firing in the real server."""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.nekzus_server import NekzusServer
from tests.scripts.conftest import poll_execution, register, scripts_config, write_scripts


@pytest.fixture(scope="module")
def life(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NekzusServer]:
    root = tmp_path_factory.mktemp("scripts-life")
    (root / "scripts").mkdir()
    write_scripts(root / "scripts")
    server = NekzusServer(scripts_config(root / "scripts", workers=1, queue_size=1), data_dir=root / "data")
    server.start(timeout=60)
    yield server
    server.stop()


def scheduler_runs(api: httpx.Client, schedule_id: str) -> list[dict[str, Any]]:
    runs = api.get("/api/v1/executions", params={"limit": 100}).json()["executions"]
    return [e for e in runs if e["triggeredBy"] == f"scheduler:{schedule_id}"]


def test_queue_bound_gives_503(life: NekzusServer) -> None:
    with life.client() as api:
        register(
            api, "Slow", "slow.sh", parameters=[{"name": "seconds_to_sleep", "type": "number", "default": 1}]
        )
        first = api.post("/api/v1/scripts/slow/execute", params={"async": "true"})
        second = api.post("/api/v1/scripts/slow/execute", params={"async": "true"})
        assert first.status_code == 202 and second.status_code == 202  # one running, one queued
        third = api.post("/api/v1/scripts/slow/execute", params={"async": "true"})
        assert third.status_code == 503 and third.json()["error"]["code"] == "QUEUE_FULL"
        sync = api.post("/api/v1/scripts/slow/execute")
        assert sync.status_code == 503  # synchronous runs share the same bound
        for accepted in (first, second):
            assert poll_execution(api, accepted.json()["executionId"], 30)["status"] == "completed"
        refused = api.get("/api/v1/executions", params={"scriptId": "slow"}).json()
        assert refused["count"] == 2  # refused runs leave no record behind


def test_records_survive_restart_and_crash_marks_running_failed(life: NekzusServer) -> None:
    with life.client() as api:
        register(api, "Keeper", "hello.sh", parameters=[{"name": "name", "default": "kept"}])
        done = api.post("/api/v1/scripts/keeper/execute").json()
        api.post("/api/v1/workflows", json={"name": "Keep Flow", "steps": [{"scriptId": "keeper"}]})
        schedule = api.post(
            "/api/v1/schedules", json={"scriptId": "keeper", "cronExpression": "0 4 * * *", "enabled": True}
        ).json()
        hanging = api.post(
            "/api/v1/scripts/slow/execute",
            params={"async": "true"},
            json={"parameters": {"seconds_to_sleep": 60}},
        ).json()
        deadline = time.monotonic() + 20
        while api.get(f"/api/v1/executions/{hanging['executionId']}").json()["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    life.stop(sig=signal.SIGKILL)  # a crash: nothing gets to clean up
    life.start(timeout=60)
    with life.client() as api:
        assert api.get("/api/v1/scripts/keeper").status_code == 200
        kept = api.get(f"/api/v1/executions/{done['id']}").json()
        assert kept["status"] == "completed" and kept["output"] == done["output"]
        assert api.get("/api/v1/workflows/keep-flow").json()["steps"][0]["scriptId"] == "keeper"
        again = api.get(f"/api/v1/schedules/{schedule['id']}").json()
        assert again["enabled"] is True and again["nextRunAt"] == schedule["nextRunAt"]
        crashed = api.get(f"/api/v1/executions/{hanging['executionId']}").json()
        assert crashed["status"] == "failed" and "restart" in crashed["error"]
        job = api.get(f"/api/v1/jobs/{hanging['executionId']}").json()
        assert job["state"] == "failed" and job["kind"] == "script"


def test_missed_run_fires_once_at_startup(life: NekzusServer) -> None:
    with life.client() as api:
        schedule = api.post(
            "/api/v1/schedules",
            json={
                "scriptId": "keeper",
                "cronExpression": "0 3 * * *",
                "enabled": True,
                "parameters": {"name": "late"},
            },
        ).json()
    life.stop()
    db = sqlite3.connect(life.data_dir / "nexus.db")
    with db:
        db.execute(
            "UPDATE script_schedules SET next_run_at = ? WHERE id = ?",
            (time.time() - 3 * 86400, schedule["id"]),
        )
    db.close()
    life.start(timeout=60)
    with life.client() as api:
        deadline = time.monotonic() + 20
        while not (runs := scheduler_runs(api, schedule["id"])) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(runs) == 1, runs
        assert poll_execution(api, runs[0]["id"])["output"].startswith("hello late")
        after = api.get(f"/api/v1/schedules/{schedule['id']}").json()
        assert after["lastRunAt"] is not None and after["nextRunAt"] > after["lastRunAt"]
        # The schedule is due again only tomorrow: the three missed days collapsed into the one run.
        next_run = datetime.fromisoformat(after["nextRunAt"].replace("Z", "+00:00"))
        assert next_run > datetime.now(UTC), after
        assert len(scheduler_runs(api, schedule["id"])) == 1


def test_schedule_fires_within_a_minute(life: NekzusServer) -> None:
    with life.client() as api:
        schedule = api.post(
            "/api/v1/schedules", json={"scriptId": "keeper", "cronExpression": "* * * * *", "enabled": True}
        ).json()
        deadline = time.monotonic() + 75  # the next minute boundary, plus slack for a loaded machine
        while not (runs := scheduler_runs(api, schedule["id"])) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert runs, "the every-minute schedule did not fire"
        finished = poll_execution(api, runs[0]["id"])
        assert finished["status"] == "completed" and finished["scheduleId"] == schedule["id"]
        assert api.get(f"/api/v1/schedules/{schedule['id']}").json()["lastRunAt"] is not None
