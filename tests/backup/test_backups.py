"""Backups through the real server: snapshot -> change everything -> restore -> the state is back (tokens,
routes and the proxy included); corrupted, truncated, newer-schema archives and bad ids refused; a backup
taken during a write storm opens cleanly; secrets sealed with the passphrase or left out with a note."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import sqlite3
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from nekzus.backup import archive
from tests.auth.conftest import PERMANENT_BOOTSTRAP, bearer, create_admin, error_code, login, pair
from tests.certs.conftest import running
from tests.nekzus_server import NekzusServer
from tests.proxy.conftest import Upstream

PASSPHRASE = "correct horse backup staple"


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    up = Upstream().start()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NekzusServer]:
    server = NekzusServer(
        {"bootstrap": {"tokens": [PERMANENT_BOOTSTRAP]}, "backup": {"passphrase": PASSPHRASE}},
        data_dir=tmp_path_factory.mktemp("backup"),
    )
    server.start(timeout=60)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def admin(srv: NekzusServer) -> dict[str, str]:
    with srv.client() as c:
        create_admin(c, srv)
        return bearer(login(c))


def backup_dir(srv: NekzusServer) -> Path:
    return srv.data_dir / "backups"


def take(c: httpx.Client, description: str = "") -> dict[str, Any]:
    r = c.post("/api/v1/backups", json={"description": description} if description else {})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def open_download(c: httpx.Client, backup_id: str, headers: dict[str, str], dest: Path) -> dict[str, Any]:
    r = c.get(f"/api/v1/backups/{backup_id}/download", headers=headers)
    assert r.status_code == 200 and r.headers["content-type"] == "application/gzip"
    path = dest / f"{backup_id}.tar.gz"
    path.write_bytes(r.content)
    out = dest / backup_id
    out.mkdir()
    return archive.extract_verified(path, out)


def test_restore_brings_everything_back(
    srv: NekzusServer, admin: dict[str, str], upstream: Upstream, tmp_path: Path
) -> None:
    with srv.client() as c:
        r = c.post(
            "/api/v1/routes",
            json={"routeId": "r_keep", "appId": "keep", "pathBase": "/apps/keep/", "to": upstream.url},
        )
        assert r.status_code == 201, r.text
        device = pair(c, "restore-phone")
        device_auth = bearer(device["accessToken"])
        r = c.post("/api/v1/apikeys", json={"name": "ci", "scopes": ["read:*"]}, headers=admin)
        assert r.status_code == 201, r.text
        key = {"X-API-Key": r.json()["key"]}
        assert c.get("/api/v1/apps", headers=device_auth).status_code == 200
        assert c.get("/apps/keep/x").status_code == 200
        snapshot = take(c, "before the changes")
        assert snapshot["description"] == "before the changes"
        assert snapshot["contents"]["auth_devices"] == 1 and snapshot["contents"]["catalog_routes"] == 1
        assert snapshot["members"]["nexus.db"]["sha256"]

        # Change everything.
        assert c.delete("/api/v1/routes/r_keep").status_code == 204
        r = c.post(
            "/api/v1/routes",
            json={"routeId": "r_new", "appId": "new", "pathBase": "/apps/new/", "to": upstream.url},
        )
        assert r.status_code == 201
        assert c.delete("/api/v1/devices/restore-phone", headers=admin).status_code in (200, 204)
        keys = c.get("/api/v1/apikeys", headers=admin).json()
        key_id = keys["apiKeys"][0]["id"] if isinstance(keys, dict) and "apiKeys" in keys else keys[0]["id"]
        assert c.delete(
            f"/api/v1/apikeys/{key_id}", params={"permanent": "true"}, headers=admin
        ).status_code in (200, 204)
        assert c.get("/api/v1/apps", headers=device_auth).status_code == 401
        assert c.get("/api/v1/apps", headers=key).status_code == 401
        assert c.get("/apps/keep/x").status_code == 404

        r = c.post(f"/api/v1/backups/{snapshot['id']}/restore", json={}, headers=admin)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["message"] == "Backup restored successfully"
        assert {"auth", "catalog"} <= set(body["refreshed"])

        # The state equals the snapshot, without a restart.
        assert c.get("/api/v1/apps", headers=device_auth).status_code == 200
        assert c.get("/api/v1/apps", headers=key).status_code == 200
        assert c.get("/apps/keep/x").status_code == 200
        assert c.get("/apps/new/x").status_code == 404
        route_ids = [r["routeId"] for r in c.get("/api/v1/routes").json()]
        assert route_ids == ["r_keep"]
        logs = c.get("/api/v1/audit-logs", params={"action": "backup.restore"}, headers=admin).json()
        assert logs["logs"][0]["success"] is True


def test_restore_options_select_what_comes_back(
    srv: NekzusServer, admin: dict[str, str], upstream: Upstream
) -> None:
    with srv.client() as c:
        snapshot = take(c)
        assert c.delete("/api/v1/routes/r_keep").status_code == 204
        pair(c, "late-phone")
        r = c.post(
            f"/api/v1/backups/{snapshot['id']}/restore",
            json={"restore_apps": True, "restoreRoutes": True, "restoreDevices": False},
            headers=admin,
        )
        assert r.status_code == 200, r.text
        assert r.json()["options"]["restore_devices"] is False
        assert c.get("/apps/keep/x").status_code == 200
        devices = c.get("/api/v1/devices", headers=admin).json()
        text = json.dumps(devices)
        assert "late-phone" in text  # devices were not rolled back


def _forge(src: Path, dest: Path, mutate: Any) -> None:
    """Re-pack an archive after `mutate(db_path)`, with correct checksums (a *consistent* forgery)."""
    work = dest.parent / (dest.name + ".work")
    work.mkdir()
    manifest = archive.extract_verified(src, work)
    mutate(work / "nexus.db")
    manifest.pop("members")
    manifest["id"] = dest.name.removesuffix(".tar.gz")
    members = {name: work / name for name in ("nexus.db", "secrets.enc") if (work / name).exists()}
    archive.write_archive(dest, manifest, members)
    shutil.rmtree(work)


def test_bad_archives_refused_and_nothing_changes(srv: NekzusServer, admin: dict[str, str]) -> None:
    with srv.client() as c:
        good = take(c)
        src = backup_dir(srv) / f"{good['id']}.tar.gz"
        data = src.read_bytes()
        # Tampered: one byte of the database changed inside a valid gzip/tar.
        raw = bytearray(gzip.decompress(data))
        raw[len(raw) // 2] ^= 0xFF
        (backup_dir(srv) / "backup_1000000000000000001.tar.gz").write_bytes(gzip.compress(bytes(raw)))
        # Truncated: the download cut short.
        (backup_dir(srv) / "backup_1000000000000000002.tar.gz").write_bytes(data[: len(data) // 2])

        def newer(db: Path) -> None:
            conn = sqlite3.connect(db)
            conn.execute("INSERT INTO alembic_version VALUES ('zz_future_0001')")
            conn.commit()
            conn.close()

        _forge(src, backup_dir(srv) / "backup_1000000000000000003.tar.gz", newer)
        before = c.get("/api/v1/routes").json()
        for backup_id, code in [
            ("backup_1000000000000000001", "BACKUP_CORRUPT"),
            ("backup_1000000000000000002", "BACKUP_CORRUPT"),
            ("backup_1000000000000000003", "BACKUP_SCHEMA_NEWER"),
        ]:
            r = c.post(f"/api/v1/backups/{backup_id}/restore", json={}, headers=admin)
            assert r.status_code == 400 and error_code(r) == code, (backup_id, r.text)
        assert c.get("/api/v1/routes").json() == before
        logs = c.get("/api/v1/audit-logs", params={"action": "backup.restore"}, headers=admin).json()["logs"]
        assert [entry["success"] for entry in logs[:3]] == [False, False, False]
        for backup_id in (
            "backup_1000000000000000001",
            "backup_1000000000000000002",
            "backup_1000000000000000003",
        ):
            assert c.delete(f"/api/v1/backups/{backup_id}", headers=admin).status_code == 204


@pytest.mark.parametrize(
    "bad", ["..", "backup_1..", "backup_..%2F..%2Fetc", "x%5C..", "backup_1.tar.gz", "backup_abc"]
)
def test_backup_ids_validated(srv: NekzusServer, admin: dict[str, str], bad: str) -> None:
    with srv.client() as c:
        for method, path in [
            ("GET", f"/api/v1/backups/{bad}"),
            ("DELETE", f"/api/v1/backups/{bad}"),
            ("POST", f"/api/v1/backups/{bad}/restore"),
            ("GET", f"/api/v1/backups/{bad}/download"),
        ]:
            r = c.request(method, path, headers=admin, json={} if method == "POST" else None)
            assert r.status_code in (400, 404, 405), (method, path, r.status_code)
            assert r.json()["error"]["code"] in ("INVALID_BACKUP_ID", "NOT_FOUND", "METHOD_NOT_ALLOWED")
        r = c.get("/api/v1/backups/backup_123")
        assert r.status_code == 404 and error_code(r) == "BACKUP_NOT_FOUND"


def test_get_list_delete(srv: NekzusServer, admin: dict[str, str]) -> None:
    with srv.client() as c:
        first, second = take(c, "one"), take(c, "two")
        listed = c.get("/api/v1/backups").json()
        ids = [b["id"] for b in listed["backups"]]
        assert listed["count"] == len(ids) and ids.index(second["id"]) < ids.index(first["id"])
        assert c.get(f"/api/v1/backups/{first['id']}").json()["description"] == "one"
        assert c.delete(f"/api/v1/backups/{first['id']}", headers=admin).status_code == 204
        assert c.get(f"/api/v1/backups/{first['id']}").status_code == 404


def test_secrets_sealed_with_the_passphrase(srv: NekzusServer, admin: dict[str, str], tmp_path: Path) -> None:
    with srv.client() as c:
        meta = take(c)
        assert meta["secrets"]["included"] is True and meta["secrets"]["encrypted"] is True
        assert "jwt_secret" in meta["secrets"]["files"]
        manifest = open_download(c, meta["id"], admin, tmp_path)
    sealed = (tmp_path / meta["id"] / "secrets.enc").read_bytes()
    secret = (srv.data_dir / "jwt_secret").read_bytes().strip()
    assert secret not in sealed and manifest["members"]["secrets.enc"]["size"] == len(sealed)
    with srv.client() as c:
        r = c.post(f"/api/v1/backups/{meta['id']}/restore", json={"restoreSecrets": True}, headers=admin)
        assert r.status_code == 200, r.text
        assert "jwt_secret" in r.json()["secrets_restored"]


def test_write_storm_snapshot_is_consistent(srv: NekzusServer, admin: dict[str, str], tmp_path: Path) -> None:
    stop = threading.Event()
    written = [0]
    failures: list[str] = []

    def storm() -> None:
        with srv.client() as w:
            for i in range(5000):
                if stop.is_set():
                    return
                r = w.post(
                    "/api/v1/routes",
                    json={
                        "routeId": f"storm_{i}",
                        "appId": f"storm{i}",
                        "pathBase": f"/apps/storm{i}/",
                        "to": "http://127.0.0.1:9",
                    },
                )
                if r.status_code != 201:
                    failures.append(r.text)
                    return
                written[0] += 1

    def transactions() -> None:
        """A second writer on the live file, two rows per transaction: a snapshot taken between two
        statements of one transaction would hold an odd row."""
        conn = sqlite3.connect(srv.data_dir / "nexus.db", timeout=15, isolation_level=None)
        conn.execute("CREATE TABLE IF NOT EXISTS storm_pairs (grp INTEGER, half INTEGER)")
        for grp in range(100000):
            if stop.is_set():
                break
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO storm_pairs VALUES (?, 0)", (grp,))
            conn.execute("INSERT INTO storm_pairs VALUES (?, 1)", (grp,))
            conn.execute("COMMIT")
            time.sleep(0.003)  # leave the server's own writers room
        conn.close()

    threads = [threading.Thread(target=storm), threading.Thread(target=transactions)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 20
        while written[0] < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        with srv.client() as c:
            metas = [take(c, f"storm {n}") for n in range(3)]
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not failures and written[0] >= 20
    with srv.client() as c:
        for meta in metas:
            open_download(c, meta["id"], admin, tmp_path)
            db = sqlite3.connect(tmp_path / meta["id"] / "nexus.db")
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            routes = db.execute("SELECT COUNT(*) FROM catalog_routes").fetchone()[0]
            pairs = db.execute("SELECT COUNT(*), COUNT(DISTINCT grp) FROM storm_pairs").fetchone()
            db.close()
            assert routes == meta["contents"]["catalog_routes"]
            assert pairs[0] > 0 and pairs[0] == 2 * pairs[1]  # never half a transaction


def test_without_passphrase_secrets_are_left_out_with_a_note(tmp_path: Path) -> None:
    with running(NekzusServer(data_dir=tmp_path)) as other, other.client() as c:
        meta = take(c)
        assert meta["secrets"]["included"] is False
        assert "backup.passphrase" in meta["secrets"]["note"]
        with tarfile.open(other.data_dir / "backups" / f"{meta['id']}.tar.gz") as tar:
            assert sorted(tar.getnames()) == ["manifest.json", "nexus.db"]
        r = c.post(f"/api/v1/backups/{meta['id']}/restore", json={"restoreSecrets": True})
        assert r.status_code == 400 and error_code(r) == "BACKUP_NO_SECRETS"
        status = c.get("/api/v1/backups/scheduler/status").json()
        assert status == {"enabled": False, "message": "Backup scheduler is not configured"}
        r = c.post("/api/v1/backups/scheduler/trigger", json={})
        assert r.status_code == 503 and error_code(r) == "SCHEDULER_NOT_CONFIGURED"
    _ = io
