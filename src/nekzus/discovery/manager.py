"""The discovery manager (`services.domains.discovery`): one place that decides what a worker's
proposal becomes — ignored (dismissed), a route reconcile (app already routed), an update of a
pending proposal, or a new proposal published as a `discovery` event. Proposals and dismissals are
persisted, so a dismissal survives restarts until `rediscover`.

Auto-approval: a new proposal whose confidence (in percent) reaches the threshold is approved at once,
through the very path of a manual approval (route, audit entry, events), with the rule named as the actor
and in the audit details. The threshold comes from a value set at run time (stored in `discovery_settings`,
so it survives restarts) or, while none is set, from the config key `discovery.auto_approve_confidence`;
0 means off, the default.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import delete, select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from nekzus.discovery.models import (
    PortOption,
    Proposal,
    Source,
    dismissals_table,
    proposals_table,
    settings_table,
)
from nekzus.errors import Invalid, NekzusError
from nekzus.events.bus import EventBus
from nekzus.events.types import EventType
from nekzus.metrics import Metrics
from nekzus.store import Database, upsert

if TYPE_CHECKING:
    from nekzus.auth.activity import ActivityService
    from nekzus.auth.audit import AuditService
    from nekzus.catalog.service import CatalogService
    from nekzus.catalog.spec import RouteSpec
    from nekzus.runtime.manager import RuntimeManager

log = logging.getLogger("nekzus.discovery")


class Worker(Protocol):
    name: Source
    healthy: bool
    last_error: str

    def kick(self) -> None: ...


class DiscoveryError(NekzusError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message, code=code)
        self.status = status


WireOf = Callable[[Proposal], dict[str, Any]]

# The stored run-time setting, and who approves when the rule does (the audit entry's actor).
AUTO_APPROVE_KEY = "auto_approve_confidence"
AUTO_APPROVE_ACTOR = "discovery:auto-approval"


@dataclass(frozen=True, slots=True)
class AutoApproval:
    """The auto-approval threshold in force (percent, 0 = off) and where it comes from: `runtime` (set
    from the dashboard or the API, wins) or `config` (the config key, used while no run-time value is set)."""

    threshold: int
    source: str
    configured: int
    runtime: int | None
    updated_at: datetime | None = None
    updated_by: str = ""


def check_threshold(value: Any) -> int:
    """A threshold is a whole percentage 0-100 (0 turns auto-approval off)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise Invalid(
            "autoApproveConfidence must be an integer from 0 (off) to 100", code="INVALID_THRESHOLD"
        )
    return value


def reaches(confidence: float, threshold: int) -> bool:
    """Whether a proposal's confidence (0-1) reaches a threshold in percent; 0 never does (off)."""
    return threshold > 0 and round(confidence * 100, 6) >= threshold


@dataclass(frozen=True, slots=True)
class Approved:
    """An approved proposal (as registered, i.e. retargeted at the chosen port) and, for a local
    container, how reachable its published ports are (None when there is nothing to check)."""

    proposal: Proposal
    exposure: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Rediscovery:
    dismissed_cleared: int
    active_cleared: int


def _app_spec(proposal: Proposal) -> dict[str, Any]:
    """The catalog app an approval registers (the catalog's own field names)."""
    app = proposal.app
    return {
        "id": app.id,
        "name": app.name,
        "icon": app.icon,
        "tags": list(app.tags),
        "endpoints": dict(app.endpoints),
        "discovery_meta": dict(app.details),
    }


