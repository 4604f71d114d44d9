"""The typed events the job runner publishes on the EventBus.

Every job publishes `JobEvent.QUEUED`, `JobEvent.STARTED`, any number of `JobEvent.PROGRESS`, then exactly
one of `JobEvent.SUCCEEDED`, `JobEvent.FAILED`, `JobEvent.CANCELLED`. The event's `data` is
`JobSnapshot.wire()`: the WebSocket hub forwards it to every client allowed to read events, so a dashboard
can follow any job by its id. A job submitted with `twins={JobEvent.PROGRESS: MyEvent.PROGRESS, ...}`
additionally publishes the feature's own event types, with the same data, at those moments.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
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
    "JobSnapshot",
]


class JobEvent(StrEnum):
    """Event types of the job runner (also the WebSocket message `type`)."""

    QUEUED = "job.queued"
    STARTED = "job.started"
    PROGRESS = "job.progress"
    SUCCEEDED = "job.succeeded"
    FAILED = "job.failed"
    CANCELLED = "job.cancelled"


JOB_QUEUED: Final = JobEvent.QUEUED
JOB_STARTED: Final = JobEvent.STARTED
JOB_PROGRESS: Final = JobEvent.PROGRESS
JOB_SUCCEEDED: Final = JobEvent.SUCCEEDED
JOB_FAILED: Final = JobEvent.FAILED
JOB_CANCELLED: Final = JobEvent.CANCELLED
JOB_EVENT_TYPES: Final = frozenset(JobEvent)


@dataclass(frozen=True, slots=True)
class JobSnapshot:
    """One job at the moment something happened to it (the data of every job event)."""

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
