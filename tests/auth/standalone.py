"""An identity service on its own (no HTTP server), over a fresh SQLite file: for tests that need to
drive the service directly, e.g. with an injected clock or beside another process holding the database."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from nekzus.auth.activity import ActivityService
from nekzus.auth.audit import AuditService
from nekzus.auth.service import AuthService
from nekzus.config import Config
from nekzus.services import Services


async def open_services(db_path: Path) -> tuple[Config, Services]:
    """A config with no trusted networks and its services, with the database open."""
    config = Config.model_validate(
        {"storage": {"database_path": str(db_path)}, "auth": {"local_networks": []}}
    )
    services = Services.build(config, base_url="http://127.0.0.1")
    await services.db.open()
    return config, services


def auth_service(
    config: Config, services: Services, data_dir: Path, clock: Callable[[], float] = time.time
) -> AuthService:
    """A new (not yet started) identity service over `services`' database."""
    return AuthService(
        config,
        data_dir=data_dir,
        db=services.db,
        metrics=services.metrics,
        spawn=services.spawn,
        audit_log=AuditService(services.db),
        activity_feed=ActivityService(services.db),
        local_networks=(),
        clock=clock,
    )