def _route_spec(proposal: Proposal) -> dict[str, Any]:
    """The catalog route an approval registers (the catalog's own field names)."""
    route = proposal.route
    return {
        "route_id": route.route_id,
        "app_id": proposal.app.id,
        "path_base": route.path_base,
        "to": route.target,
        "container_id": proposal.container_id,
        "scopes": list(route.scopes),
        "strip_prefix": route.strip_prefix,
        "rewrite_html": route.rewrite_html,
        "websocket": route.websocket,
        "skip_health_check": route.skip_health_check,
        "public_access": route.public_access,
    }


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
        wire: WireOf,
        runtimes: RuntimeManager | None = None,
        auto_approve_config: Callable[[], int] = lambda: 0,
    ) -> None:
        """`wire` renders a proposal as the API shows it: the payload of `discovery` events;
        `auto_approve_config` reads the configured threshold (read each time: config reloads change it)."""
        self.db = db
        self.bus = bus
        self.metrics = metrics
        self.catalog = catalog
        self.audit = audit
        self.activity = activity
        self.runtimes = runtimes
        self.wire = wire
        self.auto_approve_config = auto_approve_config
        self.pending: dict[str, Proposal] = {}
        self.dismissed: set[str] = set()
        self.workers: list[Worker] = []
        self._lock = asyncio.Lock()

    # -- storage ---------------------------------------------------------------------------------

    async def load(self) -> None:
        async with self.db.transaction() as tx:
            rows = await tx.rows(select(proposals_table.c.id, proposals_table.c.data))
            dismissed = await tx.scalars(select(dismissals_table.c.id))
        self.pending = {}
        for row in rows:
            try:
                self.pending[row.id] = Proposal.from_record(row.data)
            except (KeyError, TypeError, ValueError):
                log.warning("dropping unreadable stored proposal %s", row.id)
        self.dismissed = set(dismissed)
        self._gauge()

    async def _save(self, proposal: Proposal) -> None:
        """Insert or refresh a pending proposal (its `created_at` stays the first sighting's)."""
        columns = {
            "source": proposal.source.value,
            "app_id": proposal.app.id,
            "container_id": proposal.container_id,
            "confidence": proposal.confidence,
            "data": proposal.record(),
            "last_seen": datetime.fromtimestamp(proposal.last_seen, UTC),
        }
        first = {"created_at": datetime.now(UTC)}
        await self.db.execute(upsert(proposals_table, {"id": proposal.id}, columns, first=first))

    async def _delete(self, ids: list[str]) -> None:
        if not ids:
            return
        await self.db.execute(delete(proposals_table).where(proposals_table.c.id.in_(ids)))

    async def _dismiss(self, proposal_id: str, reason: str) -> None:
        """Remember a dismissal; the first reason recorded for an id is kept."""
        self.dismissed.add(proposal_id)
        insert = sqlite_insert(dismissals_table).values(
            id=proposal_id, reason=reason, created_at=datetime.now(UTC)
        )
        await self.db.execute(insert.on_conflict_do_nothing(index_elements=["id"]))

    def _gauge(self) -> None:
        self.metrics.discovery_proposals_pending.set(len(self.pending))

    # -- what workers call -----------------------------------------------------------------------

    async def submit(self, proposal: Proposal) -> str:
        """Process one proposal; returns what happened (ignored/reconciled/updated/new)."""
        source = proposal.source.value
        async with self._lock:
            pid = proposal.id
            if pid in self.dismissed:
                return "ignored"
            app_id = proposal.app.id
            if app_id:
                route = self.catalog.route_for_app(app_id)
                if route is not None:
                    await self._reconcile(route, proposal)
                    if pid in self.pending:
                        self.pending.pop(pid)
                        await self._delete([pid])
                        self._gauge()
                    return "reconciled"
            existing = self.pending.get(pid)
            if existing is not None:
                changed = existing.material() != proposal.material()
                self.pending[pid] = proposal
                await self._save(proposal)
                if changed:
                    self.bus.emit(EventType.DISCOVERY, self.wire(proposal))
                    self.metrics.discovery_proposals_total.labels(source, "updated").inc()
                return "updated"
            self.pending[pid] = proposal
            await self._save(proposal)
            self._gauge()
        self.metrics.discovery_proposals_total.labels(source, "new").inc()
        self.bus.emit(EventType.DISCOVERY, self.wire(proposal))
        log.info("new discovery proposal %s (%s)", proposal.id, proposal.route.target)
        await self._auto_approve(proposal)
        return "new"

    async def _auto_approve(self, proposal: Proposal) -> None:
        """Approve a new proposal when its confidence reaches the threshold in force. New proposals are
        rare, so the threshold is read from storage each time: a change made through any worker process
        applies at once. A failure leaves the proposal pending for a manual decision."""
        try:
            setting = await self.auto_approval()
        except Exception:
            log.warning("could not read the auto-approval threshold", exc_info=True)
            return
        if not reaches(proposal.confidence, setting.threshold):
            return
        rule = {
            "rule": "auto_approve_confidence",
            "threshold": setting.threshold,
            "thresholdSource": setting.source,
            "confidence": round(proposal.confidence * 100, 2),
        }
        try:
            approved = await self.approve(proposal.id, None, AUTO_APPROVE_ACTOR, "", rule=rule)
        except Exception:
            log.warning("auto-approval of %s failed; it stays pending", proposal.id, exc_info=True)
            return
        if approved is not None:
            log.info(
                "auto-approved %s (confidence %s%% >= %s%%)",
                proposal.id,
                rule["confidence"],
                rule["threshold"],
            )

    # -- settings --------------------------------------------------------------------------------

    async def auto_approval(self) -> AutoApproval:
        """The threshold in force: the run-time value when one is stored, else the config key."""
        configured = int(self.auto_approve_config())
        row = await self.db.first(
            select(settings_table.c.value, settings_table.c.updated_at, settings_table.c.updated_by).where(
                settings_table.c.key == AUTO_APPROVE_KEY
            )
        )
        value = row.value if row is not None else None
        if row is None or not isinstance(value, int):
            return AutoApproval(configured, "config", configured, None)
        updated: datetime | None = row.updated_at
        return AutoApproval(value, "runtime", configured, value, updated, str(row.updated_by))

    async def set_auto_approval(self, threshold: int | None, actor: str, ip: str) -> AutoApproval:
        """Store a run-time threshold (0-100, 0 = off) that wins over the config key; None removes it, so
        the config key applies again. Proposals already pending are left alone: only new ones count."""
        value = None if threshold is None else check_threshold(threshold)
        before = await self.auto_approval()
        if value is None:
            await self.db.execute(delete(settings_table).where(settings_table.c.key == AUTO_APPROVE_KEY))
        else:
            columns = {"value": value, "updated_at": datetime.now(UTC), "updated_by": actor}
            await self.db.execute(upsert(settings_table, {"key": AUTO_APPROVE_KEY}, columns))
        after = await self.auto_approval()
        await self._audit(
            "discovery.settings.updated",
            actor,
            AUTO_APPROVE_KEY,
            ip,
            {"before": before.threshold, "after": after.threshold, "source": after.source},
        )
        self.bus.emit(EventType.DISCOVERY_SETTINGS, {"autoApproveConfidence": after.threshold})
        return after

    async def forget_container(self, container_id: str) -> int:
        """Drop pending proposals of a container that stopped or vanished."""
        short = container_id[:12]
        async with self._lock:
            ids = [pid for pid, p in self.pending.items() if short and p.container_id == short]
            for pid in ids:
                self.pending.pop(pid, None)
            await self._delete(ids)
            self._gauge()
        return len(ids)

    async def prune(self, source: Source, live_containers: set[str]) -> int:
        """After a full scan: drop proposals of `source` whose container is no longer running."""
        shorts = {c[:12] for c in live_containers}
        async with self._lock:
            ids = [
                pid for pid, p in self.pending.items() if p.source == source and p.container_id not in shorts
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

    async def retain(self, source: Source, live_ids: set[str]) -> int:
        """After a source's first full view: drop its proposals that are not in `live_ids`."""
        stale = [pid for pid, p in self.pending.items() if p.source == source and pid not in live_ids]
        return await self.withdraw(stale)

    async def _reconcile(self, route: RouteSpec, proposal: Proposal) -> None:
        """Follow a known container to its new address; never touch manual routes."""
        owner = route.container_id
        if not owner or not proposal.container_id or owner[:12] != proposal.container_id[:12]:
            return
        current = urlsplit(route.to)
        host = proposal.host
        if not current.scheme or not host:
            return
        port: int | None
        if proposal.published:
            if current.hostname == host and current.port in {p.port for p in proposal.ports}:
                return
            port = proposal.port or current.port
        else:
            if current.hostname == host:
                return
            port = current.port or proposal.port or None
        netloc = f"{host}:{port}" if port else host
        target = urlunsplit((current.scheme, netloc, current.path, current.query, current.fragment))
        if target == route.to:
            return
        try:
            await self.catalog.set_route_target(route.route_id, target)
            log.info("reconciled route %s: %s -> %s", route.route_id, route.to, target)
        except Exception:
            log.warning("route reconcile of %s failed", route.route_id, exc_info=True)

    # -- what the API calls ----------------------------------------------------------------------

    async def list(self) -> list[Proposal]:
        """Pending proposals, most recently seen first."""
        return sorted(self.pending.values(), key=lambda p: (p.last_seen, p.id), reverse=True)

    async def count_pending(self) -> int:
        return len(self.pending)

    async def approve(
        self,
        proposal_id: str,
        port: int | None,
        actor: str,
        ip: str,
        *,
        rule: dict[str, Any] | None = None,
    ) -> Approved | None:
        """Register the proposal's app and route (retargeted at `port`, one of its ports, when given);
        None when it is no longer pending. `rule` names the rule that approved it (auto-approval)."""
        async with self._lock:
            proposal = self.pending.get(proposal_id)
            if proposal is None:
                return None
            if port is not None:
                chosen = _port_option(proposal, port)
                if chosen is None:
                    raise DiscoveryError(
                        400, "INVALID_PORT", f"port {port} is not in the available ports list"
                    )
                proposal = proposal.with_port(chosen)
            try:
                await self.catalog.register(_app_spec(proposal), _route_spec(proposal), actor=actor, ip=ip)
            except NekzusError as exc:
                if exc.status < 500:
                    raise
                log.warning("registering %s failed", proposal_id, exc_info=True)
                raise DiscoveryError(500, "APP_REGISTRATION_FAILED", "Could not register the app") from None
            except Exception:
                log.warning("registering %s failed", proposal_id, exc_info=True)
                raise DiscoveryError(500, "APP_REGISTRATION_FAILED", "Could not register the app") from None
            self.pending.pop(proposal_id, None)
            await self._delete([proposal_id])
            await self._dismiss(proposal_id, "approved")
            self._gauge()
        self.metrics.discovery_proposals_total.labels(proposal.source.value, "approved").inc()
        app, route = proposal.app, proposal.route
        registered: dict[str, Any] = {
            "appId": app.id,
            "appName": app.name,
            "proxyPath": route.path_base,
            "proposalId": proposal_id,
        }
        if rule is not None:
            registered["autoApproved"] = True
        self.bus.emit(EventType.APP_REGISTERED, registered)
        verb = "Auto-approved" if rule is not None else "Registered"
        await self._activity(
            "app_registered", f"{verb}: {app.name or app.id}", icon="CheckCircle2", icon_class="success"
        )
        details: dict[str, Any] = {"appId": app.id, "routeId": route.route_id}
        if rule is not None:
            details.update(rule)
        await self._audit("proposal.approved", actor, proposal_id, ip, details)
        exposure = await self._exposure(proposal) if proposal.container_id else None
        return Approved(proposal, exposure)

    async def dismiss(self, proposal_id: str, actor: str, ip: str) -> bool:
        """Dismiss a pending proposal (it stays ignored until `rediscover`); False when not pending."""
        async with self._lock:
            if proposal_id not in self.pending:
                return False
            self.pending.pop(proposal_id)
            await self._delete([proposal_id])
            await self._dismiss(proposal_id, "dismissed")
            self._gauge()
        self.metrics.discovery_proposals_total.labels("any", "dismissed").inc()
        self.bus.emit(EventType.PROPOSAL_DISMISSED, {"proposalId": proposal_id})
        await self._activity("proposal_dismissed", f"Proposal dismissed: {proposal_id}", icon="X")
        await self._audit("proposal.dismissed", actor, proposal_id, ip, None)
        return True

    async def rediscover(self, actor: str, ip: str) -> Rediscovery:
        """Forget every dismissal and pending proposal, then let every worker scan again."""
        async with self._lock:
            dismissed, active = len(self.dismissed), len(self.pending)
            self.dismissed.clear()
            self.pending.clear()
            async with self.db.transaction() as tx:
                await tx.execute(delete(dismissals_table))
                await tx.execute(delete(proposals_table))
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
        return Rediscovery(dismissed, active)

    # -- side effects ------------------------------------------------------------------------------

    async def _exposure(self, proposal: Proposal) -> dict[str, Any] | None:
        """How reachable the approved container's published ports are (warns when beyond loopback)."""
        from nekzus.discovery.exposure import check

        manager = self.runtimes
        docker = manager.docker if manager is not None else None
        if docker is None:
            return None
        try:
            info = await docker.inspect(proposal.container_id)
        except Exception:
            return None
        app = proposal.app
        report = check(info, app.id, app.name)
        if report["riskLevel"] != "none":
            self.bus.emit(EventType.PORT_EXPOSURE_WARNING, report)
            critical = report["riskLevel"] == "critical"
            await self._activity(
                "security_warning",
                f"Security: {app.name or app.id} - {report['summary']}",
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


def _port_option(proposal: Proposal, port: int) -> PortOption | None:
    return next((p for p in proposal.ports if p.port == port), None)
