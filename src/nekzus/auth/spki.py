"""SPKI pins of the served certificate, which the phone app pins: `sha256/` + base64(SHA-256(DER SPKI))."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

_cache: dict[tuple[str, float], list[str]] = {}


def spki_pins(cert_path: Path | None) -> list[str]:
    """Pins of the leaf certificate at `cert_path`; `[]` over plain HTTP or when unreadable."""
    if cert_path is None:
        return []
    try:
        mtime = cert_path.stat().st_mtime
    except OSError:
        return []
    key = (str(cert_path), mtime)
    if key not in _cache:
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        except (OSError, ValueError):
            return []
        der = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        _cache.clear()
        _cache[key] = ["sha256/" + base64.b64encode(hashlib.sha256(der).digest()).decode()]
    return list(_cache[key])
