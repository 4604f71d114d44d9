"""The database handle: SQLAlchemy Core over SQLite, run on a small pool of threads.

SQLite's driver blocks, so every statement runs on one of the database threads and the event loop only
awaits it (which is what an async SQLite driver does internally too). Domain code speaks SQLAlchemy Core
(`select`, `insert`, `update`, `delete` on the tables in each domain's `models`) through a
`Transaction`, or through the one-statement shortcuts on `Database`. Core rather than the ORM keeps
the idle process small: the ORM layer costs ~6 MiB of memory and a tenth of the start-up imports.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import re
import stat
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, CursorResult, Engine, Row, Table, create_engine, event, select, text
from sqlalchemy.dialects.sqlite import Insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql import Executable
from sqlalchemy.sql.schema import CallableColumnDefault

from nekzus.store.base import system_settings

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


T = TypeVar("T")
Params = Mapping[str, Any] | Sequence[Mapping[str, Any]] | None

# Connections kept open, and the most in use at once (one per database thread, so a thread never waits
# for a connection while holding one).
POOL_SIZE = 4
MAX_CONNECTIONS = 8


def upsert(
    table: Table, key: Mapping[str, Any], values: Mapping[str, Any], first: Mapping[str, Any] | None = None
) -> Insert:
    """Insert a row, or update `values` on the row with the same `key` (SQLite's ON CONFLICT).

    `first` columns (a creation time) are written by the insert only. A column with a Python-side
    `onupdate` (an `updated_at`) gets it on the update too, which ON CONFLICT would not run by itself.
    """
    changes = dict(values)
    for column in table.c:
        if column.name not in changes and isinstance(column.onupdate, CallableColumnDefault):
            # The tables' `onupdate`s take no argument (`utcnow`); SQLAlchemy wraps such a callable
            # in one that ignores the execution context, so none is needed here.
            changes[column.name] = column.onupdate.arg(None)  # type: ignore[arg-type]
    insert = sqlite_insert(table).values(**key, **(first or {}), **values)
    return insert.on_conflict_do_update(index_elements=list(key), set_=changes)


class Transaction:
    """One unit of work on one connection: committed when its `Database.transaction()` block ends,
    rolled back if the block raises or is cancelled.

    Statements run one after the other on the database threads; each waits for the one before it, so a
    cancelled caller never leaves two statements racing on the connection, and the final commit or
    rollback always runs after the last statement (the connection always goes back to the pool).
    """

    def __init__(self, engine: Engine, executor: concurrent.futures.ThreadPoolExecutor) -> None:
        self._engine = engine
        self._executor = executor
        self._conn: Connection | None = None
        self._last: concurrent.futures.Future[Any] | None = None

    def _submit(self, work: Callable[[Connection], T]) -> concurrent.futures.Future[T]:
        before = self._last

        def job() -> T:
            if before is not None:
                concurrent.futures.wait([before])
            if self._conn is None:
                self._conn = self._engine.connect()
                self._conn.begin()
            return work(self._conn)

        future = self._executor.submit(job)
        self._last = future
        return future

    async def _run(self, work: Callable[[Connection], T]) -> T:
        return await asyncio.wrap_future(self._submit(work))

    async def execute(self, statement: Executable, params: Params = None) -> CursorResult[Any]:
        """Run a statement that returns no rows (insert, update, delete); the result has `rowcount` and
        `inserted_primary_key`. A list of parameter dicts runs it once per dict."""
        return await self._run(lambda conn: conn.execute(statement, params))

    async def rows(self, statement: Executable, params: Params = None) -> Sequence[Row[Any]]:
        """Every row of a query (or of an `insert/update/delete ... returning`)."""
        return await self._run(lambda conn: conn.execute(statement, params).all())

    async def first(self, statement: Executable, params: Params = None) -> Row[Any] | None:
        return await self._run(lambda conn: conn.execute(statement, params).first())

    async def scalar(self, statement: Executable, params: Params = None) -> Any:
        """The first column of the first row, or None."""
        return await self._run(lambda conn: conn.execute(statement, params).scalar())

    async def scalars(self, statement: Executable, params: Params = None) -> list[Any]:
        """The first column of every row."""
        return await self._run(lambda conn: list(conn.execute(statement, params).scalars()))

    async def _finish(self, commit: bool) -> None:
        """Commit (or roll back) and return the connection; shielded, so a cancelled caller cannot stop
        it half-way and leak the connection."""

        def end(conn: Connection) -> None:
            try:
                if commit:
                    conn.commit()
                else:
                    conn.rollback()
            except BaseException:
                conn.rollback()
                raise
            finally:
                conn.close()

        if self._last is None:  # no statement ran: nothing was opened
            return
        before = self._last

        def job() -> None:
            concurrent.futures.wait([before])
            if self._conn is not None:
                end(self._conn)
                self._conn = None

        await asyncio.shield(asyncio.wrap_future(self._executor.submit(job)))


class Database:
    """Owns the engine and the database threads; `ready` turns true once migrations have run."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.ready = False
        self._engine: Engine | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("database is not open")
        return self._engine

    async def open(self) -> None:
        _prepare_private_file(Path(self.path))
        engine = create_engine(
            f"sqlite+pysqlite:///{self.path}",
            pool_size=POOL_SIZE,
            max_overflow=MAX_CONNECTIONS - POOL_SIZE,
            # Connections move between the database threads (never used by two at once).
            connect_args={"check_same_thread": False},
        )
        event.listen(engine, "connect", _on_connect)
        executor = concurrent.futures.ThreadPoolExecutor(MAX_CONNECTIONS, thread_name_prefix="nekzus-db")

        def migrate() -> None:
            with engine.begin() as conn:
                run_migrations(conn)

        try:
            await asyncio.wrap_future(executor.submit(migrate))
        except BaseException:
            executor.shutdown(wait=False)
            engine.dispose()
            raise
        self._engine, self._executor = engine, executor
        self.ready = True
        log.info("database ready at %s", self.path)

    async def close(self) -> None:
        self.ready = False
        engine, executor = self._engine, self._executor
        self._engine = self._executor = None
        if engine is not None and executor is not None:
            await asyncio.wrap_future(executor.submit(engine.dispose))
            executor.shutdown(wait=False)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """A unit of work: committed when the block ends, rolled back if it raises."""
        if self._engine is None or self._executor is None:
            raise RuntimeError("database is not open")
        async with self._slots:
            tx = Transaction(self._engine, self._executor)
            try:
                yield tx
            except BaseException:
                await tx._finish(commit=False)
                raise
            await tx._finish(commit=True)

    # One-statement shortcuts, each its own transaction.

    async def execute(self, statement: Executable, params: Params = None) -> CursorResult[Any]:
        async with self.transaction() as tx:
            return await tx.execute(statement, params)

    async def rows(self, statement: Executable, params: Params = None) -> Sequence[Row[Any]]:
        async with self.transaction() as tx:
            return await tx.rows(statement, params)

    async def first(self, statement: Executable, params: Params = None) -> Row[Any] | None:
        async with self.transaction() as tx:
            return await tx.first(statement, params)

    async def scalar(self, statement: Executable, params: Params = None) -> Any:
        async with self.transaction() as tx:
            return await tx.scalar(statement, params)

    async def scalars(self, statement: Executable, params: Params = None) -> list[Any]:
        async with self.transaction() as tx:
            return await tx.scalars(statement, params)

    async def ping(self) -> None:
        await self.scalar(text("SELECT 1"))

    async def get_setting(self, key: str) -> str | None:
        value = await self.scalar(select(system_settings.c.value).where(system_settings.c.key == key))
        return None if value is None else str(value)

    async def set_setting(self, key: str, value: str) -> None:
        await self.execute(upsert(system_settings, {"key": key}, {"value": value}))
