"""The database side of backups: an online-backup snapshot, and an atomic table-by-table restore.

Snapshots use SQLite's backup API in a single step, which copies every page under one read transaction:
with WAL, writers keep going and the copy is exactly the database at one instant.

Restore attaches the (verified, migrated) snapshot to a connection of the live database and, inside one
IMMEDIATE transaction with foreign keys deferred to commit, deletes the rows the snapshot does not have
and upserts the rows it has, for the chosen tables only. Any failure rolls everything back.
"""

# ruff: noqa: S608 - table and column names come from the databases' own catalogs and are quoted; no
# value from a request is ever part of a statement.

from __future__ import annotations

import sqlite3
from pathlib import Path

BUSY_TIMEOUT_MS = 15000


def snapshot(live: Path, dest: Path) -> dict[str, int]:
    """Copy `live` into `dest` (a fresh single-file database); returns row counts per table."""
    src = sqlite3.connect(str(live), timeout=BUSY_TIMEOUT_MS / 1000)
    dst = sqlite3.connect(str(dest))
    try:
        src.backup(dst, pages=-1)
        dst.execute("PRAGMA journal_mode=DELETE")
        status = dst.execute("PRAGMA integrity_check").fetchone()[0]
        if status != "ok":
            raise sqlite3.DatabaseError(f"snapshot failed its integrity check: {status}")
        return counts(dst)
    finally:
        dst.close()
        src.close()


def counts(conn: sqlite3.Connection, schema: str = "main") -> dict[str, int]:
    names = [
        r[0]
        for r in conn.execute(f"SELECT name FROM {schema}.sqlite_master WHERE type='table' ORDER BY name")
    ]
    return {n: int(conn.execute(f'SELECT COUNT(*) FROM {schema}."{n}"').fetchone()[0]) for n in names}


def revisions(path: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    except sqlite3.DatabaseError:
        return []
    finally:
        conn.close()
    return sorted(str(r[0]) for r in rows)


def check_integrity(path: Path) -> None:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        status = conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()
    if status != "ok":
        raise sqlite3.DatabaseError(status)


def _tables(conn: sqlite3.Connection, schema: str) -> set[str]:
    rows = conn.execute(f"SELECT name FROM {schema}.sqlite_master WHERE type='table'")
    return {str(r[0]) for r in rows if not str(r[0]).startswith("sqlite_")}


def _columns(conn: sqlite3.Connection, schema: str, table: str) -> list[tuple[str, int]]:
    return [(str(r[1]), int(r[5])) for r in conn.execute(f'PRAGMA {schema}.table_info("{table}")')]


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _restore_table(conn: sqlite3.Connection, table: str) -> int:
    live_cols = _columns(conn, "main", table)
    snap_names = {c for c, _ in _columns(conn, "snap", table)}
    cols = [c for c, _ in live_cols if c in snap_names]
    pks = [c for c, pk in sorted(live_cols, key=lambda x: x[1]) if pk > 0 and c in snap_names]
    t = _q(table)
    col_list = ", ".join(_q(c) for c in cols)
    if not pks:
        conn.execute(f"DELETE FROM main.{t}")
        conn.execute(f"INSERT INTO main.{t} ({col_list}) SELECT {col_list} FROM snap.{t}")
    else:
        match = " AND ".join(f"s.{_q(c)} IS main.{t}.{_q(c)}" for c in pks)
        conn.execute(f"DELETE FROM main.{t} WHERE NOT EXISTS (SELECT 1 FROM snap.{t} AS s WHERE {match})")
        others = [c for c in cols if c not in pks]
        action = (
            "DO UPDATE SET " + ", ".join(f"{_q(c)} = excluded.{_q(c)}" for c in others)
            if others
            else "DO NOTHING"
        )
        conn.execute(
            f"INSERT INTO main.{t} ({col_list}) SELECT {col_list} FROM snap.{t} WHERE true "
            f"ON CONFLICT ({', '.join(_q(c) for c in pks)}) {action}"
        )
    return int(conn.execute(f"SELECT COUNT(*) FROM main.{t}").fetchone()[0])


def restore(live: Path, snap: Path, tables: list[str]) -> dict[str, int]:
    """Make each of `tables` in `live` equal to the snapshot's, all in one transaction."""
    conn = sqlite3.connect(str(live), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    try:
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("ATTACH DATABASE ? AS snap", (str(snap),))
        try:
            present = _tables(conn, "main") & _tables(conn, "snap")
            chosen = [t for t in tables if t in present]
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("PRAGMA defer_foreign_keys=ON")
                restored = {table: _restore_table(conn, table) for table in chosen}
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return restored
        finally:
            conn.execute("DETACH DATABASE snap")
    finally:
        conn.close()


def all_tables(path: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return sorted(_tables(conn, "main"))
    finally:
        conn.close()
