"""Certificates: generate from the local CA, list, suggest, get, delete, renew, replace; the CA download.

Every route but the CA download needs `access:admin` presented as a JWT or an API key, even from a trusted
network: a certificate change re-keys what every device pins.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response
from pydantic import AliasChoices, BaseModel, Field

from nekzus.api.deps import client_ip, services_of
from nekzus.api.jobs import JOBS
from nekzus.api.models import ERROR_RESPONSES
from nekzus.api.ops_jobs import run_as_job
from nekzus.api.security import require
from nekzus.auth.principal import ADMIN, Principal
from nekzus.certs.service import CertEvent, CertificateService, DeviceNotifier
from nekzus.domains import Domains, Key
from nekzus.errors import NekzusError
from nekzus.events.hub import envelope
from nekzus.services import Services

log = logging.getLogger("nekzus.certs")

# The server (SNI, TLS switch), pairing (SPKI pins) and backups (refresh after a restore) reach the
# certificate service through this key.
CERTIFICATES: Key[CertificateService] = Key("certificates")

# How often the renewal job looks for certificates expiring within 30 days.
RENEWAL_CHECK_SECONDS = 6 * 3600.0
# The job kind of each renewal pass (on the server's job runner when it is installed).
RENEW_JOB = "certs.renew"
# access:admin as a JWT or an API key: the trusted-network shortcut is not enough to re-key the server.
admin_credential = require(ADMIN, credential=True)


T = TypeVar("T")

router = APIRouter(prefix="/api/v1/certificates", tags=["certificates"], responses=ERROR_RESPONSES)


class GenerateBody(BaseModel):
    domains: list[str] = Field(default_factory=list)
    provider: str = "self-signed"


class RenewBody(BaseModel):
    domain: str = ""


class ReplaceBody(BaseModel):
    domain: str = ""
    certificate: str = Field(
        default="", validation_alias=AliasChoices("certificate", "cert", "certificate_pem")
    )
    privateKey: str = Field(default="", validation_alias=AliasChoices("privateKey", "private_key", "key"))


def certs_of(request: Request) -> CertificateService:
    return services_of(request).domains.features.require(CERTIFICATES)


async def _audited(request: Request, principal: Principal, action: str, target: str, coro: Awaitable[T]) -> T:
    """Run a change and write one audit row for it, success or refusal."""
    audit = services_of(request).domains.audit
    try:
        result = await coro
    except NekzusError as exc:
        await audit.record(
            action,
            actor=principal.rate_key,
            target=target,
            ip=client_ip(request),
            details={"code": exc.code, "message": exc.message},
            success=False,
        )
        raise
    await audit.record(action, actor=principal.rate_key, target=target, ip=client_ip(request))
    return result


@router.get("/ca.pem", summary="The local CA certificate (install it on phones and browsers)")
async def ca_certificate(request: Request) -> Response:
    pem = certs_of(request).ca_pem()
    return Response(
        pem,
        media_type="application/x-pem-file",
        headers={"Content-Disposition": 'attachment; filename="nekzus-ca.crt"'},
    )


@router.post("/generate", summary="Issue a certificate for local names from the local CA")
async def generate(
    body: GenerateBody, request: Request, principal: Principal = Depends(admin_credential)
) -> dict[str, Any]:
    target = ",".join(body.domains)[:200]
    coro = certs_of(request).generate(body.domains, body.provider)
    return await _audited(request, principal, "certificate.generate", target, coro)


@router.get("", summary="List managed certificates")
async def list_certificates(request: Request, _p: Principal = Depends(admin_credential)) -> dict[str, Any]:
    items = certs_of(request).list_all()
    return {"certificates": items, "count": len(items)}


@router.get("/suggest", summary="Domains worth covering, from this host's names and addresses")
async def suggest(request: Request, _p: Principal = Depends(admin_credential)) -> dict[str, Any]:
    items = certs_of(request).suggest()
    return {"suggestions": items, "count": len(items)}


@router.post("/renew", summary="Re-issue a certificate with the same names and a new key")
async def renew(
    body: RenewBody, request: Request, principal: Principal = Depends(admin_credential)
) -> dict[str, Any]:
    coro = certs_of(request).renew(body.domain)
    return await _audited(request, principal, "certificate.renew", body.domain, coro)


@router.post("/replace", summary="Import an uploaded certificate chain and key")
async def replace(
    body: ReplaceBody, request: Request, principal: Principal = Depends(admin_credential)
) -> dict[str, Any]:
    coro = certs_of(request).replace(body.domain, body.certificate, body.privateKey)
    return await _audited(request, principal, "certificate.replace", body.domain, coro)


@router.get("/{domain}", summary="One certificate")
async def get_certificate(
    domain: str, request: Request, _p: Principal = Depends(admin_credential)
) -> dict[str, Any]:
    return {"certificate": certs_of(request).get(domain)}


@router.delete("/{domain}", summary="Delete a certificate (not the one being served)")
async def delete_certificate(
    domain: str, request: Request, principal: Principal = Depends(admin_credential)
) -> dict[str, Any]:
    coro = certs_of(request).delete(domain)
    return await _audited(request, principal, "certificate.delete", domain, coro)


def device_notifier(domains: Domains) -> DeviceNotifier:
    """Queue a message to every paired device (the notification queue when on, else live sockets)."""

    async def notify(type_: CertEvent, payload: dict[str, Any]) -> int:
        queue, hub = domains.notifications, domains.hub
        sent = 0
        for device_id in list(domains.auth.devices):
            if queue.enabled:
                await queue.enqueue(device_id, type_, payload)
                sent += 1
                continue
            text = envelope(type_, payload)
            for client in hub.connections_of(device_id):
                client.push(text)
                sent += 1
        return sent

    return notify


def install(api: FastAPI, services: Services) -> None:
    def set_base_url(url: str) -> None:
        services.base_url = url

    service = CertificateService(
        services.db,
        services.data_dir,
        base_url=lambda: services.base_url,
        set_base_url=set_base_url,
        notify_devices=device_notifier(services.domains),
    )
    services.domains.features.provide(CERTIFICATES, service)

    runner = services.domains.features.get(JOBS)

    async def renewal_pass() -> list[str]:
        if runner is None:
            return await service.renew_due(lambda step, _fraction: log.debug("renewal: %s", step))
        return await run_as_job(runner, RENEW_JOB, service.renew_due, triggered_by="certificates")

    async def renewal_loop() -> None:
        while True:
            try:
                renewed = await renewal_pass()
                if renewed:
                    log.info("renewed certificates: %s", ", ".join(renewed))
            except Exception:
                log.exception("certificate renewal failed; retrying at the next check")
            await asyncio.sleep(RENEWAL_CHECK_SECONDS)

    async def start() -> None:
        await service.start()

    async def start_renewal() -> None:
        services.spawn(renewal_loop(), "certificate-renewal")

    services.on_startup("certificates", start)
    services.on_startup("certificate-renewal", start_renewal)
    services.health.register("certificates", service.component_health)
    api.include_router(router)
