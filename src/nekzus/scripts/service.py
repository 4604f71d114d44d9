"""Scripts and their executions: registration, the `available` scan, runs on the job runner, history.

Every run (API, dry run, workflow step, schedule) is one execution record and one job of kind
`script`, so the runner's bound applies to all of them (503 QUEUE_FULL) and a crash leaves no record
stuck in `running`. Statuses: pending → running → completed | failed | timeout | cancelled.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import ColumnElement, delete, func, insert, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from nekzus.errors import Conflict, Invalid, NotFound
from nekzus.events import EventBus
from nekzus.jobs import Job, JobContext, JobFailed, JobRunner
from nekzus.scripts import events as ev
from nekzus.scripts.models import Execution, Script, script_executions_table, scripts_table
from nekzus.scripts.params import (
    ParamSpec,
    build_environment,
    check_environment,
    parse_specs,
    validate_values,
)
from nekzus.scripts.paths import command_for, resolve_in, scan, script_type, split_dry_run
from nekzus.store import Database

__all__ = ["AuditSink", "ExecutionRequest", "ScriptService", "slug"]

log = logging.getLogger("nekzus.scripts")

JOB_KIND = "script"
STATUSES = ("pending", "running", "completed", "failed", "timeout", "cancelled")
FINAL = ("completed", "failed", "timeout", "cancelled")
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
MAX_TIMEOUT = 24 * 3600

_scripts = scripts_table
_executions = script_executions_table


class AuditSink(Protocol):
    """The audit log's `record` (it never raises: a failed audit write must not fail the change)."""

    async def __call__(
        self, action: str, *, actor: str, target: str = "", details: dict[str, Any] | None = None
    ) -> None: ...


async def no_audit(
    action: str, *, actor: str, target: str = "", details: dict[str, Any] | None = None
) -> None:
    return None


def slug(name: str) -> str:
    """`Backup Database` → `backup-database`: lower case, spaces to dashes, only [a-z0-9-] kept."""
    text = "".join(
        ch for ch in name.strip().lower().replace(" ", "-") if ch.isascii() and (ch.isalnum() or ch == "-")
    )
    return text.strip("-")[:64]


def check_id(value: str, code: str = "INVALID_ID") -> str:
    if not ID_PATTERN.match(value or ""):
        raise Invalid("Invalid id", code=code)
    return value


def loads(text: str | None, default: Any) -> Any:
    try:
        return json.loads(text) if text else default
    except ValueError:
        return default


@dataclass(frozen=True, slots=True)
class ExecutionRequest:
    """Who runs what: the values the caller gave and where the run comes from."""

    parameters: Mapping[str, Any] | None = None
    dry_run: bool = False
    triggered_by: str = ""
    triggered_ip: str | None = None
    workflow_id: str | None = None
    workflow_execution_id: str | None = None
    schedule_id: str | None = None
    # A device that asked hears about its own run (and dashboards with it); otherwise events go to all.
    device_id: str | None = None


