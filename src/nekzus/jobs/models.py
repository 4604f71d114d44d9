"""The persisted record of every job (table `jobs`, Alembic branch `jobs`)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sqlalchemy import Column, Float, Index, Integer, String, Table, Text

from nekzus.store.base import Record, metadata

__all__ = ["JobRecord", "JobState", "jobs_table"]


class JobState(enum.StrEnum):
    """`pending → running → succeeded | failed | cancelled`; the last three are final."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


jobs_table = Table(
    "jobs",
    metadata,
    # `seq` orders records stably (timestamps can tie); `id` is the public identifier.
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(64), unique=True, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("percent", Float, nullable=True),
    Column("phase", String(128), nullable=False, default=""),
    Column("message", Text, nullable=False, default=""),
    Column("error", Text, nullable=True),
    Column("output_tail", Text, nullable=False, default=""),
    Column("triggered_by", String(255), nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Index("ix_jobs_kind_state", "kind", "state"),
)


@dataclass(frozen=True, slots=True)
class JobRecord(Record):
    """One stored job as readers see it (the live `Job` is the runner's in-memory view)."""

    id: str
    kind: str
    state: str
    percent: float | None
    phase: str
    message: str
    error: str | None
    output_tail: str
    triggered_by: str
    created_at: float
    started_at: float | None
    finished_at: float | None
