"""Federation tables: peers survive restarts with their pinned certificate; the catalog document too."""

from __future__ import annotations

from sqlalchemy import JSON, Column, LargeBinary, String, Table

from nekzus.store.base import UtcDateTime, metadata, utcnow

# One row per peer that joined (authenticated hello); deleted when an admin removes the peer.
federation_peers = Table(
    "federation_peers",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(255), nullable=False, default="", server_default=""),
    Column("address", String(255), nullable=False, default="", server_default=""),
    Column("gossip_addr", String(300), nullable=False, default="", server_default=""),
    Column("fingerprint", String(64), nullable=False, default="", server_default=""),
    Column("status", String(16), nullable=False, default="offline", server_default="offline"),
    Column("meta", JSON, nullable=False, default=dict),
    Column("last_seen", UtcDateTime(), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False, default=utcnow),
    Column("updated_at", UtcDateTime(), nullable=False, default=utcnow),
)

# Named snapshots of replicated documents; today only "catalog" (the shared app catalog, Yjs-encoded).
federation_documents = Table(
    "federation_documents",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("data", LargeBinary, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False, default=utcnow),
)
