"""The routers and wiring of scripts, executions, workflows and schedules while scripts are on.

Imported by `nekzus.api.scripts` only when `scripts.enabled` and `scripts.directory` are set, so a server
with scripts off never loads the scripts domain, its tables or cron. Routers only parse and shape; the
`nekzus.scripts` services own the rules. Reads need any valid credential, changes and runs need `write:*`
(plus a script's own `allowedScopes`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response

from nekzus.api.deps import client_ip
from nekzus.api.jobs import job_runner
from nekzus.api.requests import listing
from nekzus.api.security import require
from nekzus.auth.principal import Principal
from nekzus.errors import Forbidden, Invalid, NotFound, error_for
from nekzus.jobs import CronScheduler, SystemClock, resolve_zone
from nekzus.scripts.models import Execution, Schedule, Script, Workflow, WorkflowExecution
from nekzus.scripts.schedules import ScheduleService
from nekzus.scripts.service import ExecutionRequest, ScriptService, check_id, loads
from nekzus.scripts.workflows import WorkflowRun, WorkflowService
from nekzus.services import Services
from nekzus.timefmt import rfc3339_or_none as rfc3339

__all__ = ["install_enabled"]

_ANY = ["GET", "POST", "PUT", "PATCH", "DELETE"]
_WRITE = "write:*"

# Accepted spellings (the API's camelCase and the older snake_case) → internal names.
_ALIASES = {
    "scriptPath": "script_path",
    "timeoutSeconds": "timeout_seconds",
    "allowedScopes": "allowed_scopes",
    "dryRunCommand": "dry_run_command",
    "cronExpression": "cron_expression",
    "cron": "cron_expression",
    "scriptId": "script_id",
    "workflowId": "workflow_id",
    "dryRun": "dry_run",
}


def normalize(body: Mapping[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (body or {}).items():
        out[_ALIASES.get(key, key)] = value
    return out


def triggered_by(principal: Principal, ip: str) -> str:
    """Who ran it: a device id, a dashboard user, `api_key:<id>`, or `web:<ip>` for trusted-network calls."""
    if principal.kind == "apikey":
        return f"api_key:{principal.id}"
    if principal.kind == "trusted":
        return f"web:{ip}"
    return principal.id


# -- wire shapes ---------------------------------------------------------------------------------------
def script_json(row: Script) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "category": row.category,
        "scriptPath": row.script_path,
        "scriptType": row.script_type,
        "timeoutSeconds": row.timeout_seconds,
        "parameters": loads(row.parameters, []),
        "environment": loads(row.environment, {}),
        "allowedScopes": loads(row.allowed_scopes, []),
        "dryRunCommand": row.dry_run_command,
        "createdBy": row.created_by,
        "createdAt": rfc3339(row.created_at),
        "updatedAt": rfc3339(row.updated_at),
    }


def execution_json(row: Execution) -> dict[str, Any]:
    ended = rfc3339(row.completed_at)
    duration = (
        round(row.completed_at - row.started_at, 3)
        if row.completed_at is not None and row.started_at
        else None
    )
    return {
        "id": row.id,
        "scriptId": row.script_id,
        "workflowId": row.workflow_id,
        "workflowExecutionId": row.workflow_execution_id,
        "scheduleId": row.schedule_id,
        "status": row.status,
        "isDryRun": row.is_dry_run,
        "triggeredBy": row.triggered_by,
        "triggeredIp": row.triggered_ip,
        "parameters": loads(row.parameters, {}),
        "output": row.output,
        "exitCode": row.exit_code,
        "error": row.error_message,
        "errorMessage": row.error_message,
        "createdAt": rfc3339(row.created_at),
        "startedAt": rfc3339(row.started_at),
        "endedAt": ended,
        "completedAt": ended,
        "duration": duration,
    }


def workflow_json(row: Workflow) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "steps": loads(row.steps, []),
        "allowedScopes": loads(row.allowed_scopes, []),
        "createdBy": row.created_by,
        "createdAt": rfc3339(row.created_at),
        "updatedAt": rfc3339(row.updated_at),
    }


def workflow_execution_json(row: WorkflowExecution) -> dict[str, Any]:
    ended = rfc3339(row.completed_at)
    return {
        "id": row.id,
        "workflowId": row.workflow_id,
        "status": row.status,
        "currentStep": row.current_step,
        "steps": loads(row.steps, []),
        "parameters": loads(row.parameters, {}),
        "triggeredBy": row.triggered_by,
        "error": row.error_message,
        "createdAt": rfc3339(row.created_at),
        "startedAt": rfc3339(row.started_at),
        "endedAt": ended,
        "completedAt": ended,
    }


def schedule_json(row: Schedule, timezone: str) -> dict[str, Any]:
    return {
        "id": row.id,
        "scriptId": row.script_id,
        "workflowId": row.workflow_id,
        "cronExpression": row.cron_expression,
        "timezone": timezone,
        "parameters": loads(row.parameters, {}),
        "enabled": row.enabled,
        "lastRunAt": rfc3339(row.last_run_at),
        "nextRunAt": rfc3339(row.next_run_at),
        "createdBy": row.created_by,
        "createdAt": rfc3339(row.created_at),
        "updatedAt": rfc3339(row.updated_at),
    }


def accepted(execution_id: str, poll_url: str, **owner: str) -> JSONResponse:
    """The 202 of a run queued with `?async=true`: what was started, and where to poll for it."""
    body = {"executionId": execution_id, **owner, "status": "pending", "async": True, "pollUrl": poll_url}
    return JSONResponse(body, status_code=202)


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "false", "0", ""):
        return value.lower() in ("true", "1")
    raise Invalid("dryRun must be a boolean", code="VALIDATION_ERROR")


def _params(body: Mapping[str, Any]) -> dict[str, Any]:
    params = body.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise Invalid("parameters must be an object", code="INVALID_PARAMS")
    return dict(params)


# -- routers -----------------------------------------------------------------------------------------
def _scripts_router(scripts: ScriptService) -> APIRouter:
    router = APIRouter(prefix="/api/v1/scripts", tags=["scripts"])

    @router.get("", summary="Registered scripts")
    async def list_scripts(
        category: str | None = Query(default=None, max_length=64), _p: Principal = Depends(require())
    ) -> dict[str, Any]:
        rows = await scripts.all(category)
        return listing("scripts", [script_json(r) for r in rows], enabled=True)

    @router.get("/available", summary="Files in the scripts directory not registered yet")
    async def available(_p: Principal = Depends(require())) -> dict[str, Any]:
        found = await scripts.available()
        return listing("available", found, scripts=found, enabled=True)

    @router.post("", status_code=201, summary="Register a script file from the scripts directory")
    async def register(
        request: Request, body: dict[str, Any] = Body(...), principal: Principal = Depends(require(_WRITE))
    ) -> dict[str, Any]:
        row = await scripts.register(normalize(body), triggered_by(principal, client_ip(request)))
        return script_json(row)

    @router.get("/{script_id}", summary="One script")
    async def get_script(script_id: str, _p: Principal = Depends(require())) -> dict[str, Any]:
        return script_json(await scripts.get(script_id))

    @router.put("/{script_id}", summary="Update a script (fields given are changed)")
    async def update_script(
        request: Request,
        script_id: str,
        body: dict[str, Any] = Body(...),
        principal: Principal = Depends(require(_WRITE)),
    ) -> dict[str, Any]:
        data = {k: v for k, v in normalize(body).items() if v is not None and k != "id"}
        return script_json(await scripts.update(script_id, data, triggered_by(principal, client_ip(request))))

    @router.delete("/{script_id}", status_code=204, summary="Delete a script and its executions")
    async def delete_script(
        request: Request, script_id: str, principal: Principal = Depends(require(_WRITE))
    ) -> Response:
        await scripts.delete(script_id, triggered_by(principal, client_ip(request)))
        return Response(status_code=204)

    async def _request(
        request: Request, script_id: str, body: Mapping[str, Any], principal: Principal, dry_run: bool
    ) -> ExecutionRequest:
        script = await scripts.get(script_id)
        needed = loads(script.allowed_scopes, [])
        if needed and not principal.allows(*needed):
            raise Forbidden(f"Missing required scope: {', '.join(needed)}", code="FORBIDDEN")
        ip = client_ip(request)
        return ExecutionRequest(
            parameters=_params(body),
            dry_run=dry_run,
            triggered_by=triggered_by(principal, ip),
            triggered_ip=ip,
            device_id=principal.device_id,
        )

    @router.post("/{script_id}/execute", summary="Run a script (synchronously, or ?async=true)")
    async def execute(
        request: Request,
        script_id: str,
        run_async: bool = Query(default=False, alias="async"),
        body: dict[str, Any] | None = Body(default=None),
        principal: Principal = Depends(require(_WRITE)),
    ) -> Any:
        data = normalize(body)
        req = await _request(request, script_id, data, principal, _flag(data.get("dry_run", False)))
        row = await scripts.execute(script_id, req, wait=not run_async)
        if run_async:
            return accepted(row.id, f"/api/v1/executions/{row.id}", scriptId=row.script_id)
        return execution_json(row)

    @router.post("/{script_id}/dry-run", summary="Run a script with DRY_RUN=true and wait for it")
    async def dry_run(
        request: Request,
        script_id: str,
        body: dict[str, Any] | None = Body(default=None),
        principal: Principal = Depends(require(_WRITE)),
    ) -> dict[str, Any]:
        req = await _request(request, script_id, normalize(body), principal, True)
        row = await scripts.execute(script_id, req, wait=True)
        out = execution_json(row)
        seconds = out["duration"] or 0.0
        return {**out, "dryRun": True, "executionId": row.id, "duration": f"{seconds:.2f}s"}

    return router


def _executions_router(scripts: ScriptService) -> APIRouter:
    router = APIRouter(prefix="/api/v1/executions", tags=["scripts"])

    @router.get("", summary="Script executions, newest first")
    async def list_executions(
        script_id: str | None = Query(default=None, alias="scriptId"),
        status: str | None = Query(default=None),
        limit: str = Query(default="50"),
        offset: str = Query(default="0"),
        # Execution output routinely carries secrets (as container logs do): write:* to read it.
        _p: Principal = Depends(require(_WRITE)),
    ) -> dict[str, Any]:
        try:
            limit_n, offset_n = int(limit), int(offset)
        except ValueError:
            raise Invalid("limit and offset must be integers", code="VALIDATION_ERROR") from None
        if not 0 <= offset_n <= 2**31 - 1 or not 1 <= limit_n <= 2**31 - 1:
            raise Invalid("limit must be positive and offset not negative", code="VALIDATION_ERROR")
        rows, total = await scripts.executions(
            script_id=script_id, status=status, limit=limit_n, offset=offset_n
        )
        return listing("executions", [execution_json(r) for r in rows], total=total)

    @router.get("/{execution_id}", summary="One execution")
    async def get_execution(execution_id: str, _p: Principal = Depends(require(_WRITE))) -> dict[str, Any]:
        check_id(execution_id)
        return execution_json(await scripts.execution(execution_id))

    return router


def _workflows_router(workflows: WorkflowService) -> APIRouter:
    router = APIRouter(prefix="/api/v1/workflows", tags=["scripts"])

    @router.get("", summary="Workflows")
    async def list_workflows(_p: Principal = Depends(require())) -> dict[str, Any]:
        rows = await workflows.all()
        return listing("workflows", [workflow_json(r) for r in rows], enabled=True)

    @router.post("", status_code=201, summary="Create a workflow")
    async def create_workflow(
        request: Request, body: dict[str, Any] = Body(...), principal: Principal = Depends(require(_WRITE))
    ) -> dict[str, Any]:
        row = await workflows.create(normalize(body), triggered_by(principal, client_ip(request)))
        return workflow_json(row)

    @router.get("/{workflow_id}", summary="One workflow")
    async def get_workflow(workflow_id: str, _p: Principal = Depends(require())) -> dict[str, Any]:
        return workflow_json(await workflows.get(workflow_id))

    @router.put("/{workflow_id}", summary="Update a workflow")
    async def update_workflow(
        workflow_id: str, body: dict[str, Any] = Body(...), _p: Principal = Depends(require(_WRITE))
    ) -> dict[str, Any]:
        return workflow_json(await workflows.update(workflow_id, normalize(body)))

    @router.delete("/{workflow_id}", status_code=204, summary="Delete a workflow")
    async def delete_workflow(workflow_id: str, _p: Principal = Depends(require(_WRITE))) -> Response:
        await workflows.delete(workflow_id)
        return Response(status_code=204)

    @router.post("/{workflow_id}/execute", summary="Run a workflow's steps in order")
    async def execute_workflow(
        request: Request,
        workflow_id: str,
        run_async: bool = Query(default=False, alias="async"),
        body: dict[str, Any] | None = Body(default=None),
        principal: Principal = Depends(require(_WRITE)),
    ) -> Any:
        ip = client_ip(request)
        run = WorkflowRun(
            parameters=_params(normalize(body)),
            triggered_by=triggered_by(principal, ip),
            triggered_ip=ip,
            device_id=principal.device_id,
        )
        row = await workflows.execute(workflow_id, run, wait=not run_async)
        if run_async:
            poll = f"/api/v1/workflows/{row.workflow_id}/executions/{row.id}"
            return accepted(row.id, poll, workflowId=row.workflow_id)
        return workflow_execution_json(row)

    @router.get("/{workflow_id}/executions", summary="Runs of a workflow, newest first")
    async def workflow_runs(workflow_id: str, _p: Principal = Depends(require(_WRITE))) -> dict[str, Any]:
        rows = await workflows.executions(workflow_id)
        return listing("executions", [workflow_execution_json(r) for r in rows])

    @router.get("/{workflow_id}/executions/{run_id}", summary="One run of a workflow")
    async def workflow_run(
        workflow_id: str, run_id: str, _p: Principal = Depends(require(_WRITE))
    ) -> dict[str, Any]:
        check_id(workflow_id)
        check_id(run_id)
        return workflow_execution_json(await workflows.execution(run_id, workflow_id))

    return router


def _schedules_router(schedules: ScheduleService, timezone: str) -> APIRouter:
    router = APIRouter(prefix="/api/v1/schedules", tags=["scripts"])

    @router.get("", summary="Schedules")
    async def list_schedules(_p: Principal = Depends(require())) -> dict[str, Any]:
        rows = await schedules.all()
        return listing("schedules", [schedule_json(r, timezone) for r in rows], enabled=True)

    @router.post("", status_code=201, summary="Create a cron schedule for a script or workflow")
    async def create_schedule(
        request: Request, body: dict[str, Any] = Body(...), principal: Principal = Depends(require(_WRITE))
    ) -> dict[str, Any]:
        row = await schedules.create(normalize(body), triggered_by(principal, client_ip(request)))
        return schedule_json(row, timezone)

    @router.get("/{schedule_id}", summary="One schedule")
    async def get_schedule(schedule_id: str, _p: Principal = Depends(require())) -> dict[str, Any]:
        return schedule_json(await schedules.get(schedule_id), timezone)

    @router.put("/{schedule_id}", summary="Change a schedule's cron, parameters or enabled flag")
    async def update_schedule(
        schedule_id: str, body: dict[str, Any] = Body(...), _p: Principal = Depends(require(_WRITE))
    ) -> dict[str, Any]:
        return schedule_json(await schedules.update(schedule_id, normalize(body)), timezone)

    @router.post("/{schedule_id}/enable", summary="Enable a schedule")
    async def enable(schedule_id: str, _p: Principal = Depends(require(_WRITE))) -> dict[str, Any]:
        return schedule_json(await schedules.set_enabled(schedule_id, True), timezone)

    @router.post("/{schedule_id}/disable", summary="Disable a schedule")
    async def disable(schedule_id: str, _p: Principal = Depends(require(_WRITE))) -> dict[str, Any]:
        return schedule_json(await schedules.set_enabled(schedule_id, False), timezone)

    @router.delete("/{schedule_id}", status_code=204, summary="Delete a schedule")
    async def delete_schedule(schedule_id: str, _p: Principal = Depends(require(_WRITE))) -> Response:
        await schedules.delete(schedule_id)
        return Response(status_code=204)

    return router


_KNOWN_TAILS = {"execute", "dry-run", "enable", "disable", "executions"}


def _catch_all(prefix: str) -> APIRouter:
    """Paths under a prefix that matched nothing: ids carrying separators or `..` are 400, the rest 404."""
    router = APIRouter(prefix=prefix, dependencies=[Depends(require())])

    @router.api_route("/{rest:path}", methods=_ANY, include_in_schema=False)
    async def unmatched(request: Request, rest: str) -> None:
        raw = bytes(request.scope.get("raw_path") or b"").decode("latin-1").lower()
        if ".." in rest or "%2f" in raw or "%5c" in raw or "\\" in rest or "//" in rest:
            raise Invalid("Invalid id", code="INVALID_ID")
        parts = rest.split("/")
        if len(parts) == 1 or (len(parts) <= 3 and parts[1] in _KNOWN_TAILS):
            raise error_for(405, "METHOD_NOT_ALLOWED", "Method not allowed for this path")
        raise NotFound("Resource not found")

    return router


def install_enabled(api: FastAPI, services: Services) -> ScriptService:
    """Build the services, register their hooks and mount the routers; returns the script service."""
    cfg = services.config.scripts
    directory = Path(cfg.directory)
    directory.mkdir(parents=True, exist_ok=True)
    runner = job_runner(services)
    audit = services.domains.audit
    runner.set_limit("script", concurrency=cfg.workers, max_queued=cfg.queue_size)
    runner.set_limit("workflow", concurrency=cfg.workers, max_queued=cfg.queue_size)
    scripts = ScriptService(
        services.db,
        services.bus,
        runner,
        directory=directory,
        default_timeout=cfg.default_timeout,
        max_output_bytes=cfg.max_output_bytes,
        max_executions=cfg.max_executions,
        audit=audit.record,
    )
    workflows = WorkflowService(services.db, runner, scripts, bus=services.bus)
    cron = CronScheduler(clock=SystemClock(), zone=resolve_zone(cfg.timezone), spawn=services.spawn)
    schedules = ScheduleService(services.db, cron, scripts, workflows)
    if "scripts" not in services.capabilities:
        services.capabilities.append("scripts")

    async def start() -> None:
        await scripts.start()
        await workflows.start()

    async def start_schedules() -> None:
        await schedules.start()

    async def stop() -> None:
        await cron.stop()

    services.on_startup("scripts", start)
    # Leader only with several worker processes (`nekzus.workers.LEADER_ONLY`): one cron per instance.
    services.on_startup("script-schedules", start_schedules)
    services.on_shutdown("scripts", stop)
    zone_name = cfg.timezone or "local"
    api.include_router(_scripts_router(scripts))
    api.include_router(_executions_router(scripts))
    api.include_router(_workflows_router(workflows))
    api.include_router(_schedules_router(schedules, zone_name))
    for prefix in ("scripts", "executions", "workflows", "schedules"):
        api.include_router(_catch_all(f"/api/v1/{prefix}"))
    return scripts
