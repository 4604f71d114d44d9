"""Federation tables: known peers (with their pinned certificate) and the replicated catalog document."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "federation_0001"
down_revision = None
branch_labels = ("federation",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "federation_peers",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, server_default=""),
        sa.Column("address", sa.String(255), nullable=False, server_default=""),
        sa.Column("gossip_addr", sa.String(300), nullable=False, server_default=""),
        sa.Column("fingerprint", sa.String(64), nullable=False, server_default=""),
        sa.Column("status", sa.String(16), nullable=False, server_default="offline"),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "federation_documents",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("federation_documents")
    op.drop_table("federation_peers")
