"""The ORM base of the tables not yet moved to Core (temporary, while domains move over)."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase

from nekzus.store.base import metadata


class Base(DeclarativeBase):
    metadata = metadata
