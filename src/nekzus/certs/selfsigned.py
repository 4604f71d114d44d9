"""The self-signed ECDSA certificate Nekzus serves when the user brings none."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path

# `cryptography` (~10 MiB of code and libraries) is imported only to make or inspect a certificate with
# it; a restart with a valid certificate in place never loads it.

log = logging.getLogger("nekzus.certs")

ISSUER_NAME = "Nekzus Self-Signed CA"
VALIDITY_DAYS = 365


def generate_self_signed(domains: list[str], days: int = VALIDITY_DAYS) -> tuple[bytes, bytes]:
    """Return (certificate PEM, private key PEM) for the given DNS names and IP addresses."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    seen: set[str] = set()
    for domain in domains:
        if not domain or domain in seen:
            continue
        seen.add(domain)
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(domain)))
        except ValueError:
            names.append(x509.DNSName(domain))
    common = domains[0] if domains else "localhost"
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER_NAME)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert_pem, key_pem


def machine_addresses() -> list[str]:
    """IP addresses of this machine's interfaces (loopback first)."""
    out = ["127.0.0.1", "::1"]
    try:
        import psutil

        for addrs in psutil.net_if_addrs().values():
            for addr in addrs:
                if addr.family in (socket.AF_INET, socket.AF_INET6):
                    ip = addr.address.split("%", 1)[0]
                    if ip not in out:
                        out.append(ip)
    except Exception:  # pragma: no cover - psutil missing or restricted
        log.debug("could not list interface addresses", exc_info=True)
    return out


def default_domains() -> list[str]:
    host = socket.gethostname()
    domains = ["localhost"]
    if host and host != "localhost":
        domains += [host, f"{host}.local"]
    return domains + machine_addresses()


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def cert_still_valid(cert_path: Path, margin_days: int = 1) -> bool:
    expires = not_valid_after(cert_path)
    return expires is not None and expires > dt.datetime.now(dt.UTC) + dt.timedelta(days=margin_days)


def not_valid_after(cert_path: Path) -> dt.datetime | None:
    """The expiry of the first certificate in a PEM file (None when it cannot be read).

    Read with the `ssl` module's own decoder (OpenSSL, already loaded to serve TLS); `cryptography` is
    the fallback should that private helper ever go away.
    """
    import ssl

    decode = getattr(getattr(ssl, "_ssl", None), "_test_decode_cert", None)
    if decode is not None:
        try:
            decoded = decode(str(cert_path))
            return dt.datetime.fromtimestamp(ssl.cert_time_to_seconds(decoded["notAfter"]), dt.UTC)
        except (OSError, ssl.SSLError, KeyError, ValueError, TypeError):
            return None
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError):
        return None
    return cert.not_valid_after_utc


class TlsSetupError(Exception):
    pass


RENEW_MARGIN_DAYS = 30


def ensure_certificate(
    cert_path: Path,
    key_path: Path,
    *,
    generated: bool,
    issue: Callable[[list[str]], tuple[bytes, bytes]] | None = None,
) -> None:
    """Make sure a usable pair exists at the paths; create one if both are missing.

    `generated` pairs (in the data directory) are also renewed when they expire within 30 days;
    user-supplied ones never are. `issue` signs with the local CA (else the pair is self-signed).
    """
    cert_exists, key_exists = cert_path.exists(), key_path.exists()
    if cert_exists != key_exists:
        missing = key_path if cert_exists else cert_path
        raise TlsSetupError(f"server.tls_cert/tls_key: {missing} is missing while its pair exists")
    if cert_exists and (not generated or cert_still_valid(cert_path, RENEW_MARGIN_DAYS)):
        return
    cert_pem, key_pem = (issue or generate_self_signed)(default_domains())
    _write_private(key_path, key_pem)
    _write_private(cert_path, cert_pem)
    os.chmod(cert_path, 0o644)
    log.info("generated a self-signed TLS certificate at %s", cert_path)


def validate_pair(cert_path: Path, key_path: Path) -> None:
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(cert_path), str(key_path))
    except (ssl.SSLError, OSError) as exc:
        raise TlsSetupError(f"server.tls_cert: cannot load the certificate and key: {exc}") from exc
