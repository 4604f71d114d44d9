"""The catalog: apps and routes in memory (the proxy's source of truth) backed by SQLite.

Reads never touch the database; every change is persisted first, then swapped into memory, then
announced (`config_reload` on the bus and the change listeners, e.g. the proxy's route table).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import ValidationError
from sqlalchemy import delete, select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from nekzus.catalog.models import catalog_apps, catalog_routes, catalog_service_health
from nekzus.catalog.spec import AppSpec, RouteSpec
from nekzus.config import Config
from nekzus.errors import NekzusError
from nekzus.events import EventBus
from nekzus.events.types import EventType
from nekzus.metrics import Metrics
from nekzus.store import Database, Transaction, upsert
from nekzus.tasks import Spawn
from nekzus.timefmt import rfc3339_or_none

if TYPE_CHECKING:
    from nekzus.auth.audit import AuditService
    from nekzus.catalog.health import ServiceHealthChecker

log = logging.getLogger("nekzus.catalog")

SOURCES = ("config", "api", "discovery")
# Health results are written behind: at most one transaction per this many seconds, whatever the number
# of routes checked.
HEALTH_WRITE_DELAY = 1.0
# The persisted fields of a `HealthState` (the columns of `catalog_service_health` besides its key).
HEALTH_FIELDS = (
    "status",
    "message",
    "last_check",
    "last_success",
    "consecutive_failures",
    "response_time_ms",
    "status_code",
)


def _route_from_config(route_cfg: Any) -> RouteSpec:
    raw = {k: v for k, v in route_cfg.model_dump().items() if v is not None}
    raw["route_id"] = raw.pop("id")
    return RouteSpec.model_validate(raw)


class CatalogError(NekzusError):
    """A refused change: `status` and `code` map onto the API error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message, code=code)
        self.status = status


def _route_not_found(route_id: str) -> CatalogError:
    return CatalogError(404, "ROUTE_NOT_FOUND", f"Route {route_id!r} not found")


@dataclass(slots=True)
class HealthState:
    status: str = "unknown"
    message: str = ""
    last_check: float | None = None
    last_success: float | None = None
    consecutive_failures: int = 0
    response_time_ms: float | None = None
    status_code: int | None = None


@dataclass(slots=True)
class RouteEntry:
    spec: RouteSpec
    source: str


@dataclass(slots=True)
class AppEntry:
    spec: AppSpec
    source: str


