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


def test_schedule_change_applies_at_once_and_survives_a_restart(tmp_path: Path) -> None:
    """`PUT /api/v1/backups/scheduler` re-aims the waiting loop and is kept beside the backups."""
    backup = {"enabled": True, "schedule": "1h", "retention": 5, "directory": str(tmp_path / "bk")}
    config = {"backup": backup}
    srv = NekzusServer(config, data_dir=tmp_path)
    with running(srv), srv.client() as c:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # the start-up backup
            first = c.get("/api/v1/backups/scheduler/status").json()["status"]
            if first.get("next_backup_time"):
                break
            time.sleep(0.05)
        assert first["interval"] == "1h0m0s" and first["source"] == "config"
        bad = c.put("/api/v1/backups/scheduler", json={"interval": "soon"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "INVALID_REQUEST"
        bad = c.put("/api/v1/backups/scheduler", json={"retention": 0})
        assert bad.status_code == 400
        r = c.put("/api/v1/backups/scheduler", json={"interval": "300ms", "retention": 2})
        assert r.status_code == 200, r.text
        body = r.json()["status"]
        assert body["interval"] == "300ms" and body["retention"] == 2 and body["source"] == "dashboard"
        # The loop was sleeping for an hour: the change wakes it, so scheduled runs follow quickly.
        deadline = time.monotonic() + 20
        scheduled: set[str] = set()
        while time.monotonic() < deadline and len(scheduled) < 3:
            listed = c.get("/api/v1/backups").json()["backups"]
            scheduled.update(b["id"] for b in listed if b["trigger"] == "scheduled")
            time.sleep(0.1)
        assert len(scheduled) >= 3
        assert c.put("/api/v1/backups/scheduler", json={"interval": "2h"}).status_code == 200
    assert (tmp_path / "bk" / "schedule.json").is_file()
    with running(srv), srv.client() as c:
        body = c.get("/api/v1/backups/scheduler/status").json()["status"]
        assert body["interval"] == "2h0m0s" and body["retention"] == 2 and body["source"] == "dashboard"
