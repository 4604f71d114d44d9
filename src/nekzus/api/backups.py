"""Backups: create, list, get, download, delete, restore; the scheduler's status and manual trigger.

Reads need any credential; creating needs `write:*`; download (the archive holds password and key hashes),
delete and restore need `access:admin`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import FileResponse, Response
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from nekzus.api.certificates import CERTIFICATES
from nekzus.api.deps import client_ip, services_of
from nekzus.api.jobs import JOBS
from nekzus.api.models import ERROR_RESPONSES
from nekzus.api.ops_jobs import run_as_job
from nekzus.api.security import require
from nekzus.auth.principal import ADMIN, Principal
from nekzus.backup.scheduler import BACKUP_JOB, BackupScheduler, BackupWork, RunJob, run_inline
from nekzus.backup.service import GROUPS, BackupService, RestoreOptions
from nekzus.domains import Key
from nekzus.errors import NekzusError, Unavailable
from nekzus.services import Services

log = logging.getLogger("nekzus.backup")

# A feature installed after this one that keeps database state in memory registers its refresh with
# `services.domains.features.require(BACKUPS).on_restored(name, fn)`.
BACKUPS: Key[BackupService] = Key("backups")
BACKUP_SCHEDULER: Key[BackupScheduler] = Key("backup_scheduler")
# How backups run: as `backup.create` jobs of the server's runner (inline when no runner is installed).
BACKUP_RUNNER: Key[RunJob] = Key("backup_runner")

T = TypeVar("T")

router = APIRouter(prefix="/api/v1/backups", tags=["backups"], responses=ERROR_RESPONSES)


class CreateBody(BaseModel):
    description: str = Field(default="", max_length=500)


def _flag(camel: str, snake: str) -> Any:
    return Field(default=None, validation_alias=AliasChoices(camel, snake))


class RestoreBody(BaseModel):
    """The API's camelCase options (older snake_case spellings accepted too). Unset means restore it."""

    model_config = ConfigDict(extra="ignore")
    apps: bool | None = _flag("restoreApps", "restore_apps")
    routes: bool | None = _flag("restoreRoutes", "restore_routes")
    devices: bool | None = _flag("restoreDevices", "restore_devices")
    api_keys: bool | None = _flag("restoreApiKeys", "restore_api_keys")
    users: bool | None = _flag("restoreUsers", "restore_users")
    certificates: bool | None = _flag("restoreCertificates", "restore_certificates")
    settings: bool | None = _flag("restoreSettings", "restore_settings")
    other: bool | None = _flag("restoreOther", "restore_other")
    secrets: bool | None = _flag("restoreSecrets", "restore_secrets")

    def options(self) -> RestoreOptions:
        groups = {name: getattr(self, name) is not False for name in GROUPS}
        return RestoreOptions(groups, other=self.other is not False, secrets=self.secrets is True)


def backups_of(request: Request) -> BackupService:
    return services_of(request).domains.features.require(BACKUPS)


async def _audit(
    request: Request, principal: Principal, action: str, target: str, exc: NekzusError | None
) -> None:
    audit = services_of(request).domains.audit
    details = {"code": exc.code, "message": exc.message} if exc is not None else None
    await audit.record(
        action,
        actor=principal.rate_key,
        target=target,
        ip=client_ip(request),
        details=details,
        success=exc is None,
    )


async def _audited(request: Request, principal: Principal, action: str, target: str, coro: Awaitable[T]) -> T:
    try:
        result = await coro
    except NekzusError as exc:
        await _audit(request, principal, action, target, exc)
        raise
    await _audit(request, principal, action, target, None)
    return result


@router.get("", summary="List backups, newest first")
async def list_backups(request: Request, _p: Principal = Depends(require())) -> dict[str, Any]:
    items = await backups_of(request).list_all()
    return {"backups": items, "count": len(items)}


@router.post("", summary="Take a consistent backup now", status_code=201)
async def create_backup(
    request: Request, body: CreateBody | None = None, principal: Principal = Depends(require("write:*"))
) -> dict[str, Any]:
    description = body.description if body is not None else ""
    service = backups_of(request)
    run_job = services_of(request).domains.features.get(BACKUP_RUNNER) or run_inline

    async def work(progress: Any) -> dict[str, Any]:
        return await service.create(description, progress=progress)

    return await _audited(request, principal, "backup.create", "", run_job(BACKUP_JOB, work))