@dataclass
class CatalogService:
    config: Config
    db: Database
    bus: EventBus
    metrics: Metrics
    spawn: Spawn
    base_url: str
    audit: AuditService | None = None
    # Set by the composition root once the checker (which reads this catalog) exists.
    health_checker: ServiceHealthChecker | None = None
    apps: dict[str, AppEntry] = field(default_factory=dict)
    routes: dict[str, RouteEntry] = field(default_factory=dict)
    health: dict[str, HealthState] = field(default_factory=dict)
    _listeners: list[Callable[[], None]] = field(default_factory=list)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Health results waiting to be written (app ids), written behind in one transaction per window.
    _health_dirty: set[str] = field(default_factory=set)
    _health_flush: asyncio.Task[None] | None = None
    # Called after every committed change (other worker processes then re-read: see `resync`).
    changed: Callable[[], None] = lambda: None

    # ---- lifecycle -------------------------------------------------------------------------------

    def on_change(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)
        callback()

    def _changed(self, message: str, *, announce: bool = True, **details: Any) -> None:
        for callback in self._listeners:
            try:
                callback()
            except Exception:
                log.exception("catalog listener failed")
        self.changed()
        metrics = self.metrics
        metrics.storage_apps_total.set(len(self.apps))
        metrics.storage_routes_total.set(len(self.routes))
        if announce:
            self.bus.emit(EventType.CONFIG_RELOAD, {"message": message, **details})

    async def load(self) -> None:
        """Read the catalog, then re-apply the config file's apps and routes (apps first)."""
        await self._read_storage()
        config = self.config
        for app_cfg in config.apps:
            try:
                spec = AppSpec.model_validate(app_cfg.model_dump())
                await self._save_app(spec, "config")
            except (ValidationError, ValueError) as exc:
                log.warning("config app %s ignored: %s", app_cfg.id, exc)
        for route_cfg in config.routes:
            try:
                rspec = _route_from_config(route_cfg)
                self._check_conflicts(rspec)
                await self._save_route(rspec, "config")
            except (ValidationError, ValueError, CatalogError) as exc:
                log.warning("config route %s ignored: %s", route_cfg.id, exc)
        self._changed("Catalog loaded")

    async def resync(self) -> None:
        """Re-read the catalog another worker process changed (its change was announced there)."""
        async with self._lock:  # not in the middle of this worker's own change
            self.apps.clear()
            self.routes.clear()
            await self._read_storage()
            self._changed("Catalog reloaded", announce=False)

    async def _read_storage(self) -> None:
        async with self.db.transaction() as tx:
            app_rows = await tx.rows(select(catalog_apps.c.id, catalog_apps.c.spec, catalog_apps.c.source))
            route_rows = await tx.rows(
                select(catalog_routes.c.id, catalog_routes.c.spec, catalog_routes.c.source)
            )
            health_rows = await tx.rows(select(catalog_service_health))
        for app_row in app_rows:
            try:
                spec = AppSpec.model_validate(json.loads(app_row.spec))
            except (ValidationError, ValueError):
                log.warning("skipping unreadable app %s", app_row.id)
                continue
            self.apps[spec.id] = AppEntry(spec, app_row.source)
        for route_row in route_rows:
            try:
                rspec = RouteSpec.model_validate(json.loads(route_row.spec))
            except (ValidationError, ValueError):
                log.warning("skipping unreadable route %s", route_row.id)
                continue
            self.routes[rspec.route_id] = RouteEntry(rspec, route_row.source)
        for health_row in health_rows:
            self.health[health_row.app_id] = HealthState(
                status=health_row.status,
                message=health_row.message,
                last_check=health_row.last_check,
                last_success=health_row.last_success,
                consecutive_failures=health_row.consecutive_failures,
                response_time_ms=health_row.response_time_ms,
                status_code=health_row.status_code,
            )

    async def reload_from_storage(self) -> None:
        """Drop the in-memory catalog and read it again (after a backup restore replaced the tables);
        listeners (the proxy's route table) are told through the usual change callback."""
        self.apps.clear()
        self.routes.clear()
        self.health.clear()
        await self.load()

    async def reconfigure(self, _old: Config, new: Config) -> dict[str, list[str]]:
        """Reload hook: merge the new config's apps and routes."""
        self.config = new
        return await self.apply_config(new.apps, new.routes)

    async def apply_config(self, apps: list[Any], routes: list[Any]) -> dict[str, list[str]]:
        """Merge the config file's apps and routes on hot reload .

        Config entries are upserted; entries that came from the config file (`source == "config"`) and
        are gone from it are removed; routes and apps created through the API or approved from
        discovery are never touched (a config entry whose id they already use is skipped).
        """
        summary: dict[str, list[str]] = {
            "routesAdded": [],
            "routesUpdated": [],
            "routesRemoved": [],
            "appsAdded": [],
            "appsUpdated": [],
            "appsRemoved": [],
            "skipped": [],
        }
        app_specs: dict[str, AppSpec] = {}
        for app_cfg in apps:
            try:
                app_specs[app_cfg.id] = AppSpec.model_validate(app_cfg.model_dump())
            except (ValidationError, ValueError) as exc:
                log.warning("config app %s ignored: %s", app_cfg.id, exc)
                summary["skipped"].append(f"app:{app_cfg.id}")
        route_specs: dict[str, RouteSpec] = {}
        for route_cfg in routes:
            try:
                route_specs[route_cfg.id] = _route_from_config(route_cfg)
            except (ValidationError, ValueError) as exc:
                log.warning("config route %s ignored: %s", route_cfg.id, exc)
                summary["skipped"].append(f"route:{route_cfg.id}")
        async with self._lock:
            # Stale config routes go first, so a renamed route may take over its old path.
            stale = [e for rid, e in self.routes.items() if e.source == "config" and rid not in route_specs]
            if stale:
                stale_ids = [entry.spec.route_id for entry in stale]
                await self.db.execute(delete(catalog_routes).where(catalog_routes.c.id.in_(stale_ids)))
                for entry in stale:
                    del self.routes[entry.spec.route_id]
                    summary["routesRemoved"].append(entry.spec.route_id)
            for app_id, spec in app_specs.items():
                existing_app = self.apps.get(app_id)
                if existing_app is not None and existing_app.source != "config":
                    log.warning(
                        "config app %s ignored: the id is used by a %s app", app_id, existing_app.source
                    )
                    summary["skipped"].append(f"app:{app_id}")
                    continue
                if existing_app is not None and existing_app.spec == spec:
                    continue
                await self._save_app(spec, "config")
                summary["appsAdded" if existing_app is None else "appsUpdated"].append(app_id)
            for route_id, rspec in route_specs.items():
                existing = self.routes.get(route_id)
                if existing is not None and existing.source != "config":
                    log.warning(
                        "config route %s ignored: the id is used by a %s route", route_id, existing.source
                    )
                    summary["skipped"].append(f"route:{route_id}")
                    continue
                if existing is not None and existing.spec == rspec:
                    continue
                try:
                    self._check_conflicts(rspec)
                except CatalogError as exc:
                    log.warning("config route %s ignored: %s", route_id, exc.message)
                    summary["skipped"].append(f"route:{route_id}")
                    continue
                await self._save_route(rspec, "config")
                summary["routesAdded" if existing is None else "routesUpdated"].append(route_id)
                if existing is not None and existing.spec.app_id != rspec.app_id:
                    await self._drop_config_app(existing.spec.app_id, app_specs, summary)
            for entry in stale:
                await self._drop_config_app(entry.spec.app_id, app_specs, summary)
            for app_id, app_entry in list(self.apps.items()):
                if app_entry.source == "config" and app_id not in app_specs:
                    await self._drop_config_app(app_id, app_specs, summary)
        if any(v for k, v in summary.items() if k != "skipped"):
            self._changed("Configuration reloaded", announce=False)
        return summary

    async def _drop_config_app(
        self, app_id: str, wanted: dict[str, AppSpec], summary: dict[str, list[str]]
    ) -> None:
        """Remove an app left without routes, unless the config file still lists it."""
        if app_id in wanted or app_id not in self.apps:
            return
        if any(e.spec.app_id == app_id for e in self.routes.values()):
            return
        await self._drop_orphan_app(app_id)
        summary["appsRemoved"].append(app_id)

    # ---- queries (memory only) -------------------------------------------------------------------

    def count_routes(self) -> int:
        return len(self.routes)

    def count_apps(self) -> int:
        return len(self.apps)

    def route(self, route_id: str) -> RouteSpec | None:
        entry = self.routes.get(route_id)
        return entry.spec if entry else None

    def route_for_app(self, app_id: str) -> RouteSpec | None:
        candidates = sorted(
            (e.spec for e in self.routes.values() if e.spec.app_id == app_id), key=lambda s: s.path_base
        )
        return candidates[0] if candidates else None

    def sorted_routes(self) -> list[RouteSpec]:
        return sorted((e.spec for e in self.routes.values()), key=lambda s: (s.path_base, s.route_id))

    def sorted_apps(self) -> list[AppSpec]:
        return sorted((e.spec for e in self.apps.values()), key=lambda a: (a.name.lower(), a.id))

    def app_json(self, app: AppSpec) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": app.id,
            "name": app.name,
            "icon": app.icon,
            "tags": list(app.tags),
            "endpoints": dict(app.endpoints),
            "faviconURL": f"/api/v1/apps/{app.id}/favicon",
            "healthStatus": "unknown",
        }
        route = self.route_for_app(app.id)
        if route is not None:
            out["proxyPath"] = route.path_base
            out["url"] = self._public_url(route)
        state = self.health.get(app.id)
        if state is not None:
            out["healthStatus"] = state.status
            if state.last_check is not None:
                out["lastHealthCheck"] = rfc3339_or_none(state.last_check)
        if app.discovery_meta:
            out["discoveryMeta"] = app.discovery_meta
        return out

    def _public_url(self, route: RouteSpec) -> str:
        base = self.base_url.rstrip("/")
        domain = self.config.server.base_domain
        if route.subdomain_routed and domain:
            parts = urlsplit(base)
            port = f":{parts.port}" if parts.port and parts.port not in (80, 443) else ""
            return f"{parts.scheme}://{route.subdomain}.{domain}{port}/"
        return base + route.path_base

    def route_json(self, route: RouteSpec) -> dict[str, Any]:
        out = route.to_json()
        state = self.health.get(route.app_id)
        status = state.status if state else "unknown"
        if route.skip_health_check and state is None:
            status = "healthy"
        out["status"] = {"healthy": "ACTIVE", "unhealthy": "UNHEALTHY"}.get(status, "UNKNOWN")
        if status == "unknown" and state is None:
            out["status"] = "ACTIVE"
        info: dict[str, Any] = {"status": status}
        if state is not None:
            if state.last_check is not None:
                info["lastCheck"] = rfc3339_or_none(state.last_check)
            if state.response_time_ms is not None:
                info["responseTime"] = round(state.response_time_ms)
            if state.status_code is not None:
                info["statusCode"] = state.status_code
            if state.message and status != "healthy":
                info["lastError"] = state.message
        checker = self.health_checker
        if checker is not None:
            info.update(checker.describe(route))
        out["healthInfo"] = info
        return out

    async def list_apps(self) -> list[dict[str, Any]]:
        return [self.app_json(a) for a in self.sorted_apps()]

    async def get_route_by_app(self, app_id: str) -> dict[str, Any] | None:
        route = self.route_for_app(app_id)
        return self.route_json(route) if route else None

    # ---- changes ---------------------------------------------------------------------------------

    def _check_conflicts(self, spec: RouteSpec) -> None:
        key = spec.path_base.rstrip("/")
        for entry in self.routes.values():
            other = entry.spec
            if other.route_id == spec.route_id:
                continue
            if spec.path_routed and other.path_routed and other.path_base.rstrip("/") == key:
                raise CatalogError(
                    409,
                    "ROUTE_CONFLICT",
                    f'path "{spec.path_base}" already used by route "{other.route_id}"',
                )
            if spec.subdomain_routed and other.subdomain_routed and other.subdomain == spec.subdomain:
                raise CatalogError(
                    409,
                    "ROUTE_CONFLICT",
                    f'subdomain "{spec.subdomain}" already used by route "{other.route_id}"',
                )

    # ---- writes ----------------------------------------------------------------------------------
    # Every change is one transaction (app, route, icon and orphaned app together), and the in-memory
    # catalog is updated only after it committed: a failed write leaves neither half-saved rows nor a
    # memory that disagrees with the database.

    @staticmethod
    async def _write_app(tx: Transaction, spec: AppSpec, source: str) -> AppEntry:
        values = {"name": spec.name, "spec": json.dumps(spec.storage()), "source": source}
        await tx.execute(upsert(catalog_apps, {"id": spec.id}, values))
        return AppEntry(spec, source)

    @staticmethod
    async def _write_route(tx: Transaction, spec: RouteSpec, source: str) -> RouteEntry:
        values = {
            "app_id": spec.app_id,
            "path_base": spec.path_base,
            "target": spec.to,
            "spec": json.dumps(spec.storage()),
            "source": source,
        }
        await tx.execute(upsert(catalog_routes, {"id": spec.route_id}, values))
        return RouteEntry(spec, source)

    @staticmethod
    async def _delete_app_rows(tx: Transaction, app_id: str) -> None:
        await tx.execute(delete(catalog_apps).where(catalog_apps.c.id == app_id))
        await tx.execute(delete(catalog_service_health).where(catalog_service_health.c.app_id == app_id))

    def _orphaned(self, app_id: str, *, leaving: str) -> bool:
        """True when no route but `leaving` (which is moving away or being deleted) uses the app."""
        return not any(e.spec.app_id == app_id and rid != leaving for rid, e in self.routes.items())

    def _forget_app(self, app_id: str) -> None:
        self.apps.pop(app_id, None)
        self.health.pop(app_id, None)

    async def _save_app(self, spec: AppSpec, source: str) -> None:
        async with self.db.transaction() as tx:
            entry = await self._write_app(tx, spec, source)
        self.apps[spec.id] = entry

    async def _save_route(self, spec: RouteSpec, source: str) -> None:
        """Save a route, creating a bare app for it in the same transaction when its app is unknown."""
        async with self.db.transaction() as tx:
            app = None
            if spec.app_id not in self.apps:
                app = await self._write_app(tx, AppSpec(id=spec.app_id, name=spec.app_id), source)
            route = await self._write_route(tx, spec, source)
        if app is not None:
            self.apps[spec.app_id] = app
        self.routes[spec.route_id] = route

    async def save_route(self, spec: RouteSpec, *, source: str = "api", icon: str | None = None) -> RouteSpec:
        """Create or replace a route (409 on a path/subdomain clash)."""
        async with self._lock:
            self._check_conflicts(spec)
            existing = self.routes.get(spec.route_id)
            route_source = existing.source if existing and source == "api" else source
            old_app = existing.spec.app_id if existing is not None else None
            orphan = (
                old_app
                if old_app is not None
                and old_app != spec.app_id
                and self._orphaned(old_app, leaving=spec.route_id)
                else None
            )
            async with self.db.transaction() as tx:
                app = self.apps.get(spec.app_id)
                new_app = None
                if app is None:
                    app = new_app = await self._write_app(
                        tx, AppSpec(id=spec.app_id, name=spec.app_id), route_source
                    )
                if icon is not None:
                    new_app = await self._write_app(
                        tx, app.spec.model_copy(update={"icon": icon}), app.source
                    )
                route = await self._write_route(tx, spec, route_source)
                if orphan is not None:
                    await self._delete_app_rows(tx, orphan)
            if new_app is not None:
                self.apps[spec.app_id] = new_app
            self.routes[spec.route_id] = route
            if orphan is not None:
                self._forget_app(orphan)
        self._changed("Route saved", routeId=spec.route_id)
        return spec

    # ---- audited changes (the route API) ---------------------------------------------------------

    async def create_route(self, spec: RouteSpec, *, icon: str | None, actor: str, ip: str) -> RouteSpec:
        """Add a route (409 when its id or its path/subdomain is taken); audited with the apps it adds."""
        if spec.route_id in self.routes:
            raise CatalogError(409, "ROUTE_CONFLICT", f"route {spec.route_id!r} already exists")
        apps_before = set(self.apps)
        saved = await self.save_route(spec, icon=icon)
        details = {"pathBase": saved.path_base, "appId": saved.app_id, "to": saved.to}
        await self._audit_change("route.created", saved.route_id, details, apps_before, actor, ip)
        return saved

    async def replace_route(
        self, spec: RouteSpec, *, icon: str | None, actor: str, ip: str, fields: list[str] | None = None
    ) -> RouteSpec:
        """Replace an existing route (404 when missing); `fields` names what a partial update changed
        (audited instead of the whole new route)."""
        if spec.route_id not in self.routes:
            raise _route_not_found(spec.route_id)
        apps_before = set(self.apps)
        saved = await self.save_route(spec, icon=icon)
        details: dict[str, Any] = (
            {"fields": fields}
            if fields is not None
            else {"replaced": True, "pathBase": saved.path_base, "appId": saved.app_id, "to": saved.to}
        )
        await self._audit_change("route.updated", saved.route_id, details, apps_before, actor, ip)
        return saved

    async def remove_route(self, route_id: str, *, actor: str, ip: str) -> None:
        """Delete a route (404 when missing) and the app it leaves without routes; audited."""
        current = self.route(route_id)
        apps_before = set(self.apps)
        if not await self.delete_route(route_id):
            raise _route_not_found(route_id)
        details = {"pathBase": current.path_base, "appId": current.app_id} if current is not None else None
        await self._audit_change("route.deleted", route_id, details, apps_before, actor, ip)

    async def _audit_change(
        self,
        action: str,
        route_id: str,
        details: dict[str, Any] | None,
        apps_before: set[str],
        actor: str,
        ip: str,
    ) -> None:
        """Audit a route change, and each app the change created or removed."""
        audit = self.audit
        if audit is None:
            return
        await audit.record(action, actor=actor, target=route_id, ip=ip, details=details)
        apps_now = set(self.apps)
        for app_id in sorted(apps_now - apps_before):
            await audit.record(
                "app.registered", actor=actor, target=app_id, ip=ip, details={"routeId": route_id}
            )
        for app_id in sorted(apps_before - apps_now):
            await audit.record(
                "app.deleted", actor=actor, target=app_id, ip=ip, details={"routeId": route_id}
            )

    async def delete_route(self, route_id: str) -> bool:
        async with self._lock:
            entry = self.routes.get(route_id)
            if entry is None:
                return False
            app_id = entry.spec.app_id
            orphan = self._orphaned(app_id, leaving=route_id)
            async with self.db.transaction() as tx:
                await tx.execute(delete(catalog_routes).where(catalog_routes.c.id == route_id))
                if orphan:
                    await self._delete_app_rows(tx, app_id)
            del self.routes[route_id]
            if orphan:
                self._forget_app(app_id)
        self._changed("Route deleted", routeId=route_id)
        return True

    async def _drop_orphan_app(self, app_id: str) -> None:
        if not self._orphaned(app_id, leaving=""):
            return
        async with self.db.transaction() as tx:
            await self._delete_app_rows(tx, app_id)
        self._forget_app(app_id)

    async def register(
        self, app: dict[str, Any], route: dict[str, Any], *, actor: str = "system", ip: str = ""
    ) -> None:
        """Upsert an app and its route (discovery approval, toolbox); raises CatalogError on conflict.

        Audited as `app.registered` and `route.created` / `route.updated` (actor defaults to `system`)."""
        app_spec = AppSpec.model_validate(app)
        route_data = dict(route)
        route_data.setdefault("appId", app_spec.id)
        route_spec = RouteSpec.model_validate(route_data)
        async with self._lock:
            self._check_conflicts(route_spec)
            existing = self.apps.get(app_spec.id)
            route_existing = self.routes.get(route_spec.route_id)
            async with self.db.transaction() as tx:
                app_entry = await self._write_app(tx, app_spec, existing.source if existing else "discovery")
                route_entry = await self._write_route(
                    tx, route_spec, route_existing.source if route_existing else "discovery"
                )
            self.apps[app_spec.id] = app_entry
            self.routes[route_spec.route_id] = route_entry
        self._changed("Route registered", routeId=route_spec.route_id)
        audit = self.audit
        if audit is not None:
            await audit.record(
                "app.registered",
                actor=actor,
                target=app_spec.id,
                ip=ip,
                details={"name": app_spec.name, "routeId": route_spec.route_id, "new": existing is None},
            )
            await audit.record(
                "route.updated" if route_existing is not None else "route.created",
                actor=actor,
                target=route_spec.route_id,
                ip=ip,
                details={"pathBase": route_spec.path_base, "appId": app_spec.id, "to": route_spec.to},
            )

    async def set_route_target(self, route_id: str, to: str) -> None:
        entry = self.routes.get(route_id)
        if entry is None:
            raise CatalogError(404, "ROUTE_NOT_FOUND", f"route {route_id!r} not found")
        spec = RouteSpec.model_validate({**entry.spec.storage(), "to": to})
        async with self._lock:
            await self._save_route(spec, entry.source)
        self._changed("Route target changed", routeId=route_id)
        audit = self.audit
        if audit is not None:
            await audit.record(
                "route.updated",
                actor="system",
                target=route_id,
                details={"to": to, "previous": entry.spec.to, "reason": "target changed"},
            )

    # ---- health ----------------------------------------------------------------------------------

    def set_health(self, app_id: str, state: HealthState, *, announce_from: str | None) -> None:
        """Record a check result; publish `health_change` when the status changed."""
        self.health[app_id] = state
        self.metrics.service_health_status.labels(app_id).set(
            {"healthy": 1, "unhealthy": 2}.get(state.status, 0)
        )
        if announce_from is not None and announce_from != state.status:
            route = self.route_for_app(app_id)
            app = self.apps.get(app_id)
            message = state.message
            if state.status == "healthy":
                message = "Service recovered"
            self.bus.emit(
                EventType.HEALTH_CHANGE,
                {
                    "appId": app_id,
                    "appName": app.spec.name if app else app_id,
                    "proxyPath": route.path_base if route else "",
                    "status": state.status,
                    "previousStatus": announce_from,
                    "message": message,
                    "timestamp": rfc3339_or_none(time.time()),
                },
            )
        self._health_dirty.add(app_id)
        if self._health_flush is None or self._health_flush.done():
            self._health_flush = self.spawn(self._flush_health_later(), "catalog-health-save")

    async def _flush_health_later(self) -> None:
        await asyncio.sleep(HEALTH_WRITE_DELAY)
        await self.flush_health()

    async def flush_health(self) -> None:
        """Write every pending health result in one statement (also called at shutdown)."""
        pending, self._health_dirty = self._health_dirty, set()
        items = [(a, self.health[a]) for a in sorted(pending) if a in self.apps and a in self.health]
        if not items or not self.db.ready:
            return
        add = sqlite_insert(catalog_service_health)
        await self.db.execute(
            add.on_conflict_do_update(
                index_elements=["app_id"], set_={name: add.excluded[name] for name in HEALTH_FIELDS}
            ),
            [{"app_id": app_id, **{n: getattr(state, n) for n in HEALTH_FIELDS}} for app_id, state in items],
        )

    def mark_unhealthy(self, app_id: str, message: str) -> None:
        previous = self.health.get(app_id)
        state = HealthState(
            status="unhealthy",
            message=message,
            last_check=time.time(),
            last_success=previous.last_success if previous else None,
            consecutive_failures=(previous.consecutive_failures if previous else 0) + 1,
        )
        self.set_health(app_id, state, announce_from=previous.status if previous else "unknown")

    def is_unhealthy(self, app_id: str) -> bool:
        state = self.health.get(app_id)
        return state is not None and state.status == "unhealthy"
