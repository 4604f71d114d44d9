"""Managed certificates: issue from the local CA, import, renew, delete; keep the SNI table current.

Every change that alters what the base URL serves (a new key, TLS switched on) tells paired devices to
re-pair, since they pin the served SPKI. Pairing reads `served_pins()`, so pins always match the wire.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from sqlalchemy import Row, delete, insert, select

from nekzus.certs.domains import check_domain, check_domains, suggestions
from nekzus.certs.models import certificate_history, certificates
from nekzus.certs.selfsigned import not_valid_after
from nekzus.certs.tls import Served, SniStore, build_context
from nekzus.errors import Conflict, Invalid, NotFound
from nekzus.health.registry import ComponentHealth, Status
from nekzus.secretfiles import load_or_create
from nekzus.store import Database, upsert

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

    from nekzus.certs.ca import LocalCA
    from nekzus.certs.pem import CertInfo

# `cryptography` (through `ca`, `pem` and Fernet) is imported where a certificate is issued, parsed or a
# stored key unsealed: a server that only serves its own certificate never loads it.

log = logging.getLogger("nekzus.certs")

RENEW_BEFORE_DAYS = 30


class CertEvent(StrEnum):
    """Messages this domain sends to paired devices."""

    # Tells paired devices their pinned certificate changed: they pair again to pin the new key.
    REPAIR_REQUIRED = "repair_required"


PROVIDERS = ("self-signed", "local-ca")
REPAIR_MESSAGE = {
    "certificate_rotated": "The server certificate was renewed with a new key. Please re-pair your device.",
    "certificate_replaced": "The server certificate was replaced. Please re-pair your device.",
    "certificate_deleted": "A certificate your device may pin was deleted. Please re-pair your device.",
    "tls_enabled": "Server TLS configuration has changed. Please re-pair your device to establish a secure "
    "connection with certificate pinning.",
}

Progress = Callable[[str, float], None]


class TlsListener(Protocol):
    """The server's listening socket, able to start serving TLS in place (implemented by the server)."""

    async def enable_tls(self, context: Any) -> None: ...


DeviceNotifier = Callable[[CertEvent, dict[str, Any]], Awaitable[int]]


