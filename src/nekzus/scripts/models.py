"""Tables of the scripts domain (Alembic branch `scripts`): scripts, executions, workflows, schedules.

Timestamps are Unix seconds (floats). JSON columns hold declarations and parameters as text. Deleting a
script or workflow deletes its executions and schedules (foreign keys with ON DELETE CASCADE).
"""

from __future__ import annotations

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from nekzus.store.orm import Base

__all__ = ["ExecutionRow", "ScheduleRow", "ScriptRow", "WorkflowExecutionRow", "WorkflowRow"]


class ScriptRow(Base):
    __tablename__ = "scripts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    category: Mapped[str] = mapped_column(String(64), nullable=False, default="general")
    script_path: Mapped[str] = mapped_column(Text, nullable=False)
    script_type: Mapped[str] = mapped_column(String(16), nullable=False)
    timeout_seconds: Mapped[int] = mapped_column(Integer, nullable=False)
    parameters: Mapped[str] = mapped_column(Text, nullable=False, default="[]")
    environment: Mapped[str] = mapped_column(Text, nullable=False, default="{}")
    allowed_scopes: Mapped[str] = mapped_column(Text, nullable=False, default="[]")
    dry_run_command: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_by: Mapped[str] = mapped_column(String(255), nullable=False, default="")
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    updated_at: Mapped[float] = mapped_column(Float, nullable=False)


class WorkflowRow(Base):
    __tablename__ = "workflows"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    steps: Mapped[str] = mapped_column(Text, nullable=False, default="[]")
    allowed_scopes: Mapped[str] = mapped_column(Text, nullable=False, default="[]")
    created_by: Mapped[str] = mapped_column(String(255), nullable=False, default="")
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    updated_at: Mapped[float] = mapped_column(Float, nullable=False)


class WorkflowExecutionRow(Base):
    __tablename__ = "workflow_executions"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    workflow_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("workflows.id", ondelete="CASCADE"), nullable=False, index=True
    )
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    current_step: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    steps: Mapped[str] = mapped_column(Text, nullable=False, default="[]")
    parameters: Mapped[str] = mapped_column(Text, nullable=False, default="{}")
    triggered_by: Mapped[str] = mapped_column(String(255), nullable=False, default="")
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    completed_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class ExecutionRow(Base):
    __tablename__ = "script_executions"
    __table_args__ = (Index("ix_script_executions_script_status", "script_id", "status"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    script_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("scripts.id", ondelete="CASCADE"), nullable=False
    )
    workflow_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    workflow_execution_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    schedule_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    is_dry_run: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    triggered_by: Mapped[str] = mapped_column(String(255), nullable=False, default="")
    triggered_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    parameters: Mapped[str] = mapped_column(Text, nullable=False, default="{}")
    output: Mapped[str] = mapped_column(Text, nullable=False, default="")
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    completed_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class ScheduleRow(Base):
    __tablename__ = "script_schedules"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    script_id: Mapped[str | None] = mapped_column(
        String(64), ForeignKey("scripts.id", ondelete="CASCADE"), nullable=True
    )
    workflow_id: Mapped[str | None] = mapped_column(
        String(64), ForeignKey("workflows.id", ondelete="CASCADE"), nullable=True
    )
    cron_expression: Mapped[str] = mapped_column(String(128), nullable=False)
    parameters: Mapped[str] = mapped_column(Text, nullable=False, default="{}")
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    last_run_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    next_run_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_by: Mapped[str] = mapped_column(String(255), nullable=False, default="")
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    updated_at: Mapped[float] = mapped_column(Float, nullable=False)
