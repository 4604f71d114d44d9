"""The dashboard's activity feed, persisted (`services.domains.activity`)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, func, insert, select

from nekzus.auth.models import activity_table as t
from nekzus.store import Database

MAX_ROWS = 5000


class ActivityService:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._writes = 0

    async def add(
        self,
        type: str,
        message: str,
        *,
        icon: str = "",
        icon_class: str = "",
        details: Any = None,
        key: str = "",
        event_id: str = "",
    ) -> dict[str, Any]:
        """Persist one event and return its JSON; ids are unique (`<type>_<key>_<random>`) unless the
        caller brings its own unique id (webhook events are `webhook-<unix nanos>`, as the API documents)."""
        if not event_id:
            suffix = secrets.token_hex(4)
            event_id = f"{type}_{key}_{suffix}" if key else f"{type}_{suffix}"
        now_ms = int(time.time() * 1000)
        row = {
            "event_id": event_id[:255],
            "type": type[:64],
            "icon": icon[:64],
            "icon_class": icon_class[:64],
            "message": message,
            "details": None if details is None else json.dumps(details, default=str),
            "timestamp": now_ms,
        }
        await self.db.execute(insert(t).values(row))
        self._writes += 1
        if self._writes % 200 == 0:
            await self._prune()
        return activity_json(row)

    async def _prune(self) -> None:
        async with self.db.transaction() as tx:
            newest = await tx.scalar(select(func.max(t.c.id)))
            if newest is not None and newest > MAX_ROWS:
                await tx.execute(delete(t).where(t.c.id <= newest - MAX_ROWS))

    async def recent(self, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        async with self.db.transaction() as tx:
            total = int(await tx.scalar(select(func.count()).select_from(t)) or 0)
            if limit == 0:
                return [], total
            stmt = select(t).order_by(t.c.id.desc()).offset(offset)
            if limit > 0:
                stmt = stmt.limit(limit)
            rows = await tx.rows(stmt)
        return [activity_json(r._mapping) for r in rows], total


def activity_json(row: Mapping[Any, Any]) -> dict[str, Any]:
    """The API shape of one stored event (a row's mapping, or the values just inserted)."""
    out: dict[str, Any] = {
        "id": row["event_id"],
        "type": row["type"],
        "icon": row["icon"],
        "iconClass": row["icon_class"],
        "message": row["message"],
        "timestamp": row["timestamp"],
    }
    details = row["details"]
    if details is not None:
        try:
            out["details"] = json.loads(details)
        except ValueError:
            out["details"] = details
    return out
