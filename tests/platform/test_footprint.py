"""What an idle server loads: a restart with its TLS material in place does not load `cryptography`
(~10 MiB of code and libraries): certificates are issued, parsed or unsealed only when something asks,
and PyJWT's HS256 path runs without it."""

from __future__ import annotations

from pathlib import Path

from tests.nekzus_server import NekzusServer


def _mapped(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def test_a_restarted_idle_server_does_not_load_cryptography() -> None:
    server = NekzusServer(tls=True)
    with server:  # first start: generates the CA and the certificate (cryptography is needed)
        pass
    with server:
        assert server.proc is not None
        with server.client() as client:
            assert client.get("/healthz").status_code == 200
            assert client.get("/api/v1/healthz").status_code == 200
            assert client.get("/api/v1/auth/setup-status").status_code == 200
            # A bearer token is checked (and refused) through PyJWT.
            refused = client.get("/api/v1/apps", headers={"Authorization": "Bearer a.b.c"})
            assert refused.status_code == 401
        maps = _mapped(server.proc.pid)
        assert "pydantic_core" in maps
        assert "cryptography" not in maps, "cryptography was loaded by an idle restarted server"
