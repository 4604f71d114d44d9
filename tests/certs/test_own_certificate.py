"""Nekzus' own certificate (TLS without a configured pair): issued by the local CA, renewed before expiry."""

from __future__ import annotations

import time
from pathlib import Path

from tests.certs.conftest import issuer_cn, make_pair, peer_certificate, pem, start_server


def test_own_certificate_near_expiry_is_renewed_at_start(tmp_path: Path) -> None:
    tls_dir = tmp_path / "tls"
    tls_dir.mkdir()
    old, key = make_pair("localhost", days=5)
    (tls_dir / "server.crt").write_text(pem(old))
    (tls_dir / "server.key").write_text(pem(key))
    srv = start_server(tmp_path, tls=True)
    try:
        served = peer_certificate(srv.port, "localhost", cafile=str(tmp_path / "ca" / "ca.crt"))
        assert issuer_cn(served) == "Nekzus Self-Signed CA"
        remaining = served.not_valid_after_utc - old.not_valid_after_utc
        assert remaining.days > 300
        with srv.client() as c:
            body = c.get("/healthz", headers={"Accept": "application/json"}).json()
            assert body["components"]["certificates"]["status"] == "healthy"
            # The renewal check runs as a `certs.renew` job of the server's runner (one pass at start).
            deadline = time.monotonic() + 20
            done: list[dict[str, object]] = []
            while time.monotonic() < deadline and not done:
                jobs = c.get("/api/v1/jobs", params={"kind": "certs.renew"}).json()["jobs"]
                done = [j for j in jobs if j["state"] == "succeeded"]
                time.sleep(0.1)
            assert done and done[0]["triggeredBy"] == "certificates"
    finally:
        srv.stop()
