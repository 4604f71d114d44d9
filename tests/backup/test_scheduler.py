"""The backup scheduler: one backup at start, one per interval, pruned to the retention count; each
backup runs as a `backup.create` job of the server's job runner."""

from __future__ import annotations

import time
from pathlib import Path

from tests.certs.conftest import running
from tests.nekzus_server import NekzusServer


def test_scheduler_interval_and_retention(tmp_path: Path) -> None:
    config = {
        "backup": {"enabled": True, "schedule": "300ms", "retention": 2, "directory": str(tmp_path / "bk")}
    }
    with running(NekzusServer(config, data_dir=tmp_path)) as srv, srv.client() as c:
        r = c.post("/api/v1/backups/scheduler/trigger", json={"description": "by hand"})
        assert r.status_code == 201 and r.json()["trigger"] == "triggered"
        seen: set[str] = set()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            listed = c.get("/api/v1/backups").json()["backups"]
            seen.update(b["id"] for b in listed if b["trigger"] == "scheduled")
            if len(seen) >= 5:
                break
            time.sleep(0.1)
        assert len(seen) >= 5
        # Retention holds after each scheduled run (a run may be between backup and prune: poll).
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            status = c.get("/api/v1/backups/scheduler/status").json()
            if status["status"]["backup_count"] == 2:
                break
            time.sleep(0.05)
        assert status["enabled"] is True
        body = status["status"]
        assert body["running"] is True and body["interval"] == "300ms" and body["retention"] == 2
        assert body["backup_count"] == 2 and body["last_backup_time"] and body["next_backup_time"]
        assert len(list((tmp_path / "bk").glob("backup_*.tar.gz"))) <= 3
        # Every backup (scheduled or triggered) ran as a job of the server's runner.
        jobs = c.get("/api/v1/jobs", params={"kind": "backup.create", "limit": 100}).json()["jobs"]
        done = [j for j in jobs if j["state"] == "succeeded"]
        assert len(done) >= 5 and all(j["triggeredBy"] == "backup" and j["percent"] == 100 for j in done)