class ScriptService:
    def __init__(
        self,
        db: Database,
        bus: EventBus,
        runner: JobRunner,
        *,
        directory: Path,
        default_timeout: int,
        max_output_bytes: int,
        max_executions: int,
        clock: Callable[[], float] = time.time,
        audit: AuditSink = no_audit,
    ) -> None:
        self.audit = audit
        self.db = db
        self.bus = bus
        self.runner = runner
        self.directory = directory
        self.default_timeout = default_timeout
        self.max_output_bytes = max_output_bytes
        self.max_executions = max_executions
        self.clock = clock
        self.python = shutil.which("python3") or sys.executable

    async def start(self) -> None:
        """Executions a crash left pending/running are failed (their process died with the server)."""
        await self.db.execute(
            update(_executions)
            .where(_executions.c.status.in_(["pending", "running"]))
            .values(
                status="failed",
                error_message="interrupted by a server restart",
                completed_at=self.clock(),
            )
        )

    # -- scripts ----------------------------------------------------------------------------------
    def _validate(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Checked column values from a (partial) body; only keys present in `data` are returned."""
        out: dict[str, Any] = {}
        if "name" in data:
            name = str(data["name"] or "").strip()
            if not name:
                raise Invalid("name is required", code="MISSING_NAME")
            out["name"] = name[:255]
        if "script_path" in data:
            relative, real = resolve_in(self.directory, str(data["script_path"] or ""))
            out["script_path"] = relative
            out["script_type"] = script_type(relative)
            if out["script_type"] == "go_binary":
                command_for(real, "go_binary", self.python)  # refuses a non-executable file now
        if "timeout_seconds" in data and data["timeout_seconds"] is not None:
            timeout = data["timeout_seconds"]
            if isinstance(timeout, bool) or not isinstance(timeout, int) or not 1 <= timeout <= MAX_TIMEOUT:
                raise Invalid(f"timeoutSeconds must be 1..{MAX_TIMEOUT}", code="VALIDATION_ERROR")
            out["timeout_seconds"] = timeout
        if "parameters" in data:
            out["parameters"] = json.dumps([s.to_dict() for s in parse_specs(data["parameters"])])
        if "environment" in data:
            out["environment"] = json.dumps(check_environment(data["environment"]))
        if "allowed_scopes" in data:
            scopes = data["allowed_scopes"] or []
            if not isinstance(scopes, list) or not all(isinstance(s, str) and s for s in scopes):
                raise Invalid("allowedScopes must be a list of scopes", code="VALIDATION_ERROR")
            out["allowed_scopes"] = json.dumps(scopes)
        if "dry_run_command" in data:
            command = str(data["dry_run_command"] or "").strip()
            if command:
                split_dry_run(self.directory, command)
            out["dry_run_command"] = command
        for key in ("description", "category"):
            if key in data and data[key] is not None:
                out[key] = str(data[key])[:4000]
        return out

    async def register(self, data: Mapping[str, Any], created_by: str) -> Script:
        if not str(data.get("name") or "").strip():
            raise Invalid("name is required", code="MISSING_NAME")
        if not str(data.get("script_path") or "").strip():
            raise Invalid("scriptPath is required", code="MISSING_PATH")
        values = self._validate(data)
        script_id = slug(values["name"])
        if not script_id:
            raise Invalid("name must contain letters or digits", code="MISSING_NAME")
        now = self.clock()
        row = Script(
            id=script_id,
            name=values["name"],
            description=values.get("description", ""),
            category=values.get("category") or "general",
            script_path=values["script_path"],
            script_type=values["script_type"],
            timeout_seconds=values.get("timeout_seconds", self.default_timeout),
            parameters=values.get("parameters", "[]"),
            environment=values.get("environment", "{}"),
            allowed_scopes=values.get("allowed_scopes", "[]"),
            dry_run_command=values.get("dry_run_command", ""),
            created_by=created_by,
            created_at=now,
            updated_at=now,
        )
        added = await self.db.execute(
            sqlite_insert(_scripts).values(**asdict(row)).on_conflict_do_nothing(index_elements=["id"])
        )
        if not added.rowcount:
            raise Conflict(f"A script with id {script_id} already exists", code="SCRIPT_EXISTS")
        await self.audit(
            "script.registered", actor=created_by, target=row.id, details={"path": row.script_path}
        )
        return row

    async def update(self, script_id: str, data: Mapping[str, Any], actor: str = "") -> Script:
        values = self._validate(data)
        found = await self.db.first(
            update(_scripts)
            .where(_scripts.c.id == check_id(script_id))
            .values(**values, updated_at=self.clock())
            .returning(*_scripts.c)
        )
        if found is None:
            raise NotFound("Script not found", code="SCRIPT_NOT_FOUND")
        row = Script.from_row(found)
        await self.audit("script.updated", actor=actor, target=row.id, details={"fields": sorted(values)})
        return row

    async def delete(self, script_id: str, actor: str = "") -> None:
        """Its executions and schedules go with it (the foreign keys cascade)."""
        result = await self.db.execute(delete(_scripts).where(_scripts.c.id == check_id(script_id)))
        if not result.rowcount:
            raise NotFound("Script not found", code="SCRIPT_NOT_FOUND")
        await self.audit("script.deleted", actor=actor, target=script_id)

    async def get(self, script_id: str) -> Script:
        row = await self.db.first(select(_scripts).where(_scripts.c.id == check_id(script_id)))
        if row is None:
            raise NotFound("Script not found", code="SCRIPT_NOT_FOUND")
        return Script.from_row(row)

    async def all(self, category: str | None = None) -> list[Script]:
        query = select(_scripts)
        if category:
            query = query.where(_scripts.c.category == category)
        rows = await self.db.rows(query.order_by(_scripts.c.name, _scripts.c.id))
        return [Script.from_row(row) for row in rows]

    async def available(self) -> list[dict[str, object]]:
        registered = {row.script_path for row in await self.all()}
        return await asyncio.to_thread(scan, self.directory, registered)

    @staticmethod
    def specs(row: Script) -> list[ParamSpec]:
        return parse_specs(loads(row.parameters, []))

    # -- executions -------------------------------------------------------------------------------
    async def execute(self, script_id: str, request: ExecutionRequest, *, wait: bool) -> Execution:
        """Validate, record `pending`, queue on the runner; with `wait` return the finished record."""
        script = await self.get(script_id)
        values = validate_values(self.specs(script), request.parameters)
        execution_id = f"exec_{secrets.token_hex(8)}"
        row = Execution(
            id=execution_id,
            script_id=script.id,
            workflow_id=request.workflow_id,
            workflow_execution_id=request.workflow_execution_id,
            schedule_id=request.schedule_id,
            status="pending",
            is_dry_run=request.dry_run,
            triggered_by=request.triggered_by,
            triggered_ip=request.triggered_ip,
            parameters=json.dumps(values),
            output="",
            exit_code=None,
            error_message=None,
            created_at=self.clock(),
            started_at=None,
            completed_at=None,
        )
        await self.db.execute(insert(_executions).values(**asdict(row)))

        async def work(ctx: JobContext) -> str:
            return await self._run(ctx, script, row, values, request.device_id)

        try:
            job = await self.runner.submit(
                JOB_KIND,
                work,
                timeout=script.timeout_seconds + 30,  # the script's own timeout fires first
                triggered_by=request.triggered_by,
                job_id=execution_id,
                on_skipped=self._skipped,
            )
        except BaseException:
            await self.db.execute(delete(_executions).where(_executions.c.id == execution_id))
            raise
        await self.audit(
            "script.executed",
            actor=request.triggered_by,
            target=script.id,
            details={"executionId": execution_id, "dryRun": request.dry_run, "parameters": sorted(values)},
        )
        if wait:
            await self.runner.wait(job.id)
            return await self.execution(execution_id)
        return row

    async def _skipped(self, job: Job) -> None:
        """A run cancelled while still queued: its record ends `cancelled` instead of staying `pending`."""
        await self._save(
            job.id, status="cancelled", error_message="cancelled before it started", completed_at=self.clock()
        )

    def _argv(self, script: Script, dry_run: bool) -> list[str]:
        if dry_run and script.dry_run_command:
            relative, args = split_dry_run(self.directory, script.dry_run_command)
            _rel, real = resolve_in(self.directory, relative)
            return command_for(real, script_type(relative), self.python) + args
        _rel, real = resolve_in(self.directory, script.script_path)
        return command_for(real, script.script_type, self.python)

    async def _run(
        self,
        ctx: JobContext,
        script: Script,
        row: Execution,
        values: dict[str, str],
        device: str | None,
    ) -> str:
        started = self.clock()
        await self._save(row.id, status="running", started_at=started)
        self._emit(ev.EXECUTION_STARTED, row, script, device, status="running")
        fields: dict[str, Any]
        try:
            argv = self._argv(script, row.is_dry_run)
            env = build_environment(
                str(self.directory.resolve()),
                check_environment(loads(script.environment, {})),
                values,
                dry_run=row.is_dry_run,
                execution_id=row.id,
            )
            result = await ctx.run_process(
                argv,
                env=env,
                cwd=str(self.directory.resolve()),
                timeout=script.timeout_seconds,
                max_output_bytes=self.max_output_bytes,
            )
        except asyncio.CancelledError:
            await asyncio.shield(
                self._finish(row, script, device, started, status="cancelled", error="cancelled")
            )
            raise
        except (Invalid, OSError) as exc:
            message = (
                exc.message if isinstance(exc, Invalid) else f"could not start the script: {exc.strerror}"
            )
            await self._finish(row, script, device, started, status="failed", error=message)
            raise JobFailed(message) from None
        if result.timed_out:
            fields = {"status": "timeout", "error": f"timed out after {script.timeout_seconds}s"}
        elif result.exit_code == 0:
            fields = {"status": "completed", "error": None}
        else:
            fields = {"status": "failed", "error": f"exit code {result.exit_code}"}
        await self._finish(
            row, script, device, started, output=result.output, exit_code=result.exit_code, **fields
        )
        if fields["status"] != "completed":
            raise JobFailed(str(fields["error"]))
        return "completed"

    async def _finish(
        self,
        row: Execution,
        script: Script,
        device: str | None,
        started: float,
        *,
        status: str,
        error: str | None,
        output: str = "",
        exit_code: int | None = None,
    ) -> None:
        ended = self.clock()
        await self._save(
            row.id, status=status, output=output, exit_code=exit_code, error_message=error, completed_at=ended
        )
        kind = ev.EXECUTION_COMPLETED if status == "completed" else ev.EXECUTION_FAILED
        self._emit(
            kind,
            row,
            script,
            device,
            status=status,
            output=output[: ev.EVENT_OUTPUT_CHARS],
            duration=round(ended - started, 3),
            exitCode=exit_code,
            **({"errorMessage": error} if error else {}),
        )
        try:
            await self._prune()
        except Exception:
            log.warning("could not prune old executions", exc_info=True)

    def _emit(
        self, type_: ev.ScriptEvent, row: Execution, script: Script, device: str | None, **data: Any
    ) -> None:
        payload = {
            "executionId": row.id,
            "scriptId": script.id,
            "scriptName": script.name,
            "isDryRun": row.is_dry_run,
            "triggeredBy": row.triggered_by,
            **data,
            "timestamp": self.clock(),
        }
        self.bus.emit(type_, payload, device_id=device, include_admins=device is not None)

    async def _save(self, execution_id: str, **values: Any) -> None:
        await self.db.execute(update(_executions).where(_executions.c.id == execution_id).values(**values))

    async def _prune(self) -> None:
        """Keep the newest `max_executions` finished executions."""
        async with self.db.transaction() as tx:
            cutoff = await tx.scalar(
                select(_executions.c.seq)
                .where(_executions.c.status.in_(FINAL))
                .order_by(_executions.c.seq.desc())
                .offset(self.max_executions)
                .limit(1)
            )
            if cutoff is not None:
                await tx.execute(
                    delete(_executions).where(_executions.c.seq <= cutoff, _executions.c.status.in_(FINAL))
                )

    async def execution(self, execution_id: str) -> Execution:
        row = await self.db.first(select(_executions).where(_executions.c.id == execution_id))
        if row is None:
            raise NotFound("Execution not found", code="EXECUTION_NOT_FOUND")
        return Execution.from_row(row)

    async def executions(
        self,
        *,
        script_id: str | None = None,
        status: str | None = None,
        workflow_execution_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[Execution], int]:
        if status is not None and status not in STATUSES:
            raise Invalid(f"status must be one of {', '.join(STATUSES)}", code="VALIDATION_ERROR")
        if script_id is not None:
            check_id(script_id)
        if not 1 <= limit <= 100:
            raise Invalid("limit must be between 1 and 100", code="VALIDATION_ERROR")
        if offset < 0:
            raise Invalid("offset must not be negative", code="VALIDATION_ERROR")
        conditions: list[ColumnElement[bool]] = []
        if script_id:
            conditions.append(_executions.c.script_id == script_id)
        if status:
            conditions.append(_executions.c.status == status)
        if workflow_execution_id:
            conditions.append(_executions.c.workflow_execution_id == workflow_execution_id)
        async with self.db.transaction() as tx:
            total = await tx.scalar(select(func.count()).select_from(_executions).where(*conditions))
            rows = await tx.rows(
                select(_executions)
                .where(*conditions)
                .order_by(_executions.c.seq.desc())
                .limit(limit)
                .offset(offset)
            )
        return [Execution.from_row(row) for row in rows], int(total or 0)

    async def names(self) -> dict[str, str]:
        return {row.id: row.name for row in await self.all()}
