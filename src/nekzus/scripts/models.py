"""Tables of the scripts domain (Alembic branch `scripts`): scripts, executions, workflows, schedules,
and the frozen records the services hand out.

Timestamps are Unix seconds (floats). JSON columns hold declarations and parameters as text. Deleting a
script or workflow deletes its executions and schedules (foreign keys with ON DELETE CASCADE).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Boolean, Column, Float, ForeignKey, Index, Integer, String, Table, Text

from nekzus.store.base import Record, metadata

__all__ = [
    "Execution",
    "Schedule",
    "Script",
    "Workflow",
    "WorkflowExecution",
    "script_executions_table",
    "script_schedules_table",
    "scripts_table",
    "workflow_executions_table",
    "workflows_table",
]

scripts_table = Table(
    "scripts",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("category", String(64), nullable=False, default="general"),
    Column("script_path", Text, nullable=False),
    Column("script_type", String(16), nullable=False),
    Column("timeout_seconds", Integer, nullable=False),
    Column("parameters", Text, nullable=False, default="[]"),
    Column("environment", Text, nullable=False, default="{}"),
    Column("allowed_scopes", Text, nullable=False, default="[]"),
    Column("dry_run_command", Text, nullable=False, default=""),
    Column("created_by", String(255), nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

workflows_table = Table(
    "workflows",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("steps", Text, nullable=False, default="[]"),
    Column("allowed_scopes", Text, nullable=False, default="[]"),
    Column("created_by", String(255), nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

workflow_executions_table = Table(
    "workflow_executions",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(64), unique=True, nullable=False),
    Column(
        "workflow_id",
        String(64),
        ForeignKey("workflows.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("status", String(16), nullable=False),
    Column("current_step", Integer, nullable=False, default=0),
    Column("steps", Text, nullable=False, default="[]"),
    Column("parameters", Text, nullable=False, default="{}"),
    Column("triggered_by", String(255), nullable=False, default=""),
    Column("error_message", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("completed_at", Float, nullable=True),
)

script_executions_table = Table(
    "script_executions",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(64), unique=True, nullable=False),
    Column("script_id", String(64), ForeignKey("scripts.id", ondelete="CASCADE"), nullable=False),
    Column("workflow_id", String(64), nullable=True),
    Column("workflow_execution_id", String(64), nullable=True),
    Column("schedule_id", String(64), nullable=True),
    Column("status", String(16), nullable=False),
    Column("is_dry_run", Boolean, nullable=False, default=False),
    Column("triggered_by", String(255), nullable=False, default=""),
    Column("triggered_ip", String(64), nullable=True),
    Column("parameters", Text, nullable=False, default="{}"),
    Column("output", Text, nullable=False, default=""),
    Column("exit_code", Integer, nullable=True),
    Column("error_message", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("completed_at", Float, nullable=True),
    Index("ix_script_executions_script_status", "script_id", "status"),
)

script_schedules_table = Table(
    "script_schedules",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(64), unique=True, nullable=False),
    Column("script_id", String(64), ForeignKey("scripts.id", ondelete="CASCADE"), nullable=True),
    Column("workflow_id", String(64), ForeignKey("workflows.id", ondelete="CASCADE"), nullable=True),
    Column("cron_expression", String(128), nullable=False),
    Column("parameters", Text, nullable=False, default="{}"),
    Column("enabled", Boolean, nullable=False, default=False),
    Column("last_run_at", Float, nullable=True),
    Column("next_run_at", Float, nullable=True),
    Column("created_by", String(255), nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)


@dataclass(frozen=True, slots=True)
class Script(Record):
    """A registered script; `parameters`, `environment` and `allowed_scopes` are stored JSON text."""

    id: str
    name: str
    description: str
    category: str
    script_path: str
    script_type: str
    timeout_seconds: int
    parameters: str
    environment: str
    allowed_scopes: str
    dry_run_command: str
    created_by: str
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class Workflow(Record):
    """A workflow; `steps` is the stored JSON list of `{scriptId, parameters, onFailure}`."""

    id: str
    name: str
    description: str
    steps: str
    allowed_scopes: str
    created_by: str
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class WorkflowExecution(Record):
    """One run of a workflow; `steps` is the stored JSON list of its steps' summaries."""

    id: str
    workflow_id: str
    status: str
    current_step: int
    steps: str
    parameters: str
    triggered_by: str
    error_message: str | None
    created_at: float
    started_at: float | None
    completed_at: float | None


@dataclass(frozen=True, slots=True)
class Execution(Record):
    """One run of a script (alone, as a workflow step or from a schedule)."""

    id: str
    script_id: str
    workflow_id: str | None
    workflow_execution_id: str | None
    schedule_id: str | None
    status: str
    is_dry_run: bool
    triggered_by: str
    triggered_ip: str | None
    parameters: str
    output: str
    exit_code: int | None
    error_message: str | None
    created_at: float
    started_at: float | None
    completed_at: float | None


@dataclass(frozen=True, slots=True)
class Schedule(Record):
    """A cron schedule of a script or a workflow (exactly one of the two ids is set)."""

    id: str
    script_id: str | None
    workflow_id: str | None
    cron_expression: str
    parameters: str
    enabled: bool
    last_run_at: float | None
    next_run_at: float | None
    created_by: str
    created_at: float
    updated_at: float
