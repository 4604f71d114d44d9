"""Certificate test helpers: an admin-logged server, TLS probes that read what the server really serves."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from nekzus.certs.pem import spki_pin
from tests.auth.conftest import bearer, create_admin, login
from tests.nekzus_server import NekzusServer


def start_server(data_dir: Any, config: dict[str, Any] | None = None, *, tls: bool = False) -> NekzusServer:
    """A server whose base URL names 127.0.0.1, so a handshake without SNI means the base URL's host."""
    srv = NekzusServer(config, data_dir=data_dir, tls=tls)
    scheme = "https" if tls else "http"
    srv.config.setdefault("server", {})["base_url"] = f"{scheme}://127.0.0.1:{srv.port}"
    srv.config_path.write_text(yaml.safe_dump(srv.config))
    return srv.start(timeout=60)


def use_https(srv: NekzusServer) -> None:
    srv.url = srv.url.replace("http://", "https://", 1)
    srv.tls = True


@pytest.fixture(scope="module")
def module_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., NekzusServer]]:
    started: list[NekzusServer] = []

    def factory(config: dict[str, Any] | None = None, *, tls: bool = False) -> NekzusServer:
        srv = start_server(tmp_path_factory.mktemp("certs"), config, tls=tls)
        started.append(srv)
        return srv

    yield factory
    for srv in started:
        srv.stop()


def admin_headers(srv: NekzusServer) -> dict[str, str]:
    with srv.client() as c:
        create_admin(c, srv)
        return bearer(login(c))


def peer_certificate(port: int, server_name: str | None, cafile: str | None = None) -> x509.Certificate:
    """Handshake with 127.0.0.1:port (SNI = server_name) and return the leaf certificate presented.

    With `cafile` the chain is verified against it (and the name against the certificate)."""
    context = ssl.create_default_context(cafile=cafile) if cafile else ssl._create_unverified_context()
    if cafile is None:
        context.check_hostname = False
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def sans_of(cert: x509.Certificate) -> list[str]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(v) for v in ext.get_values_for_type(x509.DNSName)] + [
        str(v) for v in ext.get_values_for_type(x509.IPAddress)
    ]


def issuer_cn(cert: x509.Certificate) -> str:
    return str(cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def pin(cert: x509.Certificate) -> str:
    return spki_pin(cert)


def make_pair(
    cn: str, *, days: float = 90, issuer_key: Any = None, issuer_name: x509.Name | None = None
) -> tuple[x509.Certificate, Any]:
    """A certificate for tests (self-signed unless an issuer is given) and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    start = now - dt.timedelta(days=2) if days > 0 else now - dt.timedelta(days=10)
    end = now + dt.timedelta(days=days) if days > 0 else now - dt.timedelta(days=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name or subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
        .sign(issuer_key or key, hashes.SHA256())
    )
    return cert, key


def pem(obj: Any) -> str:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM).decode()
    key: bytes = obj.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key.decode()


@contextmanager
def running(srv: NekzusServer, timeout: float = 60.0) -> Iterator[NekzusServer]:
    """Start with a generous readiness timeout (a loaded 2-core CI box starts slowly), stop at the end."""
    srv.start(timeout=timeout)
    try:
        yield srv
    finally:
        srv.stop()
