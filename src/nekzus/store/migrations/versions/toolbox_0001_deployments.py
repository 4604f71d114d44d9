"""Toolbox table: deployments of catalog templates."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "toolbox_0001"
down_revision = None
branch_labels = ("toolbox",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "toolbox_deployments",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("service_template_id", sa.String(64), nullable=False),
        sa.Column("service_name", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("phase", sa.String(32), nullable=False, server_default="pending"),
        sa.Column("progress", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("project_name", sa.String(64), nullable=False),
        sa.Column("container_id", sa.String(64), nullable=True),
        sa.Column("container_name", sa.String(255), nullable=True),
        sa.Column("network_names", sa.JSON(), nullable=False),
        sa.Column("volume_names", sa.JSON(), nullable=False),
        sa.Column("env_vars", sa.JSON(), nullable=False),
        sa.Column("secret_vars", sa.JSON(), nullable=False),
        sa.Column("custom_image", sa.String(512), nullable=True),
        sa.Column("custom_port", sa.Integer(), nullable=True),
        sa.Column("auto_start", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("route_id", sa.String(255), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("deployed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deployed_by", sa.String(255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_toolbox_deployments_status", "toolbox_deployments", ["status"])
    op.create_index("ix_toolbox_deployments_project_name", "toolbox_deployments", ["project_name"])


def downgrade() -> None:
    op.drop_index("ix_toolbox_deployments_project_name", "toolbox_deployments")
    op.drop_index("ix_toolbox_deployments_status", "toolbox_deployments")
    op.drop_table("toolbox_deployments")
