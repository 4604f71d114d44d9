"""Devices: the certificate pins each device received at pairing, and requests per device per local day."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "auth_0002"
down_revision = "auth_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("auth_devices") as batch:
        batch.add_column(sa.Column("spki_pins", sa.Text(), nullable=False, server_default="[]"))
    op.create_table(
        "auth_device_requests",
        sa.Column("device_id", sa.String(100), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("count", sa.Integer(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("auth_device_requests")
    with op.batch_alter_table("auth_devices") as batch:
        batch.drop_column("spki_pins")
