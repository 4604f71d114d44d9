"""The job runner's wiring and its read/cancel API (`/api/v1/jobs`), so any client can follow a job.

Other features get the runner with `services.domains.features.require(JOBS)` (or `job_runner(services)`);
this feature is installed before them.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query

from nekzus.api.security import require
from nekzus.auth.principal import Principal
from nekzus.domains import Key
from nekzus.errors import Invalid, NotFound
from nekzus.jobs import JobRow, JobRunner, JobState
from nekzus.services import Services
from nekzus.timefmt import rfc3339_or_none as rfc3339

__all__ = ["JOBS", "install", "job_runner"]

# The server's one job runner, for every feature that submits background work.
JOBS: Key[JobRunner] = Key("jobs")


def job_runner(services: Services) -> JobRunner:
    """The server's job runner; a `MissingDependency` at start-up when nekzus.api.jobs was not installed."""
    return services.domains.features.require(JOBS)


def job_json(row: JobRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "state": row.state,
        "percent": row.percent,
        "phase": row.phase,
        "message": row.message,
        "error": row.error,
        "outputTail": row.output_tail,
        "triggeredBy": row.triggered_by,
        "createdAt": rfc3339(row.created_at),
        "startedAt": rfc3339(row.started_at),
        "finishedAt": rfc3339(row.finished_at),
    }


def _router(runner: JobRunner) -> APIRouter:
    router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])

    @router.get("", summary="Recent jobs, newest first")
    async def list_jobs(
        kind: str | None = Query(default=None, max_length=64),
        state: str | None = Query(default=None),
        limit: int = Query(default=50),
        offset: int = Query(default=0),
        _p: Principal = Depends(require()),
    ) -> dict[str, Any]:
        if state is not None and state not in {s.value for s in JobState}:
            raise Invalid("unknown job state", code="VALIDATION_ERROR")
        if not 1 <= limit <= 100 or offset < 0:
            raise Invalid("limit must be 1..100 and offset not negative", code="VALIDATION_ERROR")
        rows = await runner.records(kind=kind, state=state, limit=limit, offset=offset)
        return {"jobs": [job_json(r) for r in rows], "count": len(rows)}

    @router.get("/{job_id}", summary="One job")
    async def get_job(job_id: str, _p: Principal = Depends(require())) -> dict[str, Any]:
        row = await runner.record(job_id)
        if row is None:
            raise NotFound("Job not found", code="JOB_NOT_FOUND")
        return job_json(row)

    @router.post("/{job_id}/cancel", summary="Cancel a pending or running job")
    async def cancel_job(job_id: str, _p: Principal = Depends(require("write:*"))) -> dict[str, Any]:
        row = await runner.record(job_id)
        if row is None:
            raise NotFound("Job not found", code="JOB_NOT_FOUND")
        return {"id": job_id, "cancelled": runner.cancel(job_id)}

    return router


def install(api: FastAPI, services: Services) -> None:
    cfg = services.config.jobs
    runner = JobRunner(
        services.db,
        services.bus,
        services.spawn,
        max_concurrent=cfg.max_concurrent,
        max_queued=cfg.max_queued,
        keep_records=cfg.keep_records,
    )
    services.domains.features.provide(JOBS, runner)

    async def start() -> None:
        await runner.start()

    async def stop() -> None:
        await runner.stop()

    services.on_startup("jobs", start)
    services.on_shutdown("jobs", stop)
    api.include_router(_router(runner))
