"""The toolbox's table: one row per deployment (a Compose project), kept across restarts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Column, Integer, Row, String, Table, Text

from nekzus.store.base import UtcDateTime, metadata, utcnow

deployments = Table(
    "toolbox_deployments",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("service_template_id", String(64), nullable=False),
    Column("service_name", String(255), nullable=False),
    Column("status", String(16), nullable=False, default="pending", index=True),
    Column("phase", String(32), nullable=False, default="pending"),
    Column("progress", Integer, nullable=False, default=0),
    Column("project_name", String(64), nullable=False, index=True),
    Column("container_id", String(64), nullable=True),
    Column("container_name", String(255), nullable=True),
    Column("network_names", JSON, nullable=False, default=list),
    Column("volume_names", JSON, nullable=False, default=list),
    Column("env_vars", JSON, nullable=False, default=dict),
    Column("secret_vars", JSON, nullable=False, default=list),
    Column("custom_image", String(512), nullable=True),
    Column("custom_port", Integer, nullable=True),
    Column("auto_start", Boolean, nullable=False, default=True),
    Column("route_id", String(255), nullable=True),
    Column("error_message", Text, nullable=True),
    Column("deployed_at", UtcDateTime(), nullable=True),
    Column("deployed_by", String(255), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False, default=utcnow),
    Column("updated_at", UtcDateTime(), nullable=False, default=utcnow, onupdate=utcnow),
)


@dataclass(frozen=True)
class Deployment:
    """One deployment as read from the table (SQLite hands its timestamps back without a zone)."""

    id: str
    service_template_id: str
    service_name: str
    status: str
    phase: str
    progress: int
    project_name: str
    container_id: str | None
    container_name: str | None
    network_names: list[str]
    volume_names: list[str]
    env_vars: dict[str, Any]
    secret_vars: list[str]
    custom_image: str | None
    custom_port: int | None
    auto_start: bool
    route_id: str | None
    error_message: str | None
    deployed_at: datetime | None
    deployed_by: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Row[Any]) -> Deployment:
        return cls(
            id=row.id,
            service_template_id=row.service_template_id,
            service_name=row.service_name,
            status=row.status,
            phase=row.phase,
            progress=row.progress,
            project_name=row.project_name,
            container_id=row.container_id,
            container_name=row.container_name,
            network_names=list(row.network_names or []),
            volume_names=list(row.volume_names or []),
            env_vars=dict(row.env_vars or {}),
            secret_vars=list(row.secret_vars or []),
            custom_image=row.custom_image,
            custom_port=row.custom_port,
            auto_start=bool(row.auto_start),
            route_id=row.route_id,
            error_message=row.error_message,
            deployed_at=row.deployed_at,
            deployed_by=row.deployed_by,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )
