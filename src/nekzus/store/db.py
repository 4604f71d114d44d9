"""The database handle: one async engine, SQLite rules on every connection, migrations at open."""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from nekzus.store.base import SystemSetting

log = logging.getLogger("nekzus.store")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Each pooled connection gets the same rules, so cascades and locking behave the same everywhere.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _prepare_private_file(path: Path) -> None:
    """The database holds credential hashes and sessions: only the owner may read it.

    The data directory is created 0700 (an existing one is tightened when we own it and it is not a
    shared sticky directory such as /tmp); the database file is created 0600 before SQLite opens it, and
    SQLite gives its -wal and -shm files the database file's permissions. Files left readable by an older
    version are tightened too.
    """
    parent = path.parent
    if not parent.exists():
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    else:
        info = parent.stat()
        if info.st_uid == os.getuid() and not info.st_mode & stat.S_ISVTX and info.st_mode & 0o077:
            try:
                parent.chmod(0o700)
            except OSError as exc:  # a read-only mount, say: warn, the files below are still private
                log.warning("could not make %s private: %s", parent, exc)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for suffix in ("", "-wal", "-shm", "-journal"):
        member = Path(f"{path}{suffix}")
        if member.exists() and member.stat().st_mode & 0o077:
            member.chmod(0o600)


_REVISION = re.compile(r"^revision\s*=\s*[\"']([^\"']+)[\"']", re.M)
_DOWN = re.compile(r"^down_revision\s*=\s*(.+)$", re.M)


def expected_heads() -> set[str]:
    """The head revisions of every branch, read from the migration files without importing Alembic."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        found = _REVISION.search(text)
        if found is None:
            continue
        revisions.add(found.group(1))
        down = _DOWN.search(text)
        if down is not None:
            parents.update(re.findall(r"[\"']([^\"']+)[\"']", down.group(1)))
    return revisions - parents


def _current_heads(sync_connection: Any) -> set[str]:
    from sqlalchemy import inspect

    if not inspect(sync_connection).has_table("alembic_version"):
        return set()
    rows = sync_connection.execute(text("SELECT version_num FROM alembic_version"))
    return {str(row[0]) for row in rows}


def run_migrations(sync_connection: Any) -> None:
    # Most starts find the schema current: skip importing and running Alembic then (start-up time).
    wanted = expected_heads()
    if wanted and _current_heads(sync_connection) == wanted:
        return
    from alembic import command
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("version_locations", str(MIGRATIONS_DIR / "versions"))
    cfg.attributes["connection"] = sync_connection
    command.upgrade(cfg, "heads")


class Database:
    """Owns the engine; `ready` turns true once migrations have run."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.ready = False
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("database is not open")
        return self._engine

    async def open(self) -> None:
        _prepare_private_file(Path(self.path))
        engine = create_async_engine(f"sqlite+aiosqlite:///{self.path}", pool_size=5, max_overflow=5)
        event.listen(engine.sync_engine, "connect", _on_connect)
        async with engine.begin() as conn:
            await conn.run_sync(run_migrations)
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.ready = True
        log.info("database ready at %s", self.path)

    async def close(self) -> None:
        self.ready = False
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A unit of work: committed when the block ends, rolled back if it raises."""
        if self._sessions is None:
            raise RuntimeError("database is not open")
        async with self._sessions() as session, session.begin():
            yield session

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def get_setting(self, key: str) -> str | None:
        async with self.session() as session:
            row = await session.scalar(select(SystemSetting).where(SystemSetting.key == key))
            return row.value if row else None

    async def set_setting(self, key: str, value: str) -> None:
        async with self.session() as session:
            row = await session.get(SystemSetting, key)
            if row is None:
                session.add(SystemSetting(key=key, value=value))
            else:
                row.value = value
