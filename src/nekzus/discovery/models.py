"""Discovery tables: pending proposals and dismissals (both survive restarts)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, String
from sqlalchemy.orm import Mapped, mapped_column

from nekzus.store.base import Base, utcnow


class ProposalRow(Base):
    __tablename__ = "discovery_proposals"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    source: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    app_id: Mapped[str] = mapped_column(String(128), nullable=False, default="")
    container_id: Mapped[str] = mapped_column(String(64), nullable=False, default="", index=True)
    confidence: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)


class DismissalRow(Base):
    __tablename__ = "discovery_dismissals"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    reason: Mapped[str] = mapped_column(String(32), nullable=False, default="dismissed")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
