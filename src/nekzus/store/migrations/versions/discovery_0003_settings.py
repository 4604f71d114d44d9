"""Discovery settings changed at run time (the auto-approval threshold set from the dashboard)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "discovery_0003"
down_revision = "discovery_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "discovery_settings",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.JSON(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(255), nullable=False, server_default=""),
    )


def downgrade() -> None:
    op.drop_table("discovery_settings")
