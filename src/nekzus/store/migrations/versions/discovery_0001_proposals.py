"""Discovery tables: proposals and persisted dismissals."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "discovery_0001"
down_revision = None
branch_labels = ("discovery",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "discovery_proposals",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("app_id", sa.String(128), nullable=False, server_default=""),
        sa.Column("container_id", sa.String(64), nullable=False, server_default=""),
        sa.Column("confidence", sa.Float(), nullable=False, server_default="0"),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_discovery_proposals_source", "discovery_proposals", ["source"])
    op.create_index("ix_discovery_proposals_container_id", "discovery_proposals", ["container_id"])
    op.create_table(
        "discovery_dismissals",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("reason", sa.String(32), nullable=False, server_default="dismissed"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("discovery_dismissals")
    op.drop_index("ix_discovery_proposals_container_id", "discovery_proposals")
    op.drop_index("ix_discovery_proposals_source", "discovery_proposals")
    op.drop_table("discovery_proposals")
