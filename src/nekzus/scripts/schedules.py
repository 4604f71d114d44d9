"""Cron schedules of scripts and workflows, fired by the jobs package's CronScheduler.

A fired schedule only queues its run on the job runner and returns, so runs never block each other,
the scheduler or the API; each run is recorded as an execution with `triggeredBy: scheduler:<id>`.
`nextRunAt` is persisted, so a run missed while the server was down is found at start-up and fires once
(the scheduler's missed-run policy). Schedules are created disabled unless `enabled: true` is sent.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from nekzus.errors import Invalid, NekzusError, NotFound
from nekzus.jobs import CronScheduler, validate_cron
from nekzus.scripts.models import ScheduleRow
from nekzus.scripts.params import validate_values
from nekzus.scripts.service import ExecutionRequest, ScriptService, check_id
from nekzus.scripts.workflows import WorkflowRun, WorkflowService
from nekzus.store import Database

__all__ = ["ScheduleService"]

log = logging.getLogger("nekzus.scripts.schedules")


def _ts(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


class ScheduleService:
    def __init__(
        self, db: Database, cron: CronScheduler, scripts: ScriptService, workflows: WorkflowService
    ) -> None:
        self.db = db
        self.cron = cron
        self.scripts = scripts
        self.workflows = workflows

    async def start(self) -> None:
        """Register every enabled schedule with its stored due time (a past one fires once now)."""
        async with self.db.session() as session:
            rows = list(
                (await session.scalars(select(ScheduleRow).where(ScheduleRow.enabled.is_(True)))).all()
            )
        for row in rows:
            due = datetime.fromtimestamp(row.next_run_at, UTC) if row.next_run_at is not None else None
            try:
                self._arm(row, due)
            except NekzusError:
                log.warning("schedule %s has an invalid cron expression; not armed", row.id)
        self.cron.start()

    def _arm(self, row: ScheduleRow, due: datetime | None = None) -> float | None:
        schedule_id = row.id

        async def fire(scheduled: datetime) -> None:
            await self._fire(schedule_id, scheduled)

        return _ts(self.cron.add(schedule_id, row.cron_expression, fire, due=due))

    async def _fire(self, schedule_id: str, scheduled: datetime) -> None:
        async with self.db.session() as session:
            row = await session.scalar(select(ScheduleRow).where(ScheduleRow.id == schedule_id))
            if row is None or not row.enabled:
                self.cron.remove(schedule_id)
                return
            row.last_run_at = self.cron.clock.now().timestamp()
            row.next_run_at = _ts(self.cron.due(schedule_id))
            params = json.loads(row.parameters or "{}")
            script_id, workflow_id = row.script_id, row.workflow_id
        who = f"scheduler:{schedule_id}"
        try:
            if script_id:
                request = ExecutionRequest(parameters=params, triggered_by=who, schedule_id=schedule_id)
                await self.scripts.execute(script_id, request, wait=False)
            elif workflow_id:
                run = WorkflowRun(parameters=params, triggered_by=who, schedule_id=schedule_id)
                await self.workflows.execute(workflow_id, run, wait=False)
        except NekzusError as exc:
            log.warning(
                "scheduled run of %s (due %s) not started: %s",
                schedule_id,
                scheduled.isoformat(),
                exc.message,
            )

    async def _target(self, data: Mapping[str, Any]) -> tuple[str | None, str | None]:
        script_id = data.get("script_id") or None
        workflow_id = data.get("workflow_id") or None
        if script_id and workflow_id:
            raise Invalid("give either scriptId or workflowId, not both", code="INVALID_TARGET")
        if not script_id and not workflow_id:
            raise Invalid("scriptId or workflowId is required", code="MISSING_TARGET")
        if script_id:
            script = await self.scripts.get(str(script_id))  # 404 SCRIPT_NOT_FOUND
            validate_values(self.scripts.specs(script), data.get("parameters") or {})
        else:
            await self.workflows.get(str(workflow_id))  # 404 WORKFLOW_NOT_FOUND
        return (str(script_id) if script_id else None, str(workflow_id) if workflow_id else None)

    async def create(self, data: Mapping[str, Any], created_by: str) -> ScheduleRow:
        expression = validate_cron(str(data.get("cron_expression") or ""))
        script_id, workflow_id = await self._target(data)
        params = data.get("parameters") or {}
        if not isinstance(params, Mapping):
            raise Invalid("parameters must be an object", code="INVALID_PARAMS")
        now = self.cron.clock.now().timestamp()
        row = ScheduleRow(
            id=f"sched_{secrets.token_hex(8)}",
            script_id=script_id,
            workflow_id=workflow_id,
            cron_expression=expression,
            parameters=json.dumps(dict(params)),
            enabled=bool(data.get("enabled", False)),
            created_by=created_by,
            created_at=now,
            updated_at=now,
        )
        if row.enabled:
            row.next_run_at = self._arm(row)
        async with self.db.session() as session:
            session.add(row)
        return row

    async def update(self, schedule_id: str, data: Mapping[str, Any]) -> ScheduleRow:
        expression = validate_cron(str(data["cron_expression"])) if data.get("cron_expression") else None
        async with self.db.session() as session:
            row = await session.scalar(select(ScheduleRow).where(ScheduleRow.id == check_id(schedule_id)))
            if row is None:
                raise NotFound("Schedule not found", code="SCHEDULE_NOT_FOUND")
            if expression is not None:
                row.cron_expression = expression
            if "parameters" in data and data["parameters"] is not None:
                params = data["parameters"]
                if not isinstance(params, Mapping):
                    raise Invalid("parameters must be an object", code="INVALID_PARAMS")
                if row.script_id:
                    validate_values(self.scripts.specs(await self.scripts.get(row.script_id)), params)
                row.parameters = json.dumps(dict(params))
            if "enabled" in data and data["enabled"] is not None:
                row.enabled = bool(data["enabled"])
            row.updated_at = self.cron.clock.now().timestamp()
            self.cron.remove(row.id)
            row.next_run_at = self._arm(row) if row.enabled else None
        return row

    async def set_enabled(self, schedule_id: str, enabled: bool) -> ScheduleRow:
        return await self.update(schedule_id, {"enabled": enabled})

    async def get(self, schedule_id: str) -> ScheduleRow:
        async with self.db.session() as session:
            row = await session.scalar(select(ScheduleRow).where(ScheduleRow.id == check_id(schedule_id)))
        if row is None:
            raise NotFound("Schedule not found", code="SCHEDULE_NOT_FOUND")
        return row

    async def all(self) -> list[ScheduleRow]:
        async with self.db.session() as session:
            return list((await session.scalars(select(ScheduleRow).order_by(ScheduleRow.seq))).all())

    async def delete(self, schedule_id: str) -> None:
        async with self.db.session() as session:
            row = await session.scalar(select(ScheduleRow).where(ScheduleRow.id == check_id(schedule_id)))
            if row is None:
                raise NotFound("Schedule not found", code="SCHEDULE_NOT_FOUND")
            await session.delete(row)
        self.cron.remove(schedule_id)
