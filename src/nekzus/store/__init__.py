"""Storage: the SQLite database, its connection rules and the migrations that shape it."""

from __future__ import annotations

from nekzus.store.base import Base
from nekzus.store.db import Database

__all__ = ["Base", "Database"]
