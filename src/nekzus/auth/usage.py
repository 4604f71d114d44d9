"""Requests per device per local calendar day (`requestsToday` of the device JSON).

Counting is on the request path, so it only bumps an in-memory counter; the counts are added to
`auth_device_requests` in one batch by the identity service's periodic flush (and at shutdown). With several
worker processes each one adds its own counts; a reader sees what every worker has flushed plus its own
unflushed requests. Rows older than a week are pruned.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date, timedelta

from sqlalchemy import delete, select
from sqlalchemy.dialects.sqlite import insert

from nekzus.auth.models import device_requests_table as t
from nekzus.store import Database

KEEP_DAYS = 7


def local_day(ts: float) -> tuple[str, float]:
    """The local calendar day of `ts` as `YYYY-MM-DD`, and the Unix time at which that day ends."""
    moment = time.localtime(ts)
    tomorrow = date(moment.tm_year, moment.tm_mon, moment.tm_mday) + timedelta(days=1)
    end = time.mktime((tomorrow.year, tomorrow.month, tomorrow.day, 0, 0, 0, 0, 0, -1))
    return time.strftime("%Y-%m-%d", moment), end


class RequestCounter:
    def __init__(self, db: Database, clock: Callable[[], float]) -> None:
        self.db = db
        self.clock = clock
        self.pending: dict[tuple[str, str], int] = {}  # (day, device) -> requests not yet written
        self.writing: dict[tuple[str, str], int] = {}  # being written right now (still counted)
        self.stored: dict[str, int] = {}  # today's counts as storage holds them (every worker's)
        self.stored_day = ""
        self._day = ""
        self._day_end = 0.0
        self._pruned = ""

    def _today(self, now: float) -> str:
        if not self._day or now >= self._day_end or now < self._day_end - 90000:
            self._day, self._day_end = local_day(now)
        return self._day

    def count(self, device_id: str, now: float) -> None:
        """One authenticated request of `device_id` (memory only)."""
        key = (self._today(now), device_id)
        self.pending[key] = self.pending.get(key, 0) + 1

    def today(self, device_id: str) -> int:
        day = self._today(self.clock())
        key = (day, device_id)
        stored = self.stored.get(device_id, 0) if self.stored_day == day else 0
        return stored + self.writing.get(key, 0) + self.pending.get(key, 0)

    async def load(self) -> None:
        """Re-read today's counts (start-up, and after another worker changed the identity tables)."""
        day = self._today(self.clock())
        rows = await self.db.rows(select(t.c.device_id, t.c.count.label("n")).where(t.c.day == day))
        counts = {str(row.device_id): int(row.n) for row in rows}
        # Swapped in with no await before the caller drops what it was writing: nothing counts twice.
        self.stored, self.stored_day = counts, day

    async def flush(self) -> None:
        """Add the counts collected since the last flush to storage, then re-read today's totals."""
        if self.pending:
            self.writing, self.pending = self.pending, {}
            try:
                stmt = insert(t)
                add = stmt.on_conflict_do_update(
                    index_elements=["device_id", "day"], set_={"count": t.c.count + stmt.excluded.count}
                )
                await self.db.execute(
                    add,
                    [
                        {"device_id": device_id, "day": day, "count": n}
                        for (day, device_id), n in self.writing.items()
                    ],
                )
            except Exception:
                for key, n in self.writing.items():  # keep them for the next flush
                    self.pending[key] = self.pending.get(key, 0) + n
                self.writing = {}
                raise
            await self.load()
            self.writing = {}
        else:
            await self.load()
        if self._pruned != self._day:
            cutoff = (date.fromisoformat(self._day) - timedelta(days=KEEP_DAYS)).isoformat()
            await self.db.execute(delete(t).where(t.c.day < cutoff))
            self._pruned = self._day