@router.get("/scheduler/status", summary="Backup scheduler status")
async def scheduler_status(request: Request, _p: Principal = Depends(require())) -> dict[str, Any]:
    scheduler: BackupScheduler | None = services_of(request).domains.features.get(BACKUP_SCHEDULER)
    if scheduler is None:
        return {"enabled": False, "message": "Backup scheduler is not configured"}
    return scheduler.status()


@router.post("/scheduler/trigger", summary="Take a backup on the scheduler's behalf now", status_code=201)
async def scheduler_trigger(
    request: Request, body: CreateBody | None = None, principal: Principal = Depends(require("write:*"))
) -> dict[str, Any]:
    scheduler: BackupScheduler | None = services_of(request).domains.features.get(BACKUP_SCHEDULER)
    if scheduler is None:
        raise Unavailable("Backup scheduler is not configured", code="SCHEDULER_NOT_CONFIGURED")
    coro = scheduler.trigger(body.description if body is not None else "")
    return await _audited(request, principal, "backup.trigger", "", coro)


@router.get("/{backup_id}", summary="One backup's manifest")
async def get_backup(backup_id: str, request: Request, _p: Principal = Depends(require())) -> dict[str, Any]:
    return await backups_of(request).get(backup_id)


@router.get("/{backup_id}/download", summary="Download the archive", response_class=FileResponse)
async def download_backup(
    backup_id: str, request: Request, principal: Principal = Depends(require(ADMIN))
) -> Any:
    path: Path = await _audited(
        request, principal, "backup.download", backup_id, _path(backups_of(request), backup_id)
    )
    return FileResponse(path, media_type="application/gzip", filename=path.name)


async def _path(service: BackupService, backup_id: str) -> Path:
    return service.path_of(backup_id)


@router.delete("/{backup_id}", summary="Delete a backup", status_code=204, response_class=Response)
async def delete_backup(
    backup_id: str, request: Request, principal: Principal = Depends(require(ADMIN))
) -> Response:
    await _audited(request, principal, "backup.delete", backup_id, backups_of(request).delete(backup_id))
    return Response(status_code=204)


@router.post("/{backup_id}/restore", summary="Restore from a backup (atomic)")
async def restore_backup(
    backup_id: str,
    request: Request,
    body: RestoreBody | None = None,
    principal: Principal = Depends(require(ADMIN)),
) -> dict[str, Any]:
    options = (body or RestoreBody()).options()
    coro = backups_of(request).restore(backup_id, options)
    return await _audited(request, principal, "backup.restore", backup_id, coro)


def install(api: FastAPI, services: Services) -> None:
    cfg = services.config.backup
    directory = Path(cfg.directory) if cfg.directory else services.data_dir / "backups"
    service = BackupService(
        directory=directory,
        database_path=Path(services.db.path),
        data_dir=services.data_dir,
        passphrase=cfg.passphrase,
    )
    domains = services.domains
    domains.features.provide(BACKUPS, service)

    # After a restore replaced the tables, every domain that keeps them in memory re-reads them, in this
    # order: accounts and credentials, then the catalog (its change callback rebuilds the proxy's route
    # table), then the certificates (which may switch what is served and tell devices to re-pair).
    service.on_restored("auth", domains.auth.reload_from_storage)
    service.on_restored("catalog", domains.catalog.reload_from_storage)
    certificates = domains.features.get(CERTIFICATES)
    if certificates is not None:
        service.on_restored("certificates", certificates.reload_from_storage)
    runner = domains.features.get(JOBS)
    run_job: RunJob = run_inline
    if runner is not None:
        jobs = runner

        async def as_job(kind: str, work: BackupWork) -> dict[str, Any]:
            return await run_as_job(jobs, kind, work, triggered_by="backup")

        run_job = as_job
    domains.features.provide(BACKUP_RUNNER, run_job)
    if cfg.enabled:
        scheduler = BackupScheduler(service, cfg.schedule, cfg.retention, run_job)
        domains.features.provide(BACKUP_SCHEDULER, scheduler)

        async def start_scheduler() -> None:
            services.spawn(scheduler.loop(), "backup-scheduler")

        services.on_startup("backup-scheduler", start_scheduler)
    api.include_router(router)
