"""Backups: consistent SQLite snapshots in one verified archive, atomic restore, and a scheduler."""
