"""Disaster recovery: an archive from one instance, sealed with the passphrase, rebuilds a fresh one -
devices keep working with their old tokens once the restored JWT secret is in effect (after a restart),
and certificates come back served by SNI because their sealing key came back too."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.auth.conftest import PERMANENT_BOOTSTRAP, bearer, pair
from tests.certs.conftest import admin_headers, peer_certificate, pin, running, use_https
from tests.nekzus_server import NekzusServer

PASSPHRASE = "a passphrase for the tests"
CONFIG = {"bootstrap": {"tokens": [PERMANENT_BOOTSTRAP]}, "backup": {"passphrase": PASSPHRASE}}


def test_rebuild_a_fresh_instance_from_a_sealed_archive(tmp_path: Path) -> None:
    with running(NekzusServer(CONFIG, data_dir=tmp_path / "old")) as old:
        admin = admin_headers(old)
        with old.client() as c:
            token = pair(c, "survivor")["accessToken"]
            r = c.post("/api/v1/certificates/generate", json={"domains": ["nas.local"]}, headers=admin)
            cert = r.json()["certificate"]
        use_https(old)
        with old.client() as c:
            meta = c.post("/api/v1/backups", json={"description": "before the disk died"}).json()
    archive = old.data_dir / "backups" / f"{meta['id']}.tar.gz"

    fresh = NekzusServer(CONFIG, data_dir=tmp_path / "new")
    (fresh.data_dir / "backups").mkdir(parents=True)
    shutil.copy(archive, fresh.data_dir / "backups" / archive.name)
    with running(fresh), fresh.client() as c:
        assert c.get("/api/v1/apps", headers=bearer(token)).status_code == 401
        r = c.post(f"/api/v1/backups/{meta['id']}/restore", json={"restoreSecrets": True})
        assert r.status_code == 200, r.text
        assert {"jwt_secret", "cert_key", "ca/ca.key"} <= set(r.json()["secrets_restored"])
    use_https(fresh)  # the restored certificate switched the fresh instance to TLS
    with running(fresh), fresh.client() as c:
        assert c.get("/api/v1/apps", headers=bearer(token)).status_code == 200
        assert pin(peer_certificate(fresh.port, "nas.local")) == cert["spki"]
    assert (fresh.data_dir / "ca" / "ca.crt").read_bytes() == (old.data_dir / "ca" / "ca.crt").read_bytes()
