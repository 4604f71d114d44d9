"""Storage: migrations reach every branch head, and the fast path agrees with Alembic."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory

from nekzus.store.db import MIGRATIONS_DIR, expected_heads
from tests.nekzus_server import NekzusServer


def test_fast_path_heads_match_alembic() -> None:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("version_locations", str(MIGRATIONS_DIR / "versions"))
    assert expected_heads() == set(ScriptDirectory.from_config(cfg).get_heads())


def test_started_server_has_a_migrated_wal_database(tmp_path: Path) -> None:
    with NekzusServer(data_dir=tmp_path):
        conn = sqlite3.connect(tmp_path / "nexus.db")
        try:
            versions = {row[0] for row in conn.execute("SELECT version_num FROM alembic_version")}
            assert versions == expected_heads()
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            assert {
                "system_settings",
                "auth_devices",
                "catalog_routes",
                "catalog_apps",
                "notifications",
            } <= tables
        finally:
            conn.close()
