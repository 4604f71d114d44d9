"""Probes before and after storage is ready."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.nekzus_server import NekzusServer
from tests.platform.test_serving import get_or_none, hold_database_lock, release_database_lock, wait_for


def test_probes_before_and_after_readiness(tmp_path: Path) -> None:
    srv = NekzusServer(data_dir=tmp_path)
    hold_database_lock(srv)
    try:
        srv.start(wait=False)
        wait_for(lambda: get_or_none(srv.url + "/livez") == 200)
        with srv.client() as c:
            assert c.get("/livez").text == "ok"
            not_ready = c.get("/readyz")
            assert (not_ready.status_code, not_ready.text) == (503, "not ready")
            unhealthy = c.get("/healthz")
            assert (unhealthy.status_code, unhealthy.text) == (503, "unhealthy")
            detail = c.get("/healthz", headers={"Accept": "application/json"}).json()
            assert detail["status"] == "unhealthy"
            assert detail["components"]["storage"]["status"] == "unhealthy"
            gated = c.get("/api/v1/anything")
            assert gated.status_code == 503
            assert gated.json()["error"]["code"] == "STORAGE_UNAVAILABLE"
            release_database_lock(srv)
            srv.wait_ready()
            assert c.get("/readyz").text == "ok"
            assert c.get("/healthz").text == "ok"
            assert c.get("/api/v1/healthz").text == "ok"
            detail = c.get("/healthz", headers={"Accept": "application/json"}).json()
            assert detail["status"] == "healthy"
            assert detail["components"]["storage"]["status"] == "healthy"
            assert detail["version"]
    finally:
        release_database_lock(srv)
        srv.stop()


def test_health_endpoints_answer_head(server: NekzusServer) -> None:
    for path in ("/healthz", "/livez", "/readyz", "/api/v1/healthz"):
        response = httpx.head(server.url + path)
        assert response.status_code == 200, path
