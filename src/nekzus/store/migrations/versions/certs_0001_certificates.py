"""Certificate tables: managed certificates (keys encrypted) and their history."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "certs_0001"
down_revision = None
branch_labels = ("certs",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "certificates",
        sa.Column("domain", sa.String(253), primary_key=True),
        sa.Column("cert_pem", sa.Text(), nullable=False),
        sa.Column("key_encrypted", sa.Text(), nullable=False),
        sa.Column("sans", sa.Text(), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("fingerprint", sa.String(128), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )
    op.create_table(
        "certificate_history",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("domain", sa.String(253), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("fingerprint", sa.String(128), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
    )
    op.create_index("ix_certificate_history_domain", "certificate_history", ["domain"])


def downgrade() -> None:
    op.drop_table("certificate_history")
    op.drop_table("certificates")
