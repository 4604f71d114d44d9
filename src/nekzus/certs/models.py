"""Managed certificates. The private key is stored encrypted with a key kept outside the database.

So a copy of the database (a backup) never holds a usable TLS key unless the user also supplied a
passphrase for the secrets that live in the data directory.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, Integer, String, Table, Text

from nekzus.store.base import metadata

certificates = Table(
    "certificates",
    metadata,
    Column("domain", String(253), primary_key=True),
    Column("cert_pem", Text, nullable=False),
    Column("key_encrypted", Text, nullable=False),
    Column("sans", Text, nullable=False, default="[]"),
    Column("provider", String(32), nullable=False, default="self-signed"),
    Column("fingerprint", String(128), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# Every issue, import, renewal and deletion, kept after the certificate itself is gone.
certificate_history = Table(
    "certificate_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("domain", String(253), nullable=False, index=True),
    Column("action", String(32), nullable=False),
    Column("fingerprint", String(128), nullable=False, default=""),
    Column("at", Float, nullable=False),
)
