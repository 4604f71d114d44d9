"""Pending proposals are stored as the typed model's record: drop rows in the earlier JSON shape.

Pending proposals mirror what the sources show right now, so every worker proposes them again on its first
scan after the upgrade; dismissals are kept.
"""

from __future__ import annotations

from alembic import op

revision = "discovery_0002"
down_revision = "discovery_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DELETE FROM discovery_proposals")


def downgrade() -> None:
    op.execute("DELETE FROM discovery_proposals")
