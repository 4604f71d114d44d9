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
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, select, update

from nekzus.errors import Invalid, NekzusError, NotFound
from nekzus.jobs import CronScheduler, validate_cron
from nekzus.scripts.models import Schedule, script_schedules_table
from nekzus.scripts.params import validate_values
from nekzus.scripts.service import ExecutionRequest, ScriptService, check_id
from nekzus.scripts.workflows import WorkflowRun, WorkflowService
from nekzus.store import Database

__all__ = ["ScheduleService"]

log = logging.getLogger("nekzus.scripts.schedules")

_schedules = script_schedules_table


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
        rows = await self.db.rows(select(_schedules).where(_schedules.c.enabled.is_(True)))
        for row in rows:
            due = datetime.fromtimestamp(row.next_run_at, UTC) if row.next_run_at is not None else None
            try:
                self._arm(row.id, row.cron_expression, due)
            except NekzusError:
                log.warning("schedule %s has an invalid cron expression; not armed", row.id)
        self.cron.start()

    def _arm(self, schedule_id: str, expression: str, due: datetime | None = None) -> float | None:
        """Hand the schedule to cron; returns its next due time (Unix seconds)."""

        async def fire(scheduled: datetime) -> None:
            await self._fire(schedule_id, scheduled)

        return _ts(self.cron.add(schedule_id, expression, fire, due=due))

    async def _fire(self, schedule_id: str, scheduled: datetime) -> None:
        # One statement records the run and reads the target, so a schedule disabled or deleted since
        # cron was armed is seen here and dropped.
        row = await self.db.first(
            update(_schedules)
            .where(_schedules.c.id == schedule_id, _schedules.c.enabled.is_(True))
            .values(
                last_run_at=self.cron.clock.now().timestamp(),
                next_run_at=_ts(self.cron.due(schedule_id)),
            )
            .returning(_schedules.c.parameters, _schedules.c.script_id, _schedules.c.workflow_id)
        )
        if row is None:
            self.cron.remove(schedule_id)
            return
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

    async def create(self, data: Mapping[str, Any], created_by: str) -> Schedule:
        expression = validate_cron(str(data.get("cron_expression") or ""))
        script_id, workflow_id = await self._target(data)
        params = data.get("parameters") or {}
        if not isinstance(params, Mapping):
            raise Invalid("parameters must be an object", code="INVALID_PARAMS")
        now = self.cron.clock.now().timestamp()
        schedule_id = f"sched_{secrets.token_hex(8)}"
        enabled = bool(data.get("enabled", False))
        row = Schedule(
            id=schedule_id,
            script_id=script_id,
            workflow_id=workflow_id,
            cron_expression=expression,
            parameters=json.dumps(dict(params)),
            enabled=enabled,
            last_run_at=None,
            next_run_at=self._arm(schedule_id, expression) if enabled else None,
            created_by=created_by,
            created_at=now,
            updated_at=now,
        )
        await self.db.execute(insert(_schedules).values(**asdict(row)))
        return row

    async def update(self, schedule_id: str, data: Mapping[str, Any]) -> Schedule:
        expression = validate_cron(str(data["cron_expression"])) if data.get("cron_expression") else None
        current = await self.get(schedule_id)
        values: dict[str, Any] = {}
        if expression is not None:
            values["cron_expression"] = expression
        if "parameters" in data and data["parameters"] is not None:
            params = data["parameters"]
            if not isinstance(params, Mapping):
                raise Invalid("parameters must be an object", code="INVALID_PARAMS")
            if current.script_id:
                validate_values(self.scripts.specs(await self.scripts.get(current.script_id)), params)
            values["parameters"] = json.dumps(dict(params))
        if "enabled" in data and data["enabled"] is not None:
            values["enabled"] = bool(data["enabled"])
        values["updated_at"] = self.cron.clock.now().timestamp()
        enabled = values.get("enabled", current.enabled)
        self.cron.remove(current.id)
        cron_expression: str = values.get("cron_expression", current.cron_expression)
        values["next_run_at"] = self._arm(current.id, cron_expression) if enabled else None
        found = await self.db.first(
            update(_schedules).where(_schedules.c.id == current.id).values(**values).returning(*_schedules.c)
        )
        if found is None:  # deleted meanwhile
            self.cron.remove(current.id)
            raise NotFound("Schedule not found", code="SCHEDULE_NOT_FOUND")
        return Schedule.from_row(found)

    async def set_enabled(self, schedule_id: str, enabled: bool) -> Schedule:
        return await self.update(schedule_id, {"enabled": enabled})

    async def get(self, schedule_id: str) -> Schedule:
        row = await self.db.first(select(_schedules).where(_schedules.c.id == check_id(schedule_id)))
        if row is None:
            raise NotFound("Schedule not found", code="SCHEDULE_NOT_FOUND")
        return Schedule.from_row(row)

    async def all(self) -> list[Schedule]:
        rows = await self.db.rows(select(_schedules).order_by(_schedules.c.seq))
        return [Schedule.from_row(row) for row in rows]

    async def delete(self, schedule_id: str) -> None:
        result = await self.db.execute(delete(_schedules).where(_schedules.c.id == check_id(schedule_id)))
        if not result.rowcount:
            raise NotFound("Schedule not found", code="SCHEDULE_NOT_FOUND")
        self.cron.remove(schedule_id)
