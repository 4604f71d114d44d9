"""Catalog tables: apps, routes, service health, proxy session cookies."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "catalog_0001"
down_revision = None
branch_labels = ("catalog",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "catalog_apps",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "catalog_routes",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("app_id", sa.String(128), nullable=False),
        sa.Column("path_base", sa.String(512), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_catalog_routes_app_id", "catalog_routes", ["app_id"])
    op.create_table(
        "catalog_service_health",
        sa.Column("app_id", sa.String(128), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("last_check", sa.Float(), nullable=True),
        sa.Column("last_success", sa.Float(), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("response_time_ms", sa.Float(), nullable=True),
        sa.Column("status_code", sa.Integer(), nullable=True),
    )
    op.create_table(
        "proxy_session_cookies",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("device_id", sa.String(128), nullable=False),
        sa.Column("app_id", sa.String(128), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("device_id", "app_id", "name", name="uq_proxy_session_cookie"),
    )
    op.create_index("ix_proxy_session_cookies_device_id", "proxy_session_cookies", ["device_id"])


def downgrade() -> None:
    op.drop_table("proxy_session_cookies")
    op.drop_table("catalog_service_health")
    op.drop_index("ix_catalog_routes_app_id", "catalog_routes")
    op.drop_table("catalog_routes")
    op.drop_table("catalog_apps")
