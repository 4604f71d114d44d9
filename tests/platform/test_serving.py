"""Serving: generated TLS reused across restarts, TLS floor, plain HTTP, the redirect, --health, SIGTERM."""

from __future__ import annotations

import hashlib
import json
import signal
import socket
import sqlite3
import ssl
import stat
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from tests.nekzus_server import NekzusServer, free_port, run_cli


def peer_certificate(port: int) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return der


def test_tls_with_generated_certificate_reused_after_restart(tmp_path: Path) -> None:
    srv = NekzusServer(tls=True, data_dir=tmp_path)
    with srv:
        response = httpx.get(srv.url + "/healthz", verify=False)
        assert response.status_code == 200 and response.text == "ok"
        assert response.headers["strict-transport-security"].startswith("max-age=")
        first = peer_certificate(srv.port)
    key_file = tmp_path / "tls" / "server.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    cert = x509.load_der_x509_certificate(first)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert any(str(ip) == "127.0.0.1" for ip in sans.get_values_for_type(x509.IPAddress))
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.issuer.rfc4514_string() == "CN=Nekzus Self-Signed CA"
    with srv:
        second = peer_certificate(srv.port)
    assert hashlib.sha256(first).digest() == hashlib.sha256(second).digest()


def test_tls_refuses_versions_below_1_2(tmp_path: Path) -> None:
    with NekzusServer(tls=True, data_dir=tmp_path) as srv:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        try:
            context.minimum_version = ssl.TLSVersion.TLSv1
            context.maximum_version = ssl.TLSVersion.TLSv1_1
        except (ValueError, ssl.SSLError):
            pytest.fail("client TLS stack cannot express TLS 1.1")
        with (
            socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock,
            pytest.raises(ssl.SSLError),
        ):
            context.wrap_socket(sock, server_hostname="localhost")
        modern = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        modern.check_hostname = False
        modern.verify_mode = ssl.CERT_NONE
        with (
            socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock,
            modern.wrap_socket(sock, server_hostname="localhost") as tls,
        ):
            assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_user_supplied_certificate_paths_are_generated_when_missing(tmp_path: Path) -> None:
    cert, key = tmp_path / "mine.crt", tmp_path / "mine.key"
    with NekzusServer(
        {"server": {"tls_cert": str(cert), "tls_key": str(key)}}, tls=True, data_dir=tmp_path / "d"
    ) as srv:
        assert httpx.get(srv.url + "/livez", verify=False).text == "ok"
        served = peer_certificate(srv.port)
    assert x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(Encoding.DER) == served


def test_half_a_certificate_pair_is_a_config_error(tmp_path: Path) -> None:
    cert = tmp_path / "only.crt"
    cert.write_text("not really")
    srv = NekzusServer(
        {"server": {"tls_cert": str(cert), "tls_key": str(tmp_path / "absent.key")}},
        tls=True,
        data_dir=tmp_path / "d",
    )
    result = run_cli(["--config", str(srv.config_path)], cwd=tmp_path)
    assert result.returncode == 2
    assert "server.tls_cert/tls_key" in result.stderr
    assert "Traceback" not in result.stderr


def test_insecure_http_serves_plain_http_and_warns(tmp_path: Path) -> None:
    with NekzusServer(data_dir=tmp_path) as srv:
        response = httpx.get(srv.url + "/healthz")
        assert response.text == "ok"
        assert "strict-transport-security" not in response.headers
        assert "plain HTTP" in srv.logs()
        assert "WARNING" in srv.logs()


def test_http_redirect_addr_redirects_to_https(tmp_path: Path) -> None:
    redirect_port = free_port()
    srv = NekzusServer(
        {"server": {"http_redirect_addr": f"127.0.0.1:{redirect_port}"}}, tls=True, data_dir=tmp_path
    )
    with srv:
        response = httpx.get(
            f"http://127.0.0.1:{redirect_port}/api/v1/healthz?x=1", headers={"Host": "nekzus.example:80"}
        )
        assert response.status_code == 301
        assert response.headers["location"] == f"https://nekzus.example:{srv.port}/api/v1/healthz?x=1"
        followed = httpx.get(f"http://127.0.0.1:{redirect_port}/livez", follow_redirects=True, verify=False)
        assert followed.status_code == 200 and followed.text == "ok"


