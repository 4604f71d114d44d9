"""Alembic environment: migrations run on the connection Nekzus hands over at start-up."""

from __future__ import annotations

from alembic import context

from nekzus.store.base import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
