"""Reading certificates: metadata for the API, SPKI pins, and validation of uploaded PEM pairs."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import itertools
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from nekzus.errors import Invalid


def _rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def spki_pin(cert: x509.Certificate) -> str:
    der = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256/" + base64.b64encode(hashlib.sha256(der).digest()).decode()


def _cn(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else name.rfc4514_string()


@dataclass(frozen=True)
class CertInfo:
    """What the API shows about one certificate (the leaf of its chain)."""

    domain: str
    issuer: str
    not_before: dt.datetime
    not_after: dt.datetime
    sans: list[str]
    fingerprint: str
    spki: str

    @classmethod
    def of(cls, domain: str, leaf: x509.Certificate) -> CertInfo:
        sans: list[str] = []
        try:
            ext = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            sans = [str(v) for v in ext.get_values_for_type(x509.DNSName)]
            sans += [str(v) for v in ext.get_values_for_type(x509.IPAddress)]
        except x509.ExtensionNotFound:
            pass
        digest = hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest()
        return cls(
            domain=domain,
            issuer=_cn(leaf.issuer),
            not_before=leaf.not_valid_before_utc,
            not_after=leaf.not_valid_after_utc,
            sans=sans,
            fingerprint="SHA256:" + digest,
            spki=spki_pin(leaf),
        )

    def expires_in_days(self, now: dt.datetime | None = None) -> float:
        now = now or dt.datetime.now(dt.UTC)
        return round((self.not_after - now).total_seconds() / 86400, 2)

    def covers(self, name: str) -> bool:
        name = name.lower()
        for san in [self.domain, *self.sans]:
            san = san.lower()
            if san == name or (
                san.startswith("*.") and name.endswith(san[1:]) and "." not in name[: -len(san) + 1]
            ):
                return True
        return False

    def to_json(self) -> dict[str, object]:
        return {
            "domain": self.domain,
            "issuer": self.issuer,
            "not_before": _rfc3339(self.not_before),
            "not_after": _rfc3339(self.not_after),
            "sans": list(self.sans),
            "fingerprint": self.fingerprint,
            "spki": self.spki,
            "expires_in_days": self.expires_in_days(),
        }


def load_chain(cert_pem: bytes) -> list[x509.Certificate]:
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError as exc:
        raise Invalid(
            "the certificate is not a parsable PEM certificate", code="INVALID_CERTIFICATE"
        ) from exc
    if not chain:
        raise Invalid("no certificate found in the PEM data", code="INVALID_CERTIFICATE")
    return chain


def validate_pair(cert_pem: bytes, key_pem: bytes) -> list[x509.Certificate]:
    """Check an uploaded pair: parsable, unexpired, key matches the leaf, chain in leaf-first order."""
    chain = load_chain(cert_pem)
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise Invalid("the private key is not a parsable, unencrypted PEM key", code="INVALID_KEY") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise Invalid("only EC and RSA keys are supported", code="INVALID_KEY")
    leaf = chain[0]
    now = dt.datetime.now(dt.UTC)
    if leaf.not_valid_after_utc <= now:
        raise Invalid("the certificate has expired", code="CERT_REPLACE_FAILED")
    if leaf.not_valid_before_utc > now + dt.timedelta(minutes=5):
        raise Invalid("the certificate is not valid yet", code="CERT_REPLACE_FAILED")
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, pub) != leaf.public_key().public_bytes(
        serialization.Encoding.DER, pub
    ):
        raise Invalid("the private key does not match the certificate", code="CERT_REPLACE_FAILED")
    for child, parent in itertools.pairwise(chain):
        if child.issuer != parent.subject:
            raise Invalid(
                "the chain is out of order: each certificate must be followed by its issuer",
                code="CERT_REPLACE_FAILED",
            )
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, Exception) as exc:  # InvalidSignature has no common base
            raise Invalid(
                "a certificate in the chain is not signed by the next one", code="CERT_REPLACE_FAILED"
            ) from exc
    return chain
