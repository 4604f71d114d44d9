"""Storage: the SQLite database, its connection rules and the migrations that shape it."""

from __future__ import annotations

from nekzus.store.base import metadata
from nekzus.store.db import Database, Transaction, upsert

__all__ = ["Database", "Transaction", "metadata", "upsert"]
