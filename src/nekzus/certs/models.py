"""Managed certificates. The private key is stored encrypted with a key kept outside the database.

So a copy of the database (a backup) never holds a usable TLS key unless the user also supplied a
passphrase for the secrets that live in the data directory.
"""

from __future__ import annotations

from sqlalchemy import Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from nekzus.store.orm import Base


class Certificate(Base):
    __tablename__ = "certificates"

    domain: Mapped[str] = mapped_column(String(253), primary_key=True)
    cert_pem: Mapped[str] = mapped_column(Text, nullable=False)
    key_encrypted: Mapped[str] = mapped_column(Text, nullable=False)
    sans: Mapped[str] = mapped_column(Text, nullable=False, default="[]")
    provider: Mapped[str] = mapped_column(String(32), nullable=False, default="self-signed")
    fingerprint: Mapped[str] = mapped_column(String(128), nullable=False)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    updated_at: Mapped[float] = mapped_column(Float, nullable=False)


class CertificateHistory(Base):
    __tablename__ = "certificate_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    domain: Mapped[str] = mapped_column(String(253), nullable=False, index=True)
    action: Mapped[str] = mapped_column(String(32), nullable=False)
    fingerprint: Mapped[str] = mapped_column(String(128), nullable=False, default="")
    at: Mapped[float] = mapped_column(Float, nullable=False)