@dataclass
class Managed:
    info: CertInfo
    cert_pem: bytes
    key_pem: bytes
    provider: str


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class CertificateService:
    def __init__(
        self,
        db: Database,
        data_dir: Path,
        *,
        base_url: Callable[[], str],
        set_base_url: Callable[[str], None],
        notify_devices: DeviceNotifier,
    ) -> None:
        self.db = db
        self.data_dir = data_dir
        self.base_url = base_url
        self.set_base_url = set_base_url
        self.notify_devices = notify_devices
        self.ca_dir = data_dir / "ca"
        self.runtime_dir = data_dir / "tls" / ".runtime"
        self._ca: LocalCA | None = None
        self._fernet: Fernet | None = None
        self.managed: dict[str, Managed] = {}
        self.sni = SniStore(self._base_host)
        self.listener: TlsListener | None = None
        self.serving_tls = False
        self.own_files: tuple[Path, Path] | None = None
        self.fallback_files: tuple[Path, Path] | None = None
        # Called after every change of what is served (other worker processes then `resync`).
        self.changed: Callable[[], None] = lambda: None
        # Whether this process speaks for the instance about what it finds at start-up (TLS switched on
        # in place: the log line and the devices' repair notice). Only the leader of several workers does.
        self.announce_start = True

    # ---- wiring from the server --------------------------------------------------------------------

    def _base_host(self) -> str:
        return (urlsplit(self.base_url()).hostname or "localhost").lower()

    @property
    def ca(self) -> LocalCA:
        if self._ca is None:
            from nekzus.certs.ca import LocalCA

            self._ca = LocalCA.load_or_create(self.ca_dir)
        return self._ca

    @property
    def fernet(self) -> Fernet:
        if self._fernet is None:
            from cryptography.fernet import Fernet

            secret = load_or_create(self.data_dir / "cert_key")
            self._fernet = Fernet(base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest()))
        return self._fernet

    def attach(self, listener: TlsListener, *, serving_tls: bool) -> None:
        self.listener = listener
        self.serving_tls = serving_tls

    def set_fallback(self, cert_path: Path, key_path: Path, *, own: bool) -> None:
        """The file certificate from the config (or Nekzus' own in the data dir); `own` ones are renewed."""
        cert_pem, key_pem = cert_path.read_bytes(), key_path.read_bytes()

        def describe() -> CertInfo:
            from nekzus.certs.pem import CertInfo, load_chain

            return CertInfo.of("(server)", load_chain(cert_pem)[0])

        context = build_context(cert_pem, key_pem, self.runtime_dir)  # refuses a broken pair now
        self.sni.fallback = Served(describe, context, not_valid_after(cert_path))
        self.fallback_files = (cert_path, key_path)
        self.own_files = (cert_path, key_path) if own else None

    # ---- queries -----------------------------------------------------------------------------------

    def served(self) -> Served | None:
        """What a client connecting to the base URL is served right now (None over plain HTTP)."""
        if not self.serving_tls:
            return None
        return self.sni.select(None)

    def served_pins(self) -> list[str]:
        served = self.served()
        return [served.info.spki] if served is not None else []

    def list_all(self) -> list[dict[str, Any]]:
        return [self.managed[d].info.to_json() for d in sorted(self.managed)]

    def get(self, domain: str) -> dict[str, Any]:
        managed = self.managed.get(domain.lower())
        if managed is None:
            raise NotFound(f"no certificate for {domain!r}", code="CERT_NOT_FOUND")
        return managed.info.to_json()

    def suggest(self) -> list[str]:
        return suggestions()

    def ca_pem(self) -> bytes:
        return self.ca.cert_pem

    async def component_health(self) -> ComponentHealth:
        now = dt.datetime.now(dt.UTC)
        expiries = [(d, m.info.not_after) for d, m in self.managed.items()]
        if self.sni.fallback is not None:
            expiries.append(("(server)", self.sni.fallback.not_after))
        expired = [d for d, at in expiries if at <= now]
        soon = [d for d, at in expiries if now < at <= now + dt.timedelta(days=RENEW_BEFORE_DAYS)]
        details: dict[str, Any] = {"count": len(expiries), "tls": self.serving_tls}
        if expired:
            return ComponentHealth(Status.UNHEALTHY, f"expired: {', '.join(sorted(expired))}", details)
        if soon:
            return ComponentHealth(
                Status.DEGRADED, f"expiring within 30 days: {', '.join(sorted(soon))}", details
            )
        return ComponentHealth(Status.HEALTHY, "", details)

    # ---- loading -----------------------------------------------------------------------------------

    async def start(self) -> None:
        if not ((self.ca_dir / "ca.crt").exists() and (self.ca_dir / "ca.key").exists()):
            _ = self.ca  # created once, at first start (later starts load it when it signs)
        await self._load()
        if not self.serving_tls and self.managed:
            await self._enable_tls(announce=self.announce_start)

    async def reload_from_storage(self) -> None:
        """Re-read the table (after a restore) and tell devices if the served key changed."""
        before = self.served_pins()
        # A restore may also have brought back the CA and the key that seals stored private keys.
        self._ca, self._fernet = None, None
        await self._load()
        if not self.serving_tls and self.managed:
            await self._enable_tls()
        else:
            await self._announce_change(before, "certificate_replaced", "(restore)")

    async def _load(self) -> None:
        fresh: dict[str, Managed] = {}
        now = dt.datetime.now(dt.UTC)
        rows = await self.db.rows(
            select(
                certificates.c.domain,
                certificates.c.cert_pem,
                certificates.c.key_encrypted,
                certificates.c.provider,
            )
        )
        if rows:
            self._parse_rows(rows, fresh, now)
        self.managed = fresh
        self.sni.managed = {
            d: Served(m.info, build_context(m.cert_pem, m.key_pem, self.runtime_dir))
            for d, m in fresh.items()
        }

    def _parse_rows(self, rows: Sequence[Row[Any]], fresh: dict[str, Managed], now: dt.datetime) -> None:
        from cryptography.fernet import InvalidToken

        from nekzus.certs.pem import CertInfo, load_chain

        for row in rows:
            try:
                key_pem = self.fernet.decrypt(row.key_encrypted.encode())
                leaf = load_chain(row.cert_pem.encode())[0]
            except (InvalidToken, Invalid, ValueError):
                log.warning("certificate %s skipped: its key cannot be decrypted here", row.domain)
                continue
            if leaf.not_valid_after_utc <= now:
                log.warning("certificate %s skipped: expired", row.domain)
                continue
            fresh[row.domain] = Managed(
                CertInfo.of(row.domain, leaf), row.cert_pem.encode(), key_pem, row.provider
            )

    # ---- changes -----------------------------------------------------------------------------------

    async def _store(
        self, domain: str, cert_pem: bytes, key_pem: bytes, provider: str, action: str
    ) -> Managed:
        from nekzus.certs.pem import CertInfo, load_chain

        leaf = load_chain(cert_pem)[0]
        info = CertInfo.of(domain, leaf)
        context = build_context(cert_pem, key_pem, self.runtime_dir)  # fails before anything is written
        now = time.time()
        fields = {
            "cert_pem": cert_pem.decode(),
            "key_encrypted": self.fernet.encrypt(key_pem).decode(),
            "sans": json.dumps(info.sans),
            "provider": provider,
            "fingerprint": info.fingerprint,
            "updated_at": now,
        }
        # A certificate replaced keeps its first `created_at`.
        async with self.db.transaction() as tx:
            await tx.execute(upsert(certificates, {"domain": domain}, fields, first={"created_at": now}))
            await tx.execute(
                insert(certificate_history).values(
                    domain=domain, action=action, fingerprint=info.fingerprint, at=now
                )
            )
        managed = Managed(info, cert_pem, key_pem, provider)
        self.managed[domain] = managed
        self.sni.managed[domain] = Served(info, context)
        return managed

    async def generate(self, domains: list[str], provider: str = "self-signed") -> dict[str, Any]:
        if provider not in PROVIDERS:
            raise Invalid(f"provider not found: {provider!r}", code="CERT_GENERATION_FAILED")
        names = check_domains(domains)
        before = self.served_pins()
        cert_pem, key_pem = self.ca.issue(names)
        managed = await self._store(names[0], cert_pem, key_pem, "self-signed", "generated")
        upgraded = await self._after_change(before, "certificate_rotated", names[0])
        return {"success": True, "certificate": managed.info.to_json(), "tls_upgraded": upgraded}

    async def renew(self, domain: str) -> dict[str, Any]:
        name = domain.strip().lower() if isinstance(domain, str) else ""
        current = self.managed.get(name)
        if current is None:
            raise Invalid(f"no certificate for {domain!r} to renew", code="CERT_RENEWAL_FAILED")
        before = self.served_pins()
        old_spki = current.info.spki
        cert_pem, key_pem = self.ca.issue([name, *[s for s in current.info.sans if s != name]])
        managed = await self._store(name, cert_pem, key_pem, current.provider, "renewed")
        notified = await self._announce_change(before, "certificate_rotated", name)
        return {
            "success": True,
            "certificate": managed.info.to_json(),
            "rotation": {
                "old_spki": old_spki,
                "new_spki": managed.info.spki,
                "spki_changed": old_spki != managed.info.spki,
                "devices_notified": notified,
            },
        }

    async def replace(self, domain: str, cert_pem: str, key_pem: str) -> dict[str, Any]:
        name = check_domain(domain)
        if not isinstance(cert_pem, str) or not cert_pem.strip():
            raise Invalid("certificate (PEM) is required", code="INVALID_CERTIFICATE")
        if not isinstance(key_pem, str) or not key_pem.strip():
            raise Invalid("privateKey (PEM) is required", code="INVALID_KEY")
        from nekzus.certs.pem import validate_pair

        validate_pair(cert_pem.encode(), key_pem.encode())
        previous = self.managed.get(name)
        before = self.served_pins()
        managed = await self._store(
            name, cert_pem.encode(), key_pem.encode(), "imported", "replaced" if previous else "imported"
        )
        upgraded = await self._after_change(before, "certificate_replaced", name)
        old_spki = previous.info.spki if previous else ""
        return {
            "success": True,
            "certificate": managed.info.to_json(),
            "rotation": {
                "old_spki": old_spki,
                "new_spki": managed.info.spki,
                "spki_changed": old_spki != managed.info.spki,
                "was_new_import": previous is None,
            },
            "tls_upgraded": upgraded,
        }

    async def delete(self, domain: str) -> dict[str, Any]:
        name = domain.strip().lower()
        managed = self.managed.get(name)
        if managed is None:
            raise NotFound(f"no certificate for {domain!r}", code="CERT_NOT_FOUND")
        served = self.served()
        if served is not None and served.info.fingerprint == managed.info.fingerprint:
            raise Conflict(
                f"the certificate for {name!r} is the one being served; add or generate another first",
                code="CERT_IN_USE",
            )
        before = self.served_pins()
        async with self.db.transaction() as tx:
            await tx.execute(delete(certificates).where(certificates.c.domain == name))
            await tx.execute(
                insert(certificate_history).values(
                    domain=name, action="revoked", fingerprint=managed.info.fingerprint, at=time.time()
                )
            )
        self.managed.pop(name, None)
        self.sni.managed.pop(name, None)
        await self.notify_devices(
            CertEvent.REPAIR_REQUIRED,
            {
                "reason": "certificate_deleted",
                "domain": name,
                "oldSpki": managed.info.spki,
                "message": REPAIR_MESSAGE["certificate_deleted"],
                "timestamp": _now_iso(),
            },
        )
        await self._announce_change(before, "certificate_rotated", name)
        return {
            "success": True,
            "message": "Certificate deleted successfully",
            "warning": "Devices pinned to this certificate may need to re-pair",
        }

    async def resync(self) -> None:
        """Serve what another worker process stored or renewed (it already told the devices)."""
        self._ca, self._fernet = None, None
        await self._load()
        if self.own_files is not None:
            self.set_fallback(*self.own_files, own=True)
        if not self.serving_tls and self.listener is not None and self.sni.has_any():
            await self.listener.enable_tls(self.sni.listener_context())
            self.serving_tls = True
            url = self.base_url()
            if url.startswith("http://"):
                self.set_base_url("https://" + url[len("http://") :])

    async def _after_change(self, before: list[str], reason: str, domain: str) -> bool:
        self.changed()
        if not self.serving_tls:
            await self._enable_tls()
            return self.serving_tls
        await self._announce_change(before, reason, domain)
        return False

    async def _announce_change(self, before: list[str], reason: str, domain: str) -> int:
        self.changed()
        after = self.served_pins()
        if before == after:
            return 0
        await self.notify_devices(
            CertEvent.REPAIR_REQUIRED,
            {
                "reason": reason,
                "domain": domain,
                "oldSpki": before[0] if before else "",
                "newSpki": after[0] if after else "",
                "message": REPAIR_MESSAGE[reason],
                "timestamp": _now_iso(),
            },
        )
        return -1

    async def _enable_tls(self, *, announce: bool = True) -> None:
        """The first certificate appeared while serving plain HTTP: switch the listener to TLS in place
        (and, with `announce`, log it and tell the devices to re-pair)."""
        if self.listener is None or not self.sni.has_any():
            return
        await self.listener.enable_tls(self.sni.listener_context())
        self.serving_tls = True
        url = self.base_url()
        if url.startswith("http://"):
            self.set_base_url("https://" + url[len("http://") :])
        if not announce:
            return
        log.info("TLS enabled in place; base URL is now %s", self.base_url())
        await self.notify_devices(
            CertEvent.REPAIR_REQUIRED,
            {
                "reason": "tls_enabled",
                "newBaseUrl": self.base_url(),
                "message": REPAIR_MESSAGE["tls_enabled"],
                "timestamp": _now_iso(),
            },
        )

    # ---- renewal -----------------------------------------------------------------------------------

    def _due(self, not_after: dt.datetime) -> bool:
        return not_after <= dt.datetime.now(dt.UTC) + dt.timedelta(days=RENEW_BEFORE_DAYS)

    async def renew_due(self, progress: Progress) -> list[str]:
        """Renew Nekzus' own certificate and every CA-issued one that expires within 30 days."""
        renewed: list[str] = []
        due = [
            d for d, m in self.managed.items() if m.provider == "self-signed" and self._due(m.info.not_after)
        ]
        own = (
            self.own_files is not None
            and self.sni.fallback is not None
            and self._due(self.sni.fallback.not_after)
        )
        total = len(due) + (1 if own else 0)
        for index, domain in enumerate(due):
            progress(f"renewing {domain}", index / max(total, 1))
            await self.renew(domain)
            renewed.append(domain)
        if own and self.own_files is not None:
            progress("renewing the server certificate", len(due) / max(total, 1))
            await self.renew_own()
            renewed.append("(server)")
        progress("done", 1.0)
        return renewed

    async def renew_own(self) -> None:
        if self.own_files is None or self.sni.fallback is None:
            return
        cert_path, key_path = self.own_files
        before = self.served_pins()
        names = self.sni.fallback.info.sans or ["localhost"]
        from nekzus.certs.ca import LEAF_VALIDITY_DAYS, write_private

        cert_pem, key_pem = self.ca.issue(names, LEAF_VALIDITY_DAYS)
        write_private(key_path, key_pem)
        write_private(cert_path, cert_pem, 0o644)
        self.set_fallback(cert_path, key_path, own=True)
        await self._announce_change(before, "certificate_rotated", "(server)")
