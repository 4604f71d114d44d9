"""The job runner's read/cancel API (`/api/v1/jobs`), so any client can follow a job.

The runner itself is built by the composition root (core domains such as the container actions run on
it); features get it with `services.domains.features.require(JOBS)` or `job_runner(services)`.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query

from nekzus.api.security import require
from nekzus.auth.principal import Principal
from nekzus.errors import Invalid, NotFound
from nekzus.jobs import JOBS, Job, JobRecord, JobRunner, JobState
from nekzus.services import Services
from nekzus.timefmt import rfc3339_or_none as rfc3339

__all__ = ["JOBS", "install", "job_runner"]


def job_runner(services: Services) -> JobRunner:
    """The server's job runner (built by `nekzus.compose`)."""
    return services.domains.features.require(JOBS)


RESULT_MAX_CHARS = 4096


def _result(live: Job | None) -> Any:
    """What a succeeded job's work returned, while this process still holds the job (results are not
    persisted): only plain JSON values, and only small ones."""
    if live is None or live.state is not JobState.SUCCEEDED or live.result is None:
        return None
    try:
        text = json.dumps(live.result)
    except (TypeError, ValueError):
        return None
    return live.result if len(text) <= RESULT_MAX_CHARS else None


def job_json(row: JobRecord, live: Job | None = None) -> dict[str, Any]:
    """The record; a job still running in this process shows its latest progress (the record's
    progress is written at most once a second)."""
    fresh = live is not None and not live.state.final
    return {
        "id": row.id,
        "kind": row.kind,
        "state": live.state.value if fresh and live else row.state,
        "percent": live.percent if fresh and live else row.percent,
        "phase": live.phase if fresh and live else row.phase,
        "message": live.message if fresh and live else row.message,
        "error": row.error,
        "outputTail": row.output_tail,
        "result": _result(live),
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
        # A job's output tail may carry secrets: write:* to read records, as for container logs.
        _p: Principal = Depends(require("write:*")),
    ) -> dict[str, Any]:
        if state is not None and state not in {s.value for s in JobState}:
            raise Invalid("unknown job state", code="VALIDATION_ERROR")
        if not 1 <= limit <= 100 or offset < 0:
            raise Invalid("limit must be 1..100 and offset not negative", code="VALIDATION_ERROR")
        rows = await runner.records(kind=kind, state=state, limit=limit, offset=offset)
        total = await runner.count_records(kind=kind, state=state)
        return {"jobs": [job_json(r, runner.get(r.id)) for r in rows], "count": len(rows), "total": total}

    @router.get("/{job_id}", summary="One job")
    async def get_job(job_id: str, _p: Principal = Depends(require("write:*"))) -> dict[str, Any]:
        row = await runner.record(job_id)
        if row is None:
            raise NotFound("Job not found", code="JOB_NOT_FOUND")
        return job_json(row, runner.get(job_id))

    @router.post("/{job_id}/cancel", summary="Cancel a pending or running job")
    async def cancel_job(job_id: str, _p: Principal = Depends(require("write:*"))) -> dict[str, Any]:
        row = await runner.record(job_id)
        if row is None:
            raise NotFound("Job not found", code="JOB_NOT_FOUND")
        cancelled = runner.cancel(job_id)
        if not cancelled and not JobState(row.state).final and runner.get(job_id) is None:
            cancelled = runner.cancel_elsewhere(job_id)  # it runs in another worker process
        return {"id": job_id, "cancelled": cancelled}

    return router


def install(api: FastAPI, services: Services) -> None:
    runner = job_runner(services)

    async def stop() -> None:
        await runner.stop()

    # This feature is installed late, so this hook runs early at shutdown: live jobs are cancelled (and
    # get to roll back) while the engines, clients and services they use are still open.
    services.on_shutdown("jobs", stop)
    api.include_router(_router(runner))