def test_health_flag_exit_codes(server: NekzusServer, tmp_path: Path) -> None:
    healthy = run_cli(["--health", "--health-addr", server.url], cwd=tmp_path)
    assert healthy.returncode == 0
    assert healthy.stdout.strip() == "healthy"
    down = run_cli(["--health", "--health-addr", f"http://127.0.0.1:{free_port()}"], cwd=tmp_path)
    assert down.returncode == 1
    assert "health check failed" in down.stderr


def test_health_flag_accepts_self_signed_tls(tmp_path: Path) -> None:
    with NekzusServer(tls=True, data_dir=tmp_path) as srv:
        result = run_cli(["-health", "-health-addr", srv.url], cwd=tmp_path)
        assert result.returncode == 0, result.stderr


def test_health_flag_reports_unhealthy_status(tmp_path: Path) -> None:
    srv = NekzusServer(data_dir=tmp_path)
    hold_database_lock(srv)
    try:
        srv.start(wait=False)
        # Start-up on a loaded 2-core machine can take well over 15 s.
        wait_for(lambda: get_or_none(srv.url + "/livez") == 200, timeout=60.0)
        result = run_cli(["--health", "--health-addr", srv.url], cwd=tmp_path)
        assert result.returncode == 1
        assert "unhealthy: status 503" in result.stderr
    finally:
        release_database_lock(srv)
        srv.stop()


def test_sigterm_exits_cleanly_and_quickly(tmp_path: Path) -> None:
    srv = NekzusServer(data_dir=tmp_path).start()
    assert srv.proc is not None
    proc = srv.proc
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(10)
    assert code == 0
    assert time.monotonic() - started < 5
    srv.proc = None
    # The database was closed cleanly: no WAL left behind needing recovery.
    assert not (tmp_path / "nexus.db-wal").exists() or (tmp_path / "nexus.db-wal").stat().st_size == 0


def test_sigint_exits_cleanly(tmp_path: Path) -> None:
    srv = NekzusServer(data_dir=tmp_path).start()
    assert srv.stop(signal.SIGINT) == 0


def test_json_logs_with_one_access_line_per_request(tmp_path: Path) -> None:
    srv = NekzusServer({"server": {"log_format": "json"}}, data_dir=tmp_path)
    with srv:
        httpx.get(srv.url + "/livez", headers={"X-Request-ID": "trace-abc-123"})
    lines = [json.loads(line) for line in srv.logs().splitlines() if line.startswith("{")]
    assert lines, srv.logs()
    access = [e for e in lines if e["logger"] == "nekzus.access" and e.get("request_id") == "trace-abc-123"]
    assert len(access) == 1
    assert access[0]["status"] == 200
    assert access[0]["path"] == "/livez"
    assert access[0]["duration_ms"] >= 0
    non_json = [line for line in srv.logs().splitlines() if line.strip() and not line.startswith("{")]
    assert non_json == []


# --- helpers shared with the readiness tests -------------------------------------------------------

_locks: dict[int, sqlite3.Connection] = {}


def hold_database_lock(srv: NekzusServer) -> None:
    """Keep the SQLite file exclusively locked so Nekzus cannot open storage."""
    import sqlite3

    srv.data_dir.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(srv.data_dir / "nexus.db", isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA locking_mode=EXCLUSIVE")
    conn.execute("BEGIN EXCLUSIVE")
    conn.execute("CREATE TABLE IF NOT EXISTS lock_holder (x INTEGER)")
    _locks[id(srv)] = conn


def release_database_lock(srv: NekzusServer) -> None:
    conn = _locks.pop(id(srv), None)
    if conn is not None:
        conn.execute("ROLLBACK")
        conn.close()


def get_or_none(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.TransportError:
        return None


def wait_for(predicate: Callable[[], object], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")
