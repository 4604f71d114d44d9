"""What Nekzus lets strangers learn or read: health detail only for callers we know, data files only
for the owner, permanent bootstrap tokens long enough not to be guessed."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path

from tests.events.conftest import create_api_key
from tests.nekzus_server import NekzusServer


def test_health_detail_only_for_trusted_or_authenticated(make_server: Callable[..., NekzusServer]) -> None:
    trusted = make_server()
    key = create_api_key(trusted, ["read:catalog"])
    trusted.stop()
    srv = make_server({"auth": {"local_networks": []}}, data_dir=trusted.data_dir)
    accept = {"Accept": "application/json"}
    with srv.client() as c:
        stranger = c.get("/healthz", headers=accept)
        assert stranger.status_code == 200
        assert stranger.json() == {"status": "healthy"}
        bad = c.get("/healthz", headers=accept | {"Authorization": "Bearer not-a-token"})
        assert bad.json() == {"status": "healthy"}
        known = c.get("/healthz", headers=accept | {"X-API-Key": key})
        assert "storage" in known.json()["components"]
        assert c.get("/healthz").text == "ok"


def test_data_directory_and_database_files_are_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    (data / "nexus.db").touch(mode=0o644)
    (data / "nexus.db").chmod(0o644)  # as an older version left it
    srv = NekzusServer(data_dir=data)
    with srv, srv.client() as c:
        assert c.post(
            "/api/v1/routes", json={"routeId": "r", "pathBase": "/apps/r/", "to": "http://127.0.0.1:9"}
        )
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        files = [p for p in data.iterdir() if p.name.startswith("nexus.db")]
        assert {p.name for p in files} >= {"nexus.db", "nexus.db-wal"}
        for path in files:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
