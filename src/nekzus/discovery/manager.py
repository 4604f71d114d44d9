"""The discovery manager (`services.domains.discovery`): one place that decides what a worker's
proposal becomes — ignored (dismissed), a route reconcile (app already routed), an update of a
pending proposal, or a new proposal published as a `discovery` event. Proposals and dismissals are
persisted, so a dismissal survives restarts until `rediscover`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import delete, select

from nekzus.discovery.models import DismissalRow, ProposalRow
from nekzus.errors import NekzusError
from nekzus.events.bus import EventBus
from nekzus.events.types import EventType
from nekzus.metrics import Metrics
from nekzus.store import Database

if TYPE_CHECKING:
    from nekzus.auth.activity import ActivityService
    from nekzus.auth.audit import AuditService
    from nekzus.catalog.service import CatalogService
    from nekzus.runtime.manager import RuntimeManager

log = logging.getLogger("nekzus.discovery")


class Worker(Protocol):
    name: str
    healthy: bool
    last_error: str

    def kick(self) -> None: ...


class DiscoveryError(NekzusError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message, code=code)
        self.status = status


def _material(proposal: dict[str, Any]) -> tuple[Any, ...]:
    """What makes a changed proposal worth re-announcing (not lastSeen)."""
    return (
        proposal.get("detectedHost"),
        proposal.get("detectedPort"),
        proposal.get("detectedScheme"),
        tuple((p.get("port"), p.get("scheme")) for p in proposal.get("availablePorts") or []),
        proposal.get("confidence"),
        (proposal.get("suggestedApp") or {}).get("id"),
    )


def container_of(proposal: dict[str, Any]) -> str:
    return str(((proposal.get("suggestedApp") or {}).get("discoveryMeta") or {}).get("containerId") or "")


class DiscoveryManager:
    def __init__(
        self,
        *,
        db: Database,
        bus: EventBus,
        metrics: Metrics,
        catalog: CatalogService,
        audit: AuditService,
        activity: ActivityService,
        runtimes: RuntimeManager | None = None,
    ) -> None:
        self.db = db
        self.bus = bus
        self.metrics = metrics
        self.catalog = catalog
        self.audit = audit
        self.activity = activity
        self.runtimes = runtimes
        self.pending: dict[str, dict[str, Any]] = {}
        self.dismissed: set[str] = set()
        self.workers: list[Worker] = []
        self._lock = asyncio.Lock()

    # -- storage ---------------------------------------------------------------------------------

    async def load(self) -> None:
        async with self.db.session() as session:
            rows = (await session.scalars(select(ProposalRow))).all()
            self.pending = {row.id: dict(row.data) for row in rows}
            self.dismissed = set((await session.scalars(select(DismissalRow.id))).all())
        self._gauge()

    async def _save(self, proposal: dict[str, Any]) -> None:
        now = datetime.now(UTC)
        async with self.db.session() as session:
            row = await session.get(ProposalRow, proposal["id"])
            if row is None:
                row = ProposalRow(id=proposal["id"], created_at=now)
                session.add(row)
            row.source = str(proposal.get("source", ""))
            row.app_id = str((proposal.get("suggestedApp") or {}).get("id", ""))
            row.container_id = container_of(proposal)
            row.confidence = float(proposal.get("confidence") or 0.0)
            row.data = proposal
            row.last_seen = now

    async def _delete(self, ids: list[str]) -> None:
        if not ids:
            return
        async with self.db.session() as session:
            await session.execute(delete(ProposalRow).where(ProposalRow.id.in_(ids)))

    async def _dismiss(self, proposal_id: str, reason: str) -> None:
        self.dismissed.add(proposal_id)
        async with self.db.session() as session:
            if await session.get(DismissalRow, proposal_id) is None:
                session.add(DismissalRow(id=proposal_id, reason=reason, created_at=datetime.now(UTC)))

    def _gauge(self) -> None:
        self.metrics.discovery_proposals_pending.set(len(self.pending))

    # -- what workers call -----------------------------------------------------------------------

    async def submit(self, proposal: dict[str, Any]) -> str:
        """Process one proposal; returns what happened (ignored/reconciled/updated/new)."""
        source = str(proposal.get("source", "unknown"))
        async with self._lock:
            pid = proposal["id"]
            if pid in self.dismissed:
                return "ignored"
            app_id = str((proposal.get("suggestedApp") or {}).get("id", ""))
            catalog = self.catalog
            if app_id:
                route = None
                try:
                    route = await catalog.get_route_by_app(app_id)
                except Exception:
                    log.warning("catalog lookup for %s failed", app_id, exc_info=True)
                if route:
                    await self._reconcile(catalog, route, proposal)
                    if pid in self.pending:
                        self.pending.pop(pid)
                        await self._delete([pid])
                        self._gauge()
                    return "reconciled"
            existing = self.pending.get(pid)
            if existing is not None:
                changed = _material(existing) != _material(proposal)
                self.pending[pid] = proposal
                await self._save(proposal)
                if changed:
                    self.bus.emit(EventType.DISCOVERY, copy.deepcopy(proposal))
                    self.metrics.discovery_proposals_total.labels(source, "updated").inc()
                return "updated"
            self.pending[pid] = proposal
            await self._save(proposal)
            self._gauge()
        self.metrics.discovery_proposals_total.labels(source, "new").inc()
        self.bus.emit(EventType.DISCOVERY, copy.deepcopy(proposal))
        log.info(
            "new discovery proposal %s (%s)", proposal["id"], proposal.get("suggestedRoute", {}).get("to")
        )
        return "new"

    async def forget_container(self, container_id: str) -> int:
        """Drop pending proposals of a container that stopped or vanished."""
        short = container_id[:12]
        async with self._lock:
            ids = [pid for pid, p in self.pending.items() if short and container_of(p) == short]
            for pid in ids:
                self.pending.pop(pid, None)
            await self._delete(ids)
            self._gauge()
        return len(ids)

    async def prune(self, source: str, live_containers: set[str]) -> int:
        """After a full scan: drop proposals of `source` whose container is no longer running."""
        shorts = {c[:12] for c in live_containers}
        async with self._lock:
            ids = [
                pid
                for pid, p in self.pending.items()
                if p.get("source") == source and container_of(p) not in shorts
            ]
            for pid in ids:
                self.pending.pop(pid, None)
            await self._delete(ids)
            self._gauge()
        return len(ids)

    async def withdraw(self, proposal_ids: list[str]) -> int:
        """Drop pending proposals whose object went away (a deleted Service, an mDNS goodbye)."""
        async with self._lock:
            ids = [pid for pid in proposal_ids if pid in self.pending]
            for pid in ids:
                self.pending.pop(pid, None)
            await self._delete(ids)
            self._gauge()
        for pid in ids:
            self.bus.emit(EventType.PROPOSAL_WITHDRAWN, {"proposalId": pid})
        return len(ids)

    async def retain(self, source: str, live_ids: set[str]) -> int:
        """After a source's first full view: drop its proposals that are not in `live_ids`."""
        stale = [pid for pid, p in self.pending.items() if p.get("source") == source and pid not in live_ids]
        return await self.withdraw(stale)

    async def _reconcile(self, catalog: Any, route: dict[str, Any], proposal: dict[str, Any]) -> None:
        """Follow a known container to its new address; never touch manual routes."""
        suggested = proposal.get("suggestedRoute") or {}
        owner = str(route.get("containerId") or "")
        if not owner or not suggested.get("containerId") or owner[:12] != str(suggested["containerId"])[:12]:
            return
        current = urlsplit(str(route.get("to") or ""))
        host = str(proposal.get("detectedHost") or "")
        if not current.scheme or not host:
            return
        published = ((proposal.get("suggestedApp") or {}).get("discoveryMeta") or {}).get(
            "networkMode"
        ) == "published"
        port: int | None
        if published:
            ports = {p.get("port") for p in proposal.get("availablePorts") or []}
            if current.hostname == host and current.port in ports:
                return
            port = int(proposal.get("detectedPort") or 0) or current.port
        else:
            if current.hostname == host:
                return
            port = current.port or (int(proposal.get("detectedPort") or 0) or None)
        netloc = f"{host}:{port}" if port else host
        target = urlunsplit((current.scheme, netloc, current.path, current.query, current.fragment))
        if target == route.get("to"):
            return
        try:
            await catalog.set_route_target(route["routeId"], target)
            log.info("reconciled route %s: %s -> %s", route["routeId"], route.get("to"), target)
        except Exception:
            log.warning("route reconcile of %s failed", route.get("routeId"), exc_info=True)

    # -- what the API calls ----------------------------------------------------------------------

    async def list(self) -> list[dict[str, Any]]:
        items = [copy.deepcopy(p) for p in self.pending.values()]
        items.sort(key=lambda p: (p.get("lastSeen", ""), p["id"]), reverse=True)
        return items

    async def count_pending(self) -> int:
        return len(self.pending)

    async def approve(self, proposal_id: str, port: Any, actor: str, ip: str) -> dict[str, Any]:
        from nekzus.discovery.labels import retarget

        async with self._lock:
            proposal = self.pending.get(proposal_id)
            if proposal is None:
                return _already(proposal_id)
            if port is not None:
                if isinstance(port, bool) or not isinstance(port, int):
                    raise DiscoveryError(400, "INVALID_PORT", "port must be an integer")
                if port not in {p.get("port") for p in proposal.get("availablePorts") or []}:
                    raise DiscoveryError(
                        400, "INVALID_PORT", f"port {port} is not in the available ports list"
                    )
                proposal = retarget(proposal, port)
            catalog = self.catalog
            app = copy.deepcopy(proposal["suggestedApp"])
            route = copy.deepcopy(proposal["suggestedRoute"])
            try:
                await catalog.register(app, route, actor=actor, ip=ip)
            except Exception as exc:
                status = getattr(exc, "status", None)
                if isinstance(status, int) and 400 <= status < 500:
                    raise DiscoveryError(
                        status, getattr(exc, "code", "CONFLICT"), str(getattr(exc, "message", exc))
                    ) from None
                log.warning("registering %s failed", proposal_id, exc_info=True)
                raise DiscoveryError(500, "APP_REGISTRATION_FAILED", "Could not register the app") from None
            self.pending.pop(proposal_id, None)
            await self._delete([proposal_id])
            await self._dismiss(proposal_id, "approved")
            self._gauge()
        self.metrics.discovery_proposals_total.labels(str(proposal.get("source")), "approved").inc()
        proxy_path = route.get("pathBase", f"/apps/{app['id']}/")
        self.bus.emit(
            EventType.APP_REGISTERED,
            {
                "appId": app["id"],
                "appName": app.get("name", ""),
                "proxyPath": proxy_path,
                "proposalId": proposal_id,
            },
        )
        await self._activity(
            "app_registered",
            f"Registered: {app.get('name', app['id'])}",
            icon="CheckCircle2",
            icon_class="success",
        )
        await self._audit(
            "proposal.approved", actor, proposal_id, ip, {"appId": app["id"], "routeId": route.get("routeId")}
        )
        result: dict[str, Any] = {"status": "approved", "id": proposal_id, "app": app, "route": route}
        if proposal.get("source") == "docker":
            exposure = await self._exposure(proposal, app)
            if exposure is not None:
                result["portExposure"] = exposure
        return result

    async def dismiss(self, proposal_id: str, actor: str, ip: str) -> dict[str, Any]:
        async with self._lock:
            if proposal_id not in self.pending:
                return _already(proposal_id)
            self.pending.pop(proposal_id)
            await self._delete([proposal_id])
            await self._dismiss(proposal_id, "dismissed")
            self._gauge()
        self.metrics.discovery_proposals_total.labels("any", "dismissed").inc()
        self.bus.emit(EventType.PROPOSAL_DISMISSED, {"proposalId": proposal_id})
        await self._activity("proposal_dismissed", f"Proposal dismissed: {proposal_id}", icon="X")
        await self._audit("proposal.dismissed", actor, proposal_id, ip, None)
        return {"status": "dismissed", "id": proposal_id}

    async def rediscover(self, actor: str, ip: str) -> dict[str, Any]:
        async with self._lock:
            dismissed, active = len(self.dismissed), len(self.pending)
            self.dismissed.clear()
            self.pending.clear()
            async with self.db.session() as session:
                await session.execute(delete(DismissalRow))
                await session.execute(delete(ProposalRow))
            self._gauge()
        self.bus.emit(
            EventType.REDISCOVERY_TRIGGERED, {"dismissedCleared": dismissed, "activeCleared": active}
        )
        await self._activity(
            "rediscovery_triggered",
            f"Discovery scan triggered (cleared {dismissed} dismissed, {active} active proposals)",
            icon="RefreshCw",
        )
        await self._audit(
            "discovery.rediscover", actor, "", ip, {"dismissedCleared": dismissed, "activeCleared": active}
        )
        for worker in self.workers:
            worker.kick()
        return {
            "status": "success",
            "message": "Rediscovery triggered. Discovery workers will scan for new services.",
            "dismissedCleared": dismissed,
            "activeCleared": active,
        }

    # -- side effects ------------------------------------------------------------------------------

    async def _exposure(self, proposal: dict[str, Any], app: dict[str, Any]) -> dict[str, Any] | None:
        from nekzus.discovery.exposure import check

        manager = self.runtimes
        docker = manager.docker if manager is not None else None
        cid = container_of(proposal)
        if docker is None or not cid:
            return None
        try:
            info = await docker.inspect(cid)
        except Exception:
            return None
        report = check(info, app["id"], app.get("name", ""))
        if report["riskLevel"] != "none":
            self.bus.emit(EventType.PORT_EXPOSURE_WARNING, report)
            critical = report["riskLevel"] == "critical"
            await self._activity(
                "security_warning",
                f"Security: {app.get('name', app['id'])} - {report['summary']}",
                icon="AlertOctagon" if critical else "AlertTriangle",
                icon_class="error" if critical else "warning",
                details="; ".join(report["recommendations"]),
            )
        return report

    async def _activity(
        self, type_: str, message: str, *, icon: str = "", icon_class: str = "", details: Any = None
    ) -> None:
        activity = self.activity
        with contextlib.suppress(Exception):
            await activity.add(type_, message, icon=icon, icon_class=icon_class, details=details)

    async def _audit(self, action: str, actor: str, target: str, ip: str, details: Any) -> None:
        await self.audit.record(action, actor=actor, target=target, ip=ip, details=details)


def _already(proposal_id: str) -> dict[str, Any]:
    return {
        "status": "already_processed",
        "message": "Proposal has already been processed or does not exist",
        "id": proposal_id,
    }
