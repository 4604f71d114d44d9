"""Create, list, verify, delete and restore backups.

A backup holds everything needed to rebuild this instance: the whole database (apps, routes, devices,
API key hashes, users, certificates, and every other domain's tables) as one consistent snapshot, plus -
only when the user configured a passphrase - the secrets kept beside the database, sealed with it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import re
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nekzus import __version__
from nekzus.backup import archive, secrets, sqlite
from nekzus.errors import Invalid, NekzusError, NotFound
from nekzus.store.db import MIGRATIONS_DIR, expected_heads, run_migrations

log = logging.getLogger("nekzus.backup")

ID_PATTERN = re.compile(r"^backup_[0-9]{1,24}$")
SUFFIX = ".tar.gz"
# Files in the data directory that are secrets (never in the database): sealed or left out.
SECRET_FILES = ("jwt_secret", "cookie_key", "cert_key", "ca/ca.key", "ca/ca.crt")
NO_SECRETS_NOTE = (
    "Secrets stored outside the database (JWT secret, cookie key, certificate key and CA key) are NOT in "
    "this backup: set backup.passphrase (or NEKZUS_BACKUP_PASSPHRASE) to include them encrypted. Restoring "
    "on another machine without them means devices re-pair, users log in again and certificates are "
    "re-issued."
)
SEALED_NOTE = "Secrets stored outside the database are included, encrypted with the backup passphrase."

# Restore options -> the tables they cover. Tables of other domains fall under "other".
GROUPS: dict[str, tuple[str, ...]] = {
    "apps": ("catalog_apps", "catalog_service_health"),
    "routes": ("catalog_routes", "proxy_session_cookies"),
    "devices": ("auth_devices", "auth_revoked_tokens", "notifications"),
    "api_keys": ("auth_api_keys",),
    "users": ("auth_users",),
    "certificates": ("certificates", "certificate_history"),
    "settings": ("system_settings",),
}
# Never rolled back: the record of what happened (including this restore) and the schema bookkeeping.
NEVER_RESTORED = frozenset({"alembic_version", "audit_logs", "activity_events", "sqlite_sequence"})

Progress = Callable[[str, float], None]
Refresher = Callable[[], Awaitable[None]]


def _quiet(_step: str, _fraction: float) -> None:
    return None


def known_revisions() -> set[str]:
    found: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        match = re.search(r"^revision\s*=\s*[\"']([^\"']+)[\"']", path.read_text(encoding="utf-8"), re.M)
        if match:
            found.add(match.group(1))
    return found


def check_id(backup_id: str) -> str:
    if not isinstance(backup_id, str) or not ID_PATTERN.match(backup_id):
        raise Invalid("invalid backup id (expected backup_<digits>)", code="INVALID_BACKUP_ID")
    return backup_id


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class RestoreOptions:
    groups: dict[str, bool]
    other: bool = True
    secrets: bool = False

    def tables(self, available: list[str]) -> list[str]:
        chosen: list[str] = []
        grouped = {t for tables in GROUPS.values() for t in tables}
        for name, tables in GROUPS.items():
            if self.groups.get(name, True):
                chosen += [t for t in tables if t in available]
        if self.other:
            chosen += [t for t in available if t not in grouped and t not in NEVER_RESTORED]
        return chosen

    def to_json(self) -> dict[str, bool]:
        out = {f"restore_{name}": self.groups.get(name, True) for name in GROUPS}
        out["restore_other"] = self.other
        out["restore_secrets"] = self.secrets
        return out


@dataclass
class BackupService:
    directory: Path
    database_path: Path
    data_dir: Path
    passphrase: str = ""
    refreshers: list[tuple[str, Refresher]] = field(default_factory=list)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def on_restored(self, name: str, refresher: Refresher) -> None:
        """Domains that keep state in memory re-read it from storage after a restore."""
        self.refreshers.append((name, refresher))

    def path_of(self, backup_id: str) -> Path:
        path = self.directory / (check_id(backup_id) + SUFFIX)
        if not path.is_file():
            raise NotFound(f"backup {backup_id!r} not found", code="BACKUP_NOT_FOUND")
        return path

    # ---- create --------------------------------------------------------------------------------------

    async def create(
        self, description: str = "", *, trigger: str = "manual", progress: Progress = _quiet
    ) -> dict[str, Any]:
        async with self._lock:
            return await asyncio.to_thread(self._create, description, trigger, progress)

    def _new_id(self) -> str:
        while True:
            backup_id = f"backup_{time.time_ns()}"
            if not (self.directory / (backup_id + SUFFIX)).exists():
                return backup_id

    def _create(self, description: str, trigger: str, progress: Progress) -> dict[str, Any]:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        backup_id = self._new_id()
        now = time.time()
        description = (
            description or f"Manual backup at {dt.datetime.fromtimestamp(now, dt.UTC):%Y-%m-%d %H:%M:%S}"
        )
        with tempfile.TemporaryDirectory(dir=self.directory, prefix=".tmp-") as tmp:
            work = Path(tmp)
            progress("snapshotting the database", 0.1)
            db_copy = work / "nexus.db"
            contents = sqlite.snapshot(self.database_path, db_copy)
            members = {"nexus.db": db_copy}
            progress("collecting secrets", 0.6)
            found = {
                name: (self.data_dir / name).read_bytes()
                for name in SECRET_FILES
                if (self.data_dir / name).is_file()
            }
            if self.passphrase and found:
                sealed = work / "secrets.enc"
                sealed.write_bytes(secrets.seal(found, self.passphrase))
                members["secrets.enc"] = sealed
                secret_info = {
                    "included": True,
                    "encrypted": True,
                    "files": sorted(found),
                    "note": SEALED_NOTE,
                }
            else:
                secret_info = {"included": False, "encrypted": False, "files": [], "note": NO_SECRETS_NOTE}
            manifest = {
                "format_version": archive.FORMAT_VERSION,
                "id": backup_id,
                "description": description,
                "created_at": iso(now),
                "created_at_unix": now,
                "trigger": trigger,
                "nekzus_version": __version__,
                "schema_revision": sqlite.revisions(db_copy),
                "contents": {k: v for k, v in contents.items() if k != "alembic_version"},
                "secrets": secret_info,
            }
            progress("writing the archive", 0.8)
            manifest = archive.write_archive(self.directory / (backup_id + SUFFIX), manifest, members)
        progress("done", 1.0)
        log.info("backup %s written (%s)", backup_id, trigger)
        return self._describe(self.directory / (backup_id + SUFFIX), manifest)

    # ---- read ----------------------------------------------------------------------------------------

    def _describe(self, path: Path, manifest: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": manifest.get("id", path.name[: -len(SUFFIX)]),
            "description": manifest.get("description", ""),
            "timestamp": manifest.get("created_at"),
            "version": manifest.get("nekzus_version"),
            "format_version": manifest.get("format_version"),
            "schema_revision": manifest.get("schema_revision", []),
            "trigger": manifest.get("trigger", "manual"),
            "size": path.stat().st_size,
            "contents": manifest.get("contents", {}),
            "secrets": manifest.get("secrets", {}),
            "members": manifest.get("members", {}),
        }

    def _archives(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return [
            p for p in self.directory.glob("backup_*" + SUFFIX) if ID_PATTERN.match(p.name[: -len(SUFFIX)])
        ]

    def list_sync(self) -> list[dict[str, Any]]:
        out = []
        for path in self._archives():
            try:
                out.append(self._describe(path, archive.read_manifest(path)))
            except NekzusError:
                if path.exists():
                    log.warning("skipping unreadable backup %s", path.name)
            except FileNotFoundError:
                pass  # pruned or deleted while the list was being read: it is gone, so not listed
        # Ids carry nanoseconds: sorting by id is newest-first by creation time, stable.
        return sorted(out, key=lambda b: str(b["id"]), reverse=True)

    async def list_all(self) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.list_sync)

    async def get(self, backup_id: str) -> dict[str, Any]:
        path = self.path_of(backup_id)
        return await asyncio.to_thread(lambda: self._describe(path, archive.read_manifest(path)))

    async def delete(self, backup_id: str) -> None:
        path = self.path_of(backup_id)
        async with self._lock:
            path.unlink(missing_ok=True)

    async def prune(self, keep: int) -> list[str]:
        backups = await self.list_all()
        removed = []
        for old in backups[keep:]:
            (self.directory / (old["id"] + SUFFIX)).unlink(missing_ok=True)
            removed.append(old["id"])
        return removed

    def count(self) -> int:
        return len(self._archives())

    # ---- restore -------------------------------------------------------------------------------------

    async def restore(
        self, backup_id: str, options: RestoreOptions, progress: Progress = _quiet
    ) -> dict[str, Any]:
        path = self.path_of(backup_id)
        async with self._lock:  # waits for a running backup: a restore never races a snapshot
            restored, secret_files = await asyncio.to_thread(self._restore, path, options, progress)
        progress("refreshing in-memory state", 0.9)
        refreshed = []
        for name, refresher in self.refreshers:
            try:
                await refresher()
                refreshed.append(name)
            except Exception:
                log.exception("refreshing %s after restore failed", name)
        progress("done", 1.0)
        return {
            "message": "Backup restored successfully",
            "id": backup_id,
            "options": options.to_json(),
            "restored": restored,
            "secrets_restored": secret_files,
            "refreshed": refreshed,
        }

    def _restore(
        self, path: Path, options: RestoreOptions, progress: Progress
    ) -> tuple[dict[str, int], list[str]]:
        with tempfile.TemporaryDirectory(dir=self.directory, prefix=".restore-") as tmp:
            work = Path(tmp)
            progress("verifying the archive", 0.1)
            manifest = archive.extract_verified(path, work)
            if int(manifest.get("format_version", 0) or 0) > archive.FORMAT_VERSION:
                raise Invalid(
                    "the backup was written by a newer Nekzus (archive format)", code="BACKUP_SCHEMA_NEWER"
                )
            snap = work / "nexus.db"
            if "nexus.db" not in manifest.get("members", {}):
                raise Invalid("backup archive is corrupt: no database", code="BACKUP_CORRUPT")
            try:
                sqlite.check_integrity(snap)
            except sqlite3.DatabaseError as exc:
                raise Invalid(
                    "backup archive is corrupt: the database is damaged", code="BACKUP_CORRUPT"
                ) from exc
            revs = set(sqlite.revisions(snap))
            if revs - known_revisions():
                raise Invalid(
                    "the backup comes from a newer schema than this Nekzus knows; upgrade Nekzus first",
                    code="BACKUP_SCHEMA_NEWER",
                )
            sealed: dict[str, bytes] = {}
            if options.secrets:
                if "secrets.enc" not in manifest.get("members", {}):
                    raise Invalid("this backup holds no secrets to restore", code="BACKUP_NO_SECRETS")
                if not self.passphrase:
                    raise Invalid(
                        "set backup.passphrase to restore secrets", code="BACKUP_PASSPHRASE_REQUIRED"
                    )
                sealed = secrets.unseal((work / "secrets.enc").read_bytes(), self.passphrase)
            if revs != expected_heads():
                progress("upgrading the snapshot's schema", 0.3)
                self._migrate(snap)
            progress("restoring tables", 0.5)
            tables = options.tables(sqlite.all_tables(snap))
            try:
                restored = sqlite.restore(self.database_path, snap, tables)
            except sqlite3.DatabaseError as exc:
                raise Invalid(
                    f"restore refused and rolled back: {exc}", code="BACKUP_RESTORE_FAILED"
                ) from exc
        written = []
        for name, data in sealed.items():
            if name in SECRET_FILES:
                _write_private(self.data_dir / name, data, 0o644 if name.endswith(".crt") else 0o600)
                written.append(name)
        return restored, written

    @staticmethod
    def _migrate(snap: Path) -> None:
        from sqlalchemy import create_engine

        engine = create_engine(f"sqlite:///{snap}")
        try:
            with engine.begin() as conn:
                run_migrations(conn)
        finally:
            engine.dispose()


def _write_private(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
