"""The audit log: who did what, from where, and whether it worked (`services.domains.audit`)."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from sqlalchemy import Row, delete, func, insert, select

from nekzus.auth.models import audit_log_table as t
from nekzus.store import Database
from nekzus.timefmt import rfc3339_or_none

log = logging.getLogger("nekzus.audit")

MAX_DETAILS = 4096
MAX_ROWS = 100_000


class AuditService:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._writes = 0

    async def record(
        self,
        action: str,
        *,
        actor: str,
        target: str = "",
        ip: str = "",
        details: dict[str, Any] | None = None,
        success: bool = True,
    ) -> None:
        """Write one row. Never raises: a failing audit write must not break the request it describes."""
        text = json.dumps(details or {}, separators=(",", ":"), default=str, sort_keys=True)
        if len(text) > MAX_DETAILS:
            text = json.dumps({"truncated": True, "preview": text[:1024]})
        row = insert(t).values(
            timestamp=time.time(),
            action=action[:64],
            actor=(actor or "")[:255],
            target=(target or "")[:512],
            ip=(ip or "")[:64],
            details=text,
            success=success,
        )
        try:
            await self.db.execute(row)
            self._writes += 1
            if self._writes % 1000 == 0:
                await self._prune()
        except Exception:
            log.warning("could not write audit event %s", action, exc_info=True)

    async def _prune(self) -> None:
        async with self.db.transaction() as tx:
            newest = await tx.scalar(select(func.max(t.c.id)))
            if newest is not None and newest > MAX_ROWS:
                await tx.execute(delete(t).where(t.c.id <= newest - MAX_ROWS))

    async def query(
        self, *, action: str = "", actor: str = "", limit: int = 100, offset: int = 0
    ) -> tuple[list[dict[str, Any]], int]:
        stmt = select(t)
        count = select(func.count()).select_from(t)
        if action:
            stmt = stmt.where(t.c.action == action)
            count = count.where(t.c.action == action)
        if actor:
            stmt = stmt.where(t.c.actor == actor)
            count = count.where(t.c.actor == actor)
        stmt = stmt.order_by(t.c.id.desc()).limit(limit).offset(offset)
        async with self.db.transaction() as tx:
            rows = await tx.rows(stmt)
            total = int(await tx.scalar(count) or 0)
        return [audit_json(r) for r in rows], total


def audit_json(row: Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "action": row.action,
        "actor": row.actor,
        "target": row.target,
        "details": row.details,
        "ip": row.ip,
        "success": bool(row.success),
        "timestamp": rfc3339_or_none(row.timestamp),
    }
