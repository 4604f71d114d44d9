"""What an idle server loads: it does not load `cryptography` (~10 MiB of code and libraries), neither on
a restart with its TLS material in place nor on a first start, whose certificate is issued in a child
process; certificates are issued, parsed or unsealed only when something asks, and PyJWT's HS256 path
runs without it. Nor does it load the SQLAlchemy ORM, or libraries only one feature's first use needs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nekzus.certs.selfsigned import TlsSetupError
from nekzus.server import in_child
from tests.nekzus_server import NekzusServer


def _mapped(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def test_an_idle_server_does_not_load_cryptography() -> None:
    server = NekzusServer(tls=True)
    with server:  # first start: the CA and the certificate are issued, by a child process
        assert server.proc is not None
        assert (server.data_dir / "tls" / "server.crt").exists()
        assert (server.data_dir / "ca").is_dir()
        with server.client() as client:
            assert client.get("/api/v1/healthz").status_code == 200
        assert "cryptography" not in _mapped(server.proc.pid), "loaded on a first start"
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


# Libraries an idle server must not load: the ORM layer (storage speaks SQLAlchemy Core), and what only a
# password check (argon2) or a backup (tarfile) needs.
NOT_AT_IDLE = ("sqlalchemy.orm", "sqlalchemy.ext.asyncio", "argon2", "tarfile")

IDLE_SCRIPT = """
import sys
import subprocess
import sys
from pathlib import Path
from tests.inproc_server import InProcNekzus

server = InProcNekzus(Path(sys.argv[1])).start()
try:
    with server.client() as client:
        assert client.get("/api/v1/healthz").status_code == 200
        assert client.get("/api/v1/apps", headers={"Authorization": "Bearer a.b.c"}).status_code == 401
        assert client.get("/api/v1/auth/setup-status").status_code == 200
finally:
    server.stop()
print(",".join(name for name in sys.argv[2:] if name in sys.modules))
"""


def test_an_idle_server_does_not_load_the_orm_or_feature_only_libraries(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]

    def run() -> str:
        done = subprocess.run(
            [sys.executable, "-c", IDLE_SCRIPT, str(tmp_path), *NOT_AT_IDLE],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""

    run()  # the first start creates and migrates the database (Alembic is loaded for that only)
    assert run() == "", "loaded by an idle server"


# Imported by libraries for code the server never runs: uvicorn's command line (click, the watchfiles
# auto-reloader, the process supervisor) and pydantic's legacy v1 package that FastAPI probes for.
# (`multiprocessing`, which the supervisor also brings, is not listed: coverage measurement imports it
# into the server processes of a test run.)
NEVER_IN_THE_SERVER = ("click", "watchfiles", "uvicorn.main", "uvicorn.supervisors", "pydantic.v1.")


def test_the_server_process_keeps_the_command_line_and_pydantic_v1_out(tmp_path: Path) -> None:
    # Python's import profiler lists every module each server process imports (a failed attempt at a
    # hidden module shows as that one name only, without the package's submodules).
    # Two workers: the supervisor imports uvicorn before it forks them.
    server = NekzusServer({"server": {"workers": 2}}, tls=True, env={"PYTHONPROFILEIMPORTTIME": "1"})
    with server:
        with server.client() as client:
            assert client.get("/api/v1/healthz").status_code == 200
            assert client.get("/api/v1/apps", headers={"Authorization": "Bearer a.b.c"}).status_code == 401
            # A request body is validated and a response model serialised: FastAPI's v1 checks ran.
            refused = client.post("/api/v1/auth/login", json={"username": "x", "password": 5})
            assert refused.status_code in (400, 422)
        imported = {
            line.rsplit("|", 1)[1].strip()
            for line in server.logs().splitlines()
            if line.startswith("import time:") and line.count("|") == 2
        }
    assert "uvicorn.server" in imported and "fastapi" in imported  # the profile is there
    found = sorted(m for m in imported if any(m == n or m.startswith(n) for n in NEVER_IN_THE_SERVER))
    assert found == [], f"imported by the server: {found}"


def test_a_certificate_issued_in_a_child_comes_back_or_fails_clearly() -> None:
    """The parent gets the child's PEM pair as it was issued, or the child's failure as a start-up error
    (never a hang or a half-written pair)."""
    parent = os.getpid()

    def issue() -> tuple[bytes, bytes]:
        return b"CERT from %d" % os.getpid(), b"KEY"

    cert, key = in_child(issue)
    assert key == b"KEY" and cert.startswith(b"CERT from ") and cert != b"CERT from %d" % parent

    def broken() -> tuple[bytes, bytes]:
        raise ValueError("the CA directory is read-only")

    with pytest.raises(TlsSetupError, match="ValueError: the CA directory is read-only"):
        in_child(broken)

    def vanished() -> tuple[bytes, bytes]:
        os._exit(3)  # dies without an answer

    with pytest.raises(TlsSetupError, match="ended without an answer"):
        in_child(vanished)
