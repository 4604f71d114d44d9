"""Workflows: ordered script steps run as one job, each step an ordinary execution.

A step's parameters are the run's parameters overlaid with the step's own (the step wins). A step that
does not complete stops the workflow unless its `onFailure` is `continue`; a workflow with any failed
step ends `failed`, one whose failing step timed out ends `timeout`, otherwise `completed`.

A run announces itself on the event bus as it goes (`workflow.started`, one `workflow.step` per step
state change, `workflow.finished`), so a dashboard can draw each step's state and output live instead of
polling the run record.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from nekzus.errors import Conflict, Invalid, NekzusError, NotFound
from nekzus.events import EventBus
from nekzus.jobs import Job, JobContext, JobFailed, JobRunner
from nekzus.scripts import events as ev
from nekzus.scripts.models import (
    Workflow,
    WorkflowExecution,
    workflow_executions_table,
    workflows_table,
)
from nekzus.scripts.service import ExecutionRequest, ScriptService, check_id, loads, slug
from nekzus.store import Database

__all__ = ["WorkflowService"]

JOB_KIND = "workflow"
MAX_STEPS = 50
ON_FAILURE = ("stop", "continue")

_workflows = workflows_table
_runs = workflow_executions_table


@dataclass(frozen=True, slots=True)
class WorkflowRun:
    parameters: Mapping[str, Any] | None = None
    triggered_by: str = ""
    triggered_ip: str | None = None
    schedule_id: str | None = None
    device_id: str | None = None


class WorkflowService:
    def __init__(
        self,
        db: Database,
        runner: JobRunner,
        scripts: ScriptService,
        *,
        bus: EventBus | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.runner = runner
        self.scripts = scripts
        self.bus = bus
        self.clock = clock

    async def start(self) -> None:
        await self.db.execute(
            update(_runs)
            .where(_runs.c.status.in_(["pending", "running"]))
            .values(
                status="failed",
                error_message="interrupted by a server restart",
                completed_at=self.clock(),
            )
        )

    async def _steps(self, raw: Any) -> str:
        if not isinstance(raw, list) or not raw:
            raise Invalid("steps must be a non-empty list", code="MISSING_STEPS")
        if len(raw) > MAX_STEPS:
            raise Invalid(f"at most {MAX_STEPS} steps", code="INVALID_STEPS")
        steps: list[dict[str, Any]] = []
        for index, step in enumerate(raw):
            if not isinstance(step, Mapping):
                raise Invalid(f"step {index + 1} must be an object", code="INVALID_STEPS")
            script_id = str(step.get("scriptId") or step.get("script_id") or "")
            if not script_id:
                raise Invalid(f"step {index + 1} needs a scriptId", code="INVALID_STEPS")
            await self.scripts.get(script_id)  # 404 SCRIPT_NOT_FOUND for an unknown script
            on_failure = str(step.get("onFailure") or step.get("on_failure") or "stop")
            if on_failure not in ON_FAILURE:
                raise Invalid(f"step {index + 1}: onFailure must be stop or continue", code="INVALID_STEPS")
            params = step.get("parameters") or {}
            if not isinstance(params, Mapping):
                raise Invalid(f"step {index + 1}: parameters must be an object", code="INVALID_STEPS")
            steps.append({"scriptId": script_id, "parameters": dict(params), "onFailure": on_failure})
        return json.dumps(steps)

    async def create(self, data: Mapping[str, Any], created_by: str) -> Workflow:
        name = str(data.get("name") or "").strip()
        if not name:
            raise Invalid("name is required", code="MISSING_NAME")
        workflow_id = slug(name)
        if not workflow_id:
            raise Invalid("name must contain letters or digits", code="MISSING_NAME")
        steps = await self._steps(data.get("steps"))
        now = self.clock()
        row = Workflow(
            id=workflow_id,
            name=name[:255],
            description=str(data.get("description") or "")[:4000],
            steps=steps,
            allowed_scopes=json.dumps(list(data.get("allowed_scopes") or [])),
            created_by=created_by,
            created_at=now,
            updated_at=now,
        )
        added = await self.db.execute(
            sqlite_insert(_workflows).values(**asdict(row)).on_conflict_do_nothing(index_elements=["id"])
        )
        if not added.rowcount:
            raise Conflict(f"A workflow with id {workflow_id} already exists", code="WORKFLOW_EXISTS")
        return row

    async def update(self, workflow_id: str, data: Mapping[str, Any]) -> Workflow:
        steps = await self._steps(data["steps"]) if data.get("steps") is not None else None
        values: dict[str, Any] = {"updated_at": self.clock()}
        if data.get("name"):
            values["name"] = str(data["name"]).strip()[:255]
        if data.get("description") is not None:
            values["description"] = str(data["description"])[:4000]
        if steps is not None:
            values["steps"] = steps
        found = await self.db.first(
            update(_workflows)
            .where(_workflows.c.id == check_id(workflow_id))
            .values(**values)
            .returning(*_workflows.c)
        )
        if found is None:
            raise NotFound("Workflow not found", code="WORKFLOW_NOT_FOUND")
        return Workflow.from_row(found)

    async def get(self, workflow_id: str) -> Workflow:
        row = await self.db.first(select(_workflows).where(_workflows.c.id == check_id(workflow_id)))
        if row is None:
            raise NotFound("Workflow not found", code="WORKFLOW_NOT_FOUND")
        return Workflow.from_row(row)

    async def all(self) -> list[Workflow]:
        rows = await self.db.rows(select(_workflows).order_by(_workflows.c.name))
        return [Workflow.from_row(row) for row in rows]

    async def delete(self, workflow_id: str) -> None:
        """Its runs and schedules go with it (the foreign keys cascade)."""
        result = await self.db.execute(delete(_workflows).where(_workflows.c.id == check_id(workflow_id)))
        if not result.rowcount:
            raise NotFound("Workflow not found", code="WORKFLOW_NOT_FOUND")

    # -- runs ---------------------------------------------------------------------------------------
    async def execute(self, workflow_id: str, run: WorkflowRun, *, wait: bool) -> WorkflowExecution:
        workflow = await self.get(workflow_id)
        params = dict(run.parameters or {})
        row = WorkflowExecution(
            id=f"wfexec_{secrets.token_hex(8)}",
            workflow_id=workflow.id,
            status="pending",
            current_step=0,
            steps="[]",
            parameters=json.dumps(params),
            triggered_by=run.triggered_by,
            error_message=None,
            created_at=self.clock(),
            started_at=None,
            completed_at=None,
        )
        await self.db.execute(insert(_runs).values(**asdict(row)))

        async def work(ctx: JobContext) -> str:
            return await self._run(ctx, workflow, row.id, run)

        try:
            job = await self.runner.submit(
                JOB_KIND, work, triggered_by=run.triggered_by, job_id=row.id, on_skipped=self._skipped
            )
        except BaseException:  # queue full: leave no run record behind
            await self.db.execute(delete(_runs).where(_runs.c.id == row.id))
            raise
        if wait:
            await self.runner.wait(job.id)
            return await self.execution(row.id)
        return row

    async def _run(self, ctx: JobContext, workflow: Workflow, run_id: str, run: WorkflowRun) -> str:
        steps: list[dict[str, Any]] = loads(workflow.steps, [])
        results: list[dict[str, Any]] = []
        await self._save(run_id, status="running", started_at=self.clock())
        names = await self._script_names(steps)
        announce = self._announcer(workflow, run_id, run, steps, names)
        announce(
            ev.WORKFLOW_STARTED,
            steps=[
                {
                    "index": i,
                    "scriptId": st["scriptId"],
                    "scriptName": names.get(st["scriptId"], ""),
                    "status": "pending",
                }
                for i, st in enumerate(steps)
            ],
        )
        final = "completed"
        done = 0  # steps that reached an end state (their events are sent)
        try:
            for index, step in enumerate(steps):
                ctx.progress(100.0 * index / max(len(steps), 1), phase=f"step {index + 1}/{len(steps)}")
                await self._save(run_id, current_step=index)
                announce(ev.WORKFLOW_STEP, index=index, status="running")
                result, output = await self._step(index, step, workflow.id, run_id, run)
                results.append(result)
                done = index + 1
                ok = result["status"] == "completed"
                announce(
                    ev.WORKFLOW_STEP,
                    index=index,
                    status="succeeded" if ok else "failed",
                    executionId=result["executionId"],
                    executionStatus=result["status"],
                    exitCode=result["exitCode"],
                    error=result["error"],
                    output=output[: ev.EVENT_OUTPUT_CHARS],
                )
                await self._save(run_id, steps=json.dumps(results))
                if not ok:
                    final = "timeout" if result["status"] == "timeout" and final == "completed" else "failed"
                    if step.get("onFailure") != "continue":
                        break
        except asyncio.CancelledError:
            if done < len(steps):
                announce(
                    ev.WORKFLOW_STEP,
                    index=done,
                    status="failed",
                    executionStatus="cancelled",
                    error="cancelled",
                )
            for index in range(done + 1, len(steps)):
                announce(ev.WORKFLOW_STEP, index=index, status="skipped")
            announce(ev.WORKFLOW_FINISHED, status="cancelled")
            await asyncio.shield(
                self._save(run_id, status="cancelled", steps=json.dumps(results), completed_at=self.clock())
            )
            raise
        for index in range(done, len(steps)):
            announce(ev.WORKFLOW_STEP, index=index, status="skipped")
        await self._save(run_id, status=final, steps=json.dumps(results), completed_at=self.clock())
        announce(ev.WORKFLOW_FINISHED, status=final)
        if final != "completed":
            raise JobFailed(f"workflow {final}")
        return final

    async def _script_names(self, steps: list[dict[str, Any]]) -> dict[str, str]:
        names: dict[str, str] = {}
        for step in steps:
            script_id = str(step.get("scriptId") or "")
            if script_id and script_id not in names:
                try:
                    names[script_id] = (await self.scripts.get(script_id)).name
                except NekzusError:  # deleted since: the step will fail with its own message
                    names[script_id] = ""
        return names

    def _announcer(
        self,
        workflow: Workflow,
        run_id: str,
        run: WorkflowRun,
        steps: list[dict[str, Any]],
        names: Mapping[str, str],
    ) -> Callable[..., None]:
        """Publish one of the run's events, to the same audience as its steps' execution events."""

        def announce(type_: ev.ScriptEvent, **data: Any) -> None:
            if self.bus is None:
                return
            if "index" in data:
                step = steps[data["index"]]
                data = {
                    "scriptId": step["scriptId"],
                    "scriptName": names.get(step["scriptId"], ""),
                    "onFailure": step.get("onFailure") or "stop",
                    **data,
                }
            payload = {
                "workflowExecutionId": run_id,
                "workflowId": workflow.id,
                "workflowName": workflow.name,
                "stepCount": len(steps),
                "triggeredBy": run.triggered_by,
                **data,
                "timestamp": self.clock(),
            }
            device = run.device_id
            self.bus.emit(type_, payload, device_id=device, include_admins=device is not None)

        return announce

    async def _skipped(self, job: Job) -> None:
        await self._save(
            job.id, status="cancelled", error_message="cancelled before it started", completed_at=self.clock()
        )

    async def _step(
        self, index: int, step: Mapping[str, Any], workflow_id: str, run_id: str, run: WorkflowRun
    ) -> tuple[dict[str, Any], str]:
        """Run one step as an ordinary execution: its summary for the run record, and its output."""
        params = {**dict(run.parameters or {}), **dict(step.get("parameters") or {})}
        base: dict[str, Any] = {
            "index": index,
            "scriptId": step["scriptId"],
            "onFailure": step.get("onFailure"),
        }
        try:
            script = await self.scripts.get(step["scriptId"])
            declared = {spec.name for spec in self.scripts.specs(script)}
            params = {
                k: v for k, v in params.items() if k in declared
            }  # run-wide values a step does not declare
            execution = await self.scripts.execute(
                script.id,
                ExecutionRequest(
                    parameters=params,
                    triggered_by=run.triggered_by,
                    triggered_ip=run.triggered_ip,
                    workflow_id=workflow_id,
                    workflow_execution_id=run_id,
                    schedule_id=run.schedule_id,
                    device_id=run.device_id,
                ),
                wait=True,
            )
        except NekzusError as exc:
            failed = {**base, "executionId": None, "status": "failed", "exitCode": None, "error": exc.message}
            return failed, ""
        summary = {
            **base,
            "executionId": execution.id,
            "status": execution.status,
            "exitCode": execution.exit_code,
            "error": execution.error_message,
        }
        return summary, execution.output or ""

    async def _save(self, run_id: str, **values: Any) -> None:
        await self.db.execute(update(_runs).where(_runs.c.id == run_id).values(**values))

    async def execution(self, run_id: str, workflow_id: str | None = None) -> WorkflowExecution:
        row = await self.db.first(select(_runs).where(_runs.c.id == run_id))
        if row is None or (workflow_id is not None and row.workflow_id != workflow_id):
            raise NotFound("Workflow execution not found", code="EXECUTION_NOT_FOUND")
        return WorkflowExecution.from_row(row)

    async def executions(self, workflow_id: str, limit: int = 50) -> list[WorkflowExecution]:
        await self.get(workflow_id)
        rows = await self.db.rows(
            select(_runs).where(_runs.c.workflow_id == workflow_id).order_by(_runs.c.seq.desc()).limit(limit)
        )
        return [WorkflowExecution.from_row(row) for row in rows]
