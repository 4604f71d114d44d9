"""The store's unit of work on a real SQLite file: commit at the end of the block, rollback when it
raises or is cancelled, connections always back in the pool, and more callers than connections queue
instead of deadlocking the database threads."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import QueuePool

from nekzus.store import Database
from nekzus.store.base import system_settings
from nekzus.store.db import MAX_CONNECTIONS


async def opened(tmp_path: Path) -> Database:
    db = Database(str(tmp_path / "nexus.db"))
    await db.open()
    return db


def checked_out(db: Database) -> int:
    pool = db.engine.pool
    assert isinstance(pool, QueuePool)
    return pool.checkedout()


async def count(db: Database) -> int:
    return int(await db.scalar(select(func.count()).select_from(system_settings)))


def test_commit_rollback_and_shortcuts(tmp_path: Path) -> None:
    async def scenario() -> None:
        db = await opened(tmp_path)
        try:
            async with db.transaction() as tx:
                await tx.execute(
                    insert(system_settings), [{"key": "a", "value": "1"}, {"key": "b", "value": "2"}]
                )
                # Inside the transaction its own writes are visible.
                assert await tx.scalars(select(system_settings.c.key).order_by(system_settings.c.key)) == [
                    "a",
                    "b",
                ]
            with pytest.raises(RuntimeError):
                async with db.transaction() as tx:
                    await tx.execute(insert(system_settings).values(key="c", value="3"))
                    raise RuntimeError("boom")
            assert await count(db) == 2  # "c" was rolled back
            # A statement that fails aborts the whole unit of work.
            with pytest.raises(IntegrityError):
                async with db.transaction() as tx:
                    await tx.execute(insert(system_settings).values(key="d", value="4"))
                    await tx.execute(insert(system_settings).values(key="a", value="again"))
            assert await count(db) == 2
            await db.set_setting("a", "changed")
            await db.set_setting("e", "new")
            assert await db.get_setting("a") == "changed" and await db.get_setting("e") == "new"
            assert await db.get_setting("missing") is None
            row = await db.first(select(system_settings).where(system_settings.c.key == "e"))
            assert row is not None and row.value == "new" and row.updated_at is not None
            # An upsert that updates stamps the column's `onupdate` too.
            await db.set_setting("e", "newer")
            again = await db.first(select(system_settings).where(system_settings.c.key == "e"))
            assert again is not None and again.value == "newer" and again.updated_at > row.updated_at
            assert checked_out(db) == 0
        finally:
            await db.close()

    asyncio.run(scenario())


def test_cancelled_units_of_work_roll_back_and_return_their_connection(tmp_path: Path) -> None:
    async def scenario() -> None:
        db = await opened(tmp_path)
        started = asyncio.Event()

        async def interrupted(i: int) -> None:
            async with db.transaction() as tx:
                await tx.execute(insert(system_settings).values(key=f"k{i}", value="x"))
                started.set()
                await asyncio.Event().wait()  # cancelled here, mid-transaction

        try:
            for i in range(3 * MAX_CONNECTIONS):
                started.clear()
                task = asyncio.create_task(interrupted(i))
                await asyncio.wait_for(started.wait(), 10)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            assert await asyncio.wait_for(count(db), 10) == 0
            assert checked_out(db) == 0
        finally:
            await db.close()

    asyncio.run(scenario())


def test_more_callers_than_connections_queue_instead_of_deadlocking(tmp_path: Path) -> None:
    async def scenario() -> None:
        db = await opened(tmp_path)

        async def writer(i: int) -> None:
            async with db.transaction() as tx:
                await tx.execute(insert(system_settings).values(key=f"w{i}", value=str(i)))
                await asyncio.sleep(0)  # hold the transaction (and its connection) across a loop turn

        try:
            await asyncio.wait_for(asyncio.gather(*(writer(i) for i in range(5 * MAX_CONNECTIONS))), 60)
            assert await count(db) == 5 * MAX_CONNECTIONS
            assert checked_out(db) == 0
        finally:
            await db.close()

    asyncio.run(scenario())
