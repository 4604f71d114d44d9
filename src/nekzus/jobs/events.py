"""The typed events the job runner publishes on the EventBus.

Every job publishes `JOB_QUEUED`, `JOB_STARTED`, any number of `JOB_PROGRESS`, then exactly one of
`JOB_SUCCEEDED`, `JOB_FAILED`, `JOB_CANCELLED`. The event's `data` is `JobEvent.wire()`: the WebSocket hub
forwards it to every client allowed to read events, so a dashboard can follow any job by its id.
A job submitted with `event_prefix="toolbox.deploy"` additionally publishes `toolbox.deploy.started`,
`.progress`, `.completed`, `.failed` and `.cancelled` with the same data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "JOB_CANCELLED",
    "JOB_EVENT_TYPES",
    "JOB_FAILED",
    "JOB_PROGRESS",
    "JOB_QUEUED",
    "JOB_STARTED",
    "JOB_SUCCEEDED",
    "JobEvent",
]

JOB_QUEUED: Final = "job.queued"
JOB_STARTED: Final = "job.started"
JOB_PROGRESS: Final = "job.progress"
JOB_SUCCEEDED: Final = "job.succeeded"
JOB_FAILED: Final = "job.failed"
JOB_CANCELLED: Final = "job.cancelled"
JOB_EVENT_TYPES: Final = frozenset(
    {JOB_QUEUED, JOB_STARTED, JOB_PROGRESS, JOB_SUCCEEDED, JOB_FAILED, JOB_CANCELLED}
)

# Suffixes of the per-kind twins published when a job has an `event_prefix`.
PREFIXED_SUFFIX: Final = {
    JOB_STARTED: "started",
    JOB_PROGRESS: "progress",
    JOB_SUCCEEDED: "completed",
    JOB_FAILED: "failed",
    JOB_CANCELLED: "cancelled",
}


@dataclass(frozen=True, slots=True)
class JobEvent:
    """A snapshot of one job at the moment something happened to it."""

    job_id: str
    kind: str
    state: str
    percent: float | None
    phase: str
    message: str
    error: str | None
    triggered_by: str

    def wire(self) -> dict[str, Any]:
        return {
            "jobId": self.job_id,
            "kind": self.kind,
            "state": self.state,
            "percent": self.percent,
            "phase": self.phase,
            "message": self.message,
            "error": self.error,
            "triggeredBy": self.triggered_by,
        }
