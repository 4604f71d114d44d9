"""The toolbox's table: one row per deployment (a Compose project), kept across restarts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from nekzus.store.base import utcnow
from nekzus.store.orm import Base


class DeploymentRow(Base):
    __tablename__ = "toolbox_deployments"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    service_template_id: Mapped[str] = mapped_column(String(64), nullable=False)
    service_name: Mapped[str] = mapped_column(String(255), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="pending", index=True)
    phase: Mapped[str] = mapped_column(String(32), nullable=False, default="pending")
    progress: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    project_name: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    container_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    container_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    network_names: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    volume_names: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    env_vars: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    secret_vars: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    custom_image: Mapped[str | None] = mapped_column(String(512), nullable=True)
    custom_port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    auto_start: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    route_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    deployed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    deployed_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow, nullable=False
    )
