"""Reading the credential tables never takes SQLite's write lock: with several worker processes, one
worker starts or re-reads (after another worker's change) while a third process is in the middle of a
write, and must not wait for it and fail after the busy timeout."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from nekzus.auth.service import AuthService
from tests.auth.standalone import auth_service, open_services


def test_start_and_resync_read_while_another_process_writes(tmp_path: Path) -> None:
    async def run() -> None:
        db_path = tmp_path / "nexus.db"
        config, services = await open_services(db_path)

        def make() -> AuthService:
            return auth_service(config, services, tmp_path)

        first = make()
        await first.start()
        _row, key = await first.create_api_key("ci", ["read:*"], None, "admin")

        # Another process holds the write lock for longer than the busy timeout would allow.
        other = sqlite3.connect(db_path, timeout=0)
        other.execute("BEGIN IMMEDIATE")
        try:
            started = time.monotonic()
            await asyncio.wait_for(first.resync(), 10)
            second = make()
            await asyncio.wait_for(second.start(), 10)  # pruning is skipped, reading is not
            assert (await second.authenticate({"x-api-key": key}, "10.0.0.9")) is not None
            # Reads never waited for the lock: only the skipped prune may (once, bounded by the timeout).
            assert time.monotonic() - started < 9
        finally:
            other.rollback()
            other.close()
        await second.stop()
        await first.stop()
        await services.stop()

    asyncio.run(run())
