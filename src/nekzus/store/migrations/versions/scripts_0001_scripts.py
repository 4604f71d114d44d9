"""Scripts domain: scripts, their executions, workflows (and their runs) and cron schedules."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "scripts_0001"
down_revision = None
branch_labels = ("scripts",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scripts",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("script_path", sa.Text(), nullable=False),
        sa.Column("script_type", sa.String(16), nullable=False),
        sa.Column("timeout_seconds", sa.Integer(), nullable=False),
        sa.Column("parameters", sa.Text(), nullable=False),
        sa.Column("environment", sa.Text(), nullable=False),
        sa.Column("allowed_scopes", sa.Text(), nullable=False),
        sa.Column("dry_run_command", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_scripts"),
    )
    op.create_table(
        "workflows",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("steps", sa.Text(), nullable=False),
        sa.Column("allowed_scopes", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_workflows"),
    )
    op.create_table(
        "workflow_executions",
        sa.Column("seq", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("workflow_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("current_step", sa.Integer(), nullable=False),
        sa.Column("steps", sa.Text(), nullable=False),
        sa.Column("parameters", sa.Text(), nullable=False),
        sa.Column("triggered_by", sa.String(255), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("completed_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflows.id"],
            name="fk_workflow_executions_workflow_id_workflows",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("seq", name="pk_workflow_executions"),
        sa.UniqueConstraint("id", name="uq_workflow_executions_id"),
    )
    op.create_index("ix_workflow_executions_workflow_id", "workflow_executions", ["workflow_id"])
    op.create_table(
        "script_executions",
        sa.Column("seq", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("script_id", sa.String(64), nullable=False),
        sa.Column("workflow_id", sa.String(64), nullable=True),
        sa.Column("workflow_execution_id", sa.String(64), nullable=True),
        sa.Column("schedule_id", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("is_dry_run", sa.Boolean(), nullable=False),
        sa.Column("triggered_by", sa.String(255), nullable=False),
        sa.Column("triggered_ip", sa.String(64), nullable=True),
        sa.Column("parameters", sa.Text(), nullable=False),
        sa.Column("output", sa.Text(), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("completed_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["script_id"], ["scripts.id"], name="fk_script_executions_script_id_scripts", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("seq", name="pk_script_executions"),
        sa.UniqueConstraint("id", name="uq_script_executions_id"),
    )
    op.create_index("ix_script_executions_script_status", "script_executions", ["script_id", "status"])
    op.create_table(
        "script_schedules",
        sa.Column("seq", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("script_id", sa.String(64), nullable=True),
        sa.Column("workflow_id", sa.String(64), nullable=True),
        sa.Column("cron_expression", sa.String(128), nullable=False),
        sa.Column("parameters", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("last_run_at", sa.Float(), nullable=True),
        sa.Column("next_run_at", sa.Float(), nullable=True),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["script_id"], ["scripts.id"], name="fk_script_schedules_script_id_scripts", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflows.id"],
            name="fk_script_schedules_workflow_id_workflows",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("seq", name="pk_script_schedules"),
        sa.UniqueConstraint("id", name="uq_script_schedules_id"),
    )


def downgrade() -> None:
    op.drop_table("script_schedules")
    op.drop_index("ix_script_executions_script_status", table_name="script_executions")
    op.drop_table("script_executions")
    op.drop_index("ix_workflow_executions_workflow_id", table_name="workflow_executions")
    op.drop_table("workflow_executions")
    op.drop_table("workflows")
    op.drop_table("scripts")
