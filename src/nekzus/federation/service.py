"""Federation membership and catalog replication.

Every instance listens on `gossip_port` (TLS, instance certificate) for a small signed-HTTP protocol:

  POST /federation/v1/hello      join: both sides prove the cluster secret; the caller pins the certificate
  POST /federation/v1/heartbeat  liveness (both directions), carries the sender's view of the membership
  POST /federation/v1/sync       state-vector exchange: answers with what the caller is missing
  POST /federation/v1/update     pushes a Yjs update (a local change, or the second half of a sync)
  *    /federation/v1/route/...  remote routes (see `remote.py`)

Only `hello` is accepted from an unknown sender; everything else needs a peer that joined (and was not
removed since). A peer not heard from for `peer_timeout` is `offline`; a peer that answers but fails
authentication or presents a different certificate than the pinned one is `unreachable`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy import Row, delete, select

from nekzus.config.model import FederationConfig
from nekzus.errors import Forbidden, NotFound
from nekzus.events import EventBus
from nekzus.federation import crypto
from nekzus.federation.document import CatalogDocument, split_key
from nekzus.federation.models import federation_documents, federation_peers
from nekzus.store import Database, upsert

log = logging.getLogger("nekzus.federation")


class FederationEvent(StrEnum):
    """Federation's events on the bus (and the WebSocket message `type` clients receive)."""

    PEER_JOINED = "peer_joined"
    PEER_LEFT = "peer_left"
    PEER_ONLINE = "peer_online"
    PEER_OFFLINE = "peer_offline"
    SERVICE_ADDED = "federation_service_added"
    SERVICE_REMOVED = "federation_service_removed"


ONLINE = "online"
OFFLINE = "offline"
UNREACHABLE = "unreachable"

PREFIX = "/federation/v1"
LOCAL_NAME = "Nekzus Instance"
REQUEST_TIMEOUT = 10.0
MAX_MESSAGE = 64 * 1024 * 1024
EMPTY_UPDATE_LEN = 2  # a Yjs update with no structs and no deletions
CATALOG_DOCUMENT = "catalog"  # the stored snapshot's name in federation_documents


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _dt(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, UTC) if ts is not None else None


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(value: Any) -> bytes:
    if not isinstance(value, str):
        return b""
    try:
        return base64.b64decode(value.encode(), validate=True)
    except ValueError:
        return b""


def split_hostport(addr: str) -> tuple[str, int]:
    host, _, port = addr.strip().rpartition(":")
    return host.strip("[]"), int(port)


class FederationMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        ns = "nekzus"
        self.peers_active = Gauge("federation_peers_active", "Peers online", namespace=ns, registry=registry)
        self.services_total = Gauge(
            "federation_services_total", "Replicated apps", ("origin",), namespace=ns, registry=registry
        )
        self.sync_total = Counter(
            "federation_sync_total", "Catalog syncs", ("type",), namespace=ns, registry=registry
        )
        self.sync_errors_total = Counter(
            "federation_sync_errors_total",
            "Failed catalog syncs",
            ("type", "reason"),
            namespace=ns,
            registry=registry,
        )
        self.sync_duration_seconds = Histogram(
            "federation_sync_duration_seconds", "Catalog sync duration", namespace=ns, registry=registry
        )
        self.messages_sent_total = Counter(
            "federation_messages_sent_total",
            "Federation messages sent",
            ("type",),
            namespace=ns,
            registry=registry,
        )
        self.messages_received_total = Counter(
            "federation_messages_received_total",
            "Federation messages received",
            ("type",),
            namespace=ns,
            registry=registry,
        )
        self.auth_failures_total = Counter(
            "federation_auth_failures_total",
            "Refused federation messages",
            ("reason",),
            namespace=ns,
            registry=registry,
        )


@dataclass
class Peer:
    id: str
    name: str = ""
    address: str = ""
    gossip_addr: str = ""
    fingerprint: str = ""
    status: str = OFFLINE
    last_seen: float | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: Row[Any]) -> Peer:
        """A stored peer, `offline` until it is heard from again."""
        return cls(
            id=row.id,
            name=row.name,
            address=row.address,
            gossip_addr=row.gossip_addr,
            fingerprint=row.fingerprint,
            status=OFFLINE,
            last_seen=_ts(row.last_seen),
            created_at=_ts(row.created_at) or time.time(),
            updated_at=_ts(row.updated_at) or time.time(),
            meta=dict(row.meta or {}),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "address": self.address,
            "gossip_addr": self.gossip_addr,
            "status": self.status,
            "last_seen": _iso(self.last_seen),
            "metadata": dict(self.meta),
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }


class PeerError(Exception):
    """A peer could not be reached (`offline`) or did not authenticate (`unreachable`)."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


Audit = Callable[..., Awaitable[None]]
Spawn = Callable[[Awaitable[Any], str], Any]
LocalApps = Callable[[], dict[str, dict[str, Any]]]


class FederationService:
    def __init__(
        self,
        config: FederationConfig,
        *,
        db: Database,
        bus: EventBus,
        registry: CollectorRegistry,
        spawn: Spawn,
        local_apps: LocalApps,
        audit: Audit | None,
        listen_host: str,
        api_address: str,
        cert_paths: tuple[Path, Path],
        peer_timeout: float,
    ) -> None:
        self.config = config
        self.db = db
        self.bus = bus
        self.metrics = FederationMetrics(registry)
        self.spawn = spawn
        self.local_apps = local_apps
        self.audit = audit
        self.listen_host = listen_host
        self.api_address = api_address
        self.cert_paths = cert_paths
        self.peer_timeout = peer_timeout
        self.key = crypto.derive_key(config.cluster_secret)
        self.verifier = crypto.Verifier(self.key)
        self.doc = CatalogDocument()
        self.peer_id = ""
        self.name = LOCAL_NAME
        self.peers: dict[str, Peer] = {}
        self.removed: set[str] = set()
        # Addresses to dial (bootstrap, mDNS, gossip) -> the peer id found there, once known.
        self.targets: dict[str, str | None] = {}
        self.running = False
        self._remote_view: dict[str, dict[str, Any]] = {}
        self._dirty = asyncio.Event()
        self._persist_pending = False
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._audit_times: dict[tuple[str, str], float] = {}
        self.route_handler: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None
        self.on_catalog_change: list[Callable[[], None]] = []

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self, peer_id: str) -> None:
        self.peer_id = peer_id
        await self._load()
        for addr in self.config.bootstrap_peers:
            self.targets.setdefault(addr.strip(), None)
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=REQUEST_TIMEOUT),
            connector=aiohttp.TCPConnector(limit=0, enable_cleanup_closed=True),
            auto_decompress=False,
        )
        await self._serve()
        self.running = True
        self._refresh_view(announce=False)
        self.spawn(self._publisher(), "federation-publish")
        self.spawn(self._membership_loop(), "federation-membership")
        self.spawn(
            self._periodic(self.config.sync.anti_entropy_period, "anti_entropy"), "federation-anti-entropy"
        )
        self.spawn(self._periodic(self.config.sync.full_sync_interval, "periodic"), "federation-full-sync")
        self.catalog_changed()

    async def stop(self) -> None:
        self.running = False
        if self._persist_pending:
            await self._persist_now()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _serve(self) -> None:
        app = web.Application(client_max_size=MAX_MESSAGE)
        app.router.add_post(PREFIX + "/hello", self._h_hello)
        app.router.add_post(PREFIX + "/heartbeat", self._h_heartbeat)
        app.router.add_post(PREFIX + "/sync", self._h_sync)
        app.router.add_post(PREFIX + "/update", self._h_update)
        app.router.add_route("*", PREFIX + "/route/{tail:.*}", self._h_route)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.cert_paths[0]), str(self.cert_paths[1]))
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.listen_host or None, self.config.gossip_port, ssl_context=ctx)
        await site.start()
        log.info("federation listening on port %d as %s", self.config.gossip_port, self.peer_id)

    # -- persistence --------------------------------------------------------------------------------

    async def _load(self) -> None:
        peers, docs = federation_peers, federation_documents
        async with self.db.transaction() as tx:
            rows = await tx.rows(select(peers))
            data = await tx.scalar(select(docs.c.data).where(docs.c.name == CATALOG_DOCUMENT))
        for row in rows:
            self.peers[row.id] = Peer.from_row(row)
            if row.gossip_addr:
                self.targets[row.gossip_addr] = row.id
        if data is not None:
            try:
                self.doc.apply(data)
            except Exception:
                log.warning("stored federation catalog unreadable; starting empty")

    async def _save_peer(self, peer: Peer) -> None:
        peers = federation_peers
        values = {
            "name": peer.name,
            "address": peer.address,
            "gossip_addr": peer.gossip_addr,
            "fingerprint": peer.fingerprint,
            "status": peer.status,
            "meta": dict(peer.meta),
            "last_seen": _dt(peer.last_seen),
            "updated_at": _dt(peer.updated_at),
        }
        # created_at is written once, by the first save; later saves leave it alone.
        first = {"created_at": _dt(peer.created_at)}
        await self.db.execute(upsert(peers, {"id": peer.id}, values, first=first))

    def _persist_soon(self) -> None:
        if self._persist_pending:
            return
        self._persist_pending = True

        async def later() -> None:
            await asyncio.sleep(0.5)
            await self._persist_now()

        self.spawn(later(), "federation-persist")

    async def _persist_now(self) -> None:
        self._persist_pending = False
        values = {"data": self.doc.snapshot(), "updated_at": datetime.now(UTC)}
        await self.db.execute(upsert(federation_documents, {"name": CATALOG_DOCUMENT}, values))

    # -- local catalog -> document ------------------------------------------------------------------

    def catalog_changed(self) -> None:
        """Called by the local catalog on every change; publishing happens in the background."""
        self._dirty.set()

    async def _publisher(self) -> None:
        while self.running:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self._publish_local()
            except Exception:
                log.exception("publishing the local catalog failed")
            # Coalesce bursts (a bulk import is one publish every few hundred ms, not one per app).
            await asyncio.sleep(0.1)

    async def _publish_local(self) -> None:
        before = self.doc.state_vector()
        if not self.doc.publish(self.peer_id, self.local_apps()):
            return
        update = self.doc.missing_for(before)
        self._count_services()
        self._persist_soon()
        await asyncio.gather(*(self._push(p, update) for p in self.online_peers()))

    async def _push(self, peer: Peer, update: bytes) -> None:
        try:
            await self._call(peer.gossip_addr, "update", {"update": _b64(update)}, peer.fingerprint, peer.id)
        except PeerError as exc:
            self.metrics.sync_errors_total.labels("push", exc.reason).inc()

    # -- document -> local view ---------------------------------------------------------------------

    def _apply_remote(self, update: bytes) -> None:
        if len(update) <= EMPTY_UPDATE_LEN:
            return
        self.doc.apply(update)
        self._refresh_view(announce=True)
        self._persist_soon()

    def _refresh_view(self, *, announce: bool) -> None:
        view: dict[str, dict[str, Any]] = {}
        for key, value in self.doc.entries().items():
            origin, app_id = split_key(key)
            if origin == self.peer_id or not app_id:
                continue
            view[key] = value
        old = self._remote_view
        self._remote_view = view
        self._count_services()
        if announce:
            for key in view.keys() - old.keys():
                self.bus.emit(FederationEvent.SERVICE_ADDED, self._event_data(key, view[key]))
            for key in old.keys() - view.keys():
                self.bus.emit(FederationEvent.SERVICE_REMOVED, self._event_data(key, old[key]))
            for key in view.keys() & old.keys():
                if view[key] != old[key]:
                    self.bus.emit(FederationEvent.SERVICE_ADDED, self._event_data(key, view[key]))
        if view != old:
            for callback in self.on_catalog_change:
                callback()

    def _event_data(self, key: str, value: dict[str, Any]) -> dict[str, Any]:
        origin, app_id = split_key(key)
        return {"serviceId": app_id, "originPeerId": origin, "app": value.get("app", {})}

    def _count_services(self) -> None:
        entries = self.doc.entries()
        local = sum(1 for k in entries if split_key(k)[0] == self.peer_id)
        self.metrics.services_total.labels("local").set(local)
        self.metrics.services_total.labels("remote").set(len(entries) - local)

    def remote_entries(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(origin peer id, app id, description) of every visible remote app, in a stable order."""
        out = []
        for key in sorted(self._remote_view):
            origin, app_id = split_key(key)
            if origin in self.removed:
                continue
            out.append((origin, app_id, self._remote_view[key]))
        return out

    def remote_apps(self, local_ids: set[str], base_url: str) -> list[dict[str, Any]]:
        """Remote apps in the API's app shape, tagged `federated`, with their origin."""
        out: list[dict[str, Any]] = []
        seen = set(local_ids)
        for origin, app_id, value in self.remote_entries():
            if app_id in seen:
                continue
            seen.add(app_id)
            raw_app = value.get("app")
            app: dict[str, Any] = raw_app if isinstance(raw_app, dict) else {}
            tags = [t for t in app.get("tags") or [] if isinstance(t, str)]
            if "federated" not in tags:
                tags.append("federated")
            item: dict[str, Any] = {
                "id": app_id,
                "name": str(app.get("name") or app_id),
                "icon": str(app.get("icon") or ""),
                "tags": tags,
                "endpoints": app.get("endpoints") if isinstance(app.get("endpoints"), dict) else {},
                "faviconURL": f"/api/v1/apps/{app_id}/favicon",
                "healthStatus": str(app.get("healthStatus") or "unknown"),
                "origin": {"peerId": origin, "peerName": self.peer_name(origin)},
            }
            route = value.get("route")
            if (
                self.config.allow_remote_routes
                and isinstance(route, dict)
                and isinstance(route.get("pathBase"), str)
            ):
                item["proxyPath"] = route["pathBase"]
                item["url"] = base_url.rstrip("/") + route["pathBase"]
            out.append(item)
        return out

    def peer_name(self, peer_id: str) -> str:
        peer = self.peers.get(peer_id)
        return peer.name if peer is not None else ""

    # -- membership ---------------------------------------------------------------------------------

    def online_peers(self) -> list[Peer]:
        return [p for p in self.peers.values() if p.status == ONLINE]

    def list_peers(self) -> list[Peer]:
        return sorted(self.peers.values(), key=lambda p: (p.name, p.id))

    def get_peer(self, peer_id: str) -> Peer:
        peer = self.peers.get(peer_id)
        if peer is None:
            raise NotFound("Peer not found", code="PEER_NOT_FOUND")
        return peer

    async def remove_peer(self, peer_id: str) -> None:
        """Forget a peer and its pinned certificate; it comes back only through a new authenticated hello."""
        peer = self.get_peer(peer_id)
        del self.peers[peer_id]
        self.removed.add(peer_id)
        for addr, known in list(self.targets.items()):
            if known == peer_id:
                self.targets[addr] = None
        await self.db.execute(delete(federation_peers).where(federation_peers.c.id == peer_id))
        self._update_active()
        self.bus.emit(FederationEvent.PEER_LEFT, {"peer_id": peer_id, "name": peer.name})
        for callback in self.on_catalog_change:
            callback()

    def status(self) -> dict[str, Any]:
        counts: dict[str, int] = {ONLINE: 0, OFFLINE: 0, UNREACHABLE: 0}
        for peer in self.peers.values():
            counts[peer.status] = counts.get(peer.status, 0) + 1
        entries = self.doc.entries()
        local = sum(1 for k in entries if split_key(k)[0] == self.peer_id)
        return {
            "enabled": True,
            "local_peer_id": self.peer_id,
            "local_peer_name": self.name,
            "peer_count": len(self.peers),
            "peers_by_status": counts,
            "running": self.running,
            "gossip_port": self.config.gossip_port,
            "services": {"local": local, "remote": len(self.remote_entries())},
        }

    def add_target(self, addr: str) -> None:
        """A place a peer may listen (from mDNS or another peer's view)."""
        if addr and addr not in self.targets:
            self.targets[addr] = None

    def _update_active(self) -> None:
        self.metrics.peers_active.set(len(self.online_peers()))

    async def _seen(
        self,
        peer_id: str,
        *,
        name: str,
        address: str,
        gossip_addr: str,
        fingerprint: str | None,
        meta: dict[str, Any],
    ) -> Peer:
        """Record that an authenticated peer was heard from."""
        now = time.time()
        self.removed.discard(peer_id)
        peer = self.peers.get(peer_id)
        joined = peer is None
        if peer is None:
            peer = Peer(id=peer_id, created_at=now)
            self.peers[peer_id] = peer
        was = peer.status
        changed = joined or was != ONLINE
        if name and name != peer.name:
            peer.name, changed = name, True
        if address and address != peer.address:
            peer.address, changed = address, True
        if gossip_addr and gossip_addr != peer.gossip_addr:
            peer.gossip_addr, changed = gossip_addr, True
        if fingerprint and fingerprint != peer.fingerprint:
            peer.fingerprint, changed = fingerprint, True
        if meta and meta != peer.meta:
            peer.meta, changed = dict(meta), True
        peer.status = ONLINE
        peer.last_seen = now
        if peer.gossip_addr:
            self.targets[peer.gossip_addr] = peer_id
        if changed:
            peer.updated_at = now
            await self._save_peer(peer)
        self._update_active()
        data = {"peer_id": peer_id, "name": peer.name, "address": peer.address}
        if joined:
            self.bus.emit(FederationEvent.PEER_JOINED, data)
        if was != ONLINE:
            self.bus.emit(FederationEvent.PEER_ONLINE, data)
            if peer.fingerprint:
                # Back from a partition or a restart: exchange everything missed (anti-entropy).
                self.spawn(self.sync_with(peer, "rejoin"), "federation-sync")
        return peer

    async def _mark(self, peer: Peer, status: str) -> None:
        if peer.status == status:
            return
        was = peer.status
        peer.status = status
        peer.updated_at = time.time()
        await self._save_peer(peer)
        self._update_active()
        if was == ONLINE:
            data = {"peer_id": peer.id, "name": peer.name, "status": status}
            self.bus.emit(FederationEvent.PEER_OFFLINE, data)

    async def _membership_loop(self) -> None:
        # Checked at least twice per timeout so a silent peer turns offline within 1.5 x peer_timeout.
        tick = max(0.2, min(self.peer_timeout / 3.0, 10.0))
        while self.running:
            try:
                await self._round()
            except Exception:
                log.exception("federation membership round failed")
            await asyncio.sleep(tick)

    async def _round(self) -> None:
        jobs: list[Awaitable[Any]] = []
        for addr, known in list(self.targets.items()):
            if known is None or known not in self.peers or not self.peers[known].fingerprint:
                jobs.append(self._join(addr))
        for peer in list(self.peers.values()):
            jobs.append(self._heartbeat(peer))
        await asyncio.gather(*jobs, return_exceptions=True)
        now = time.time()
        for peer in list(self.peers.values()):
            if peer.status == ONLINE and (peer.last_seen is None or now - peer.last_seen > self.peer_timeout):
                await self._mark(peer, OFFLINE)

    def _hello_body(self) -> dict[str, Any]:
        return {
            "peer_id": self.peer_id,
            "name": self.name,
            "gossip_port": self.config.gossip_port,
            "api_address": self.api_address,
            "peers": self._view(),
        }

    def _view(self) -> list[dict[str, str]]:
        return [{"id": p.id, "gossip_addr": p.gossip_addr} for p in self.online_peers() if p.gossip_addr]

    def _learn(self, view: Any) -> None:
        if not isinstance(view, list):
            return
        for item in view[:256]:
            if not isinstance(item, dict):
                continue
            pid, addr = item.get("id"), item.get("gossip_addr")
            if not (isinstance(addr, str) and isinstance(pid, str)) or pid == self.peer_id:
                continue
            if pid not in self.peers and pid not in self.removed:
                self.add_target(addr)

    async def _join(self, addr: str) -> None:
        try:
            host, port = split_hostport(addr)
        except ValueError:
            return
        try:
            fingerprint = await fetch_fingerprint(host, port)
            reply, responder = await self._call(addr, "hello", self._hello_body(), fingerprint, None)
        except PeerError as exc:
            known = self.targets.get(addr)
            if known and known in self.peers and exc.status == UNREACHABLE:
                await self._mark(self.peers[known], UNREACHABLE)
            return
        if responder == self.peer_id:
            self.targets.pop(addr, None)
            return
        pinned = self.peers.get(responder)
        if pinned is not None and pinned.fingerprint and pinned.fingerprint != fingerprint:
            await self._refused(addr, responder, "pin_mismatch", "/hello")
            await self._mark(pinned, UNREACHABLE)
            return
        peer = await self._seen(
            responder,
            name=str(reply.get("name") or ""),
            address=host,
            gossip_addr=addr,
            fingerprint=fingerprint,
            meta={"api_address": str(reply.get("api_address") or "")},
        )
        self._learn(reply.get("peers"))
        self.spawn(self.sync_with(peer, "join"), "federation-sync")

    async def _heartbeat(self, peer: Peer) -> None:
        if not peer.gossip_addr or not peer.fingerprint:
            return
        try:
            reply, _ = await self._call(
                peer.gossip_addr, "heartbeat", {"peers": self._view()}, peer.fingerprint, peer.id
            )
        except PeerError as exc:
            if exc.status == UNREACHABLE:
                await self._mark(peer, UNREACHABLE)
            return
        await self._seen(peer.id, name="", address="", gossip_addr="", fingerprint=None, meta={})
        self._learn(reply.get("peers"))

    # -- sync ---------------------------------------------------------------------------------------

    async def _periodic(self, period: float, kind: str) -> None:
        while self.running:
            await asyncio.sleep(period)
            await self.sync_all(kind, full=kind == "periodic")

    async def sync_all(self, kind: str = "manual", *, full: bool = False) -> dict[str, Any]:
        peers = self.online_peers()
        results = await asyncio.gather(*(self.sync_with(p, kind, full=full) for p in peers))
        return {"peers": len(peers), "succeeded": sum(1 for ok in results if ok)}

    async def sync_with(self, peer: Peer, kind: str, *, full: bool = False) -> bool:
        """Two-way state-vector exchange: pull what we lack, then push what the peer lacks.

        A full sync ignores state vectors and exchanges whole documents (applying known parts is a no-op).
        """
        started = time.perf_counter()
        try:
            mine = b"" if full else self.doc.state_vector()
            reply, _ = await self._call(
                peer.gossip_addr, "sync", {"sv": _b64(mine)}, peer.fingerprint, peer.id
            )
            self._apply_remote(_unb64(reply.get("update")))
            their_sv = _unb64(reply.get("sv"))
            missing = self.doc.snapshot() if full else self.doc.missing_for(their_sv)
            if len(missing) > EMPTY_UPDATE_LEN:
                await self._call(
                    peer.gossip_addr, "update", {"update": _b64(missing)}, peer.fingerprint, peer.id
                )
        except PeerError as exc:
            self.metrics.sync_errors_total.labels(kind, exc.reason).inc()
            return False
        except Exception:
            log.exception("sync with %s failed", peer.id)
            self.metrics.sync_errors_total.labels(kind, "error").inc()
            return False
        self.metrics.sync_total.labels(kind).inc()
        self.metrics.sync_duration_seconds.observe(time.perf_counter() - started)
        return True

    # -- client -------------------------------------------------------------------------------------

    def sign(self, method: str, path: str, digest: str) -> dict[str, str]:
        return crypto.sign_request(self.key, peer_id=self.peer_id, method=method, path=path, digest=digest)

    def ssl_for(self, fingerprint: str) -> aiohttp.Fingerprint:
        return aiohttp.Fingerprint(bytes.fromhex(fingerprint))

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None
        return self._session

    async def _call(
        self, addr: str, kind: str, payload: dict[str, Any], fingerprint: str, expect: str | None
    ) -> tuple[dict[str, Any], str]:
        """POST one signed message over TLS to the pinned certificate; returns the verified reply."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        path = f"{PREFIX}/{kind}"
        headers = self.sign("POST", path, crypto.body_digest(body))
        headers["Content-Type"] = "application/json"
        try:
            host, port = split_hostport(addr)
            url = f"https://{_url_host(host)}:{port}{path}"
            async with self.session.post(
                url,
                data=body,
                headers=headers,
                ssl=self.ssl_for(fingerprint),
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
            ) as resp:
                data = await resp.read()
                responder = resp.headers.get(crypto.H_PEER, "")
                signature = resp.headers.get(crypto.H_REPLY, "")
                status = resp.status
        except aiohttp.ServerFingerprintMismatch:
            raise PeerError(UNREACHABLE, "pin_mismatch") from None
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
            raise PeerError(OFFLINE, "connect") from None
        self.metrics.messages_sent_total.labels(kind).inc()
        if status in (401, 403):
            raise PeerError(UNREACHABLE, "refused")
        if status != 200:
            raise PeerError(OFFLINE, f"http_{status}")
        if not crypto.verify_reply(
            self.key, nonce=headers[crypto.H_NONCE], responder=responder, body=data, signature=signature
        ):
            await self._refused(addr, responder, "bad_reply_signature", path)
            raise PeerError(UNREACHABLE, "bad_reply")
        if expect is not None and responder != expect:
            raise PeerError(UNREACHABLE, "wrong_peer")
        try:
            reply = json.loads(data)
        except ValueError:
            raise PeerError(UNREACHABLE, "bad_reply") from None
        return (reply if isinstance(reply, dict) else {}), responder

    # -- server -------------------------------------------------------------------------------------

    async def _refused(self, remote: str, claimed: str, reason: str, path: str) -> None:
        """Count and audit a refused message (at most once per source and reason every few seconds)."""
        self.metrics.auth_failures_total.labels(reason).inc()
        log.warning("federation: refused %s from %s (%s)", path, remote, reason)
        if self.audit is None:
            return
        key = (remote, reason)
        now = time.monotonic()
        if now - self._audit_times.get(key, -10.0) < 2.0:
            return
        if len(self._audit_times) > 4096:
            self._audit_times.clear()
        self._audit_times[key] = now
        await self.audit(
            "federation.auth_failed",
            actor=claimed[:64] or "unknown",
            target=path,
            ip=remote,
            details={"reason": reason},
            success=False,
        )

    async def authenticate(self, request: web.Request, digest: str, *, joined: bool = True) -> str:
        """The verified sender of a request; refuses (and audits) anything else."""
        try:
            sender = self.verifier.verify(
                request.headers, method=request.method, path=request.path, digest=digest
            )
        except crypto.AuthFailure as exc:
            await self._refused(
                request.remote or "", request.headers.get(crypto.H_PEER, ""), exc.reason, request.path
            )
            raise
        if joined and (sender not in self.peers or sender in self.removed):
            await self._refused(request.remote or "", sender, "not_joined", request.path)
            raise Forbidden("Peer has not joined", code="PEER_NOT_JOINED")
        return sender

    async def _signed(
        self, request: web.Request, kind: str, *, joined: bool = True
    ) -> tuple[str, dict[str, Any]]:
        body = await request.read()
        sender = await self.authenticate(request, crypto.body_digest(body), joined=joined)
        self.metrics.messages_received_total.labels(kind).inc()
        try:
            payload = json.loads(body)
        except ValueError:
            payload = {}
        return sender, payload if isinstance(payload, dict) else {}

    def _reply(self, request: web.Request, payload: dict[str, Any]) -> web.Response:
        body = json.dumps(payload, separators=(",", ":")).encode()
        signature = crypto.sign_reply(
            self.key, nonce=request.headers.get(crypto.H_NONCE, ""), responder=self.peer_id, body=body
        )
        return web.Response(
            body=body,
            content_type="application/json",
            headers={crypto.H_PEER: self.peer_id, crypto.H_REPLY: signature},
        )

    @staticmethod
    def refusal(exc: Exception) -> web.Response:
        if isinstance(exc, crypto.AuthFailure):
            status, code, message = 401, exc.code, exc.message
        elif isinstance(exc, Forbidden):
            status, code, message = 403, exc.code, exc.message
        else:
            status, code, message = 400, "INVALID_REQUEST", "Invalid federation message"
        return web.json_response({"error": {"code": code, "message": message}}, status=status)

    async def _h_hello(self, request: web.Request) -> web.StreamResponse:
        try:
            sender, payload = await self._signed(request, "hello", joined=False)
        except (crypto.AuthFailure, Forbidden) as exc:
            return self.refusal(exc)
        if sender != self.peer_id:
            remote = request.remote or ""
            try:
                port = int(payload.get("gossip_port") or 0)
            except (TypeError, ValueError):
                port = 0
            gossip = f"{_url_host(remote)}:{port}" if remote and 0 < port < 65536 else ""
            known = self.peers.get(sender)
            await self._seen(
                sender,
                name=str(payload.get("name") or "")[:255],
                address=remote,
                gossip_addr=gossip if not (known and known.gossip_addr) else "",
                fingerprint=None,
                meta={"api_address": str(payload.get("api_address") or "")[:255]},
            )
            if gossip:
                self.add_target(gossip)
            self._learn(payload.get("peers"))
        return self._reply(request, self._hello_body())

    async def _h_heartbeat(self, request: web.Request) -> web.StreamResponse:
        try:
            sender, payload = await self._signed(request, "heartbeat")
        except (crypto.AuthFailure, Forbidden) as exc:
            return self.refusal(exc)
        await self._seen(sender, name="", address="", gossip_addr="", fingerprint=None, meta={})
        self._learn(payload.get("peers"))
        return self._reply(request, {"peers": self._view()})

    async def _h_sync(self, request: web.Request) -> web.StreamResponse:
        try:
            _, payload = await self._signed(request, "sync")
        except (crypto.AuthFailure, Forbidden) as exc:
            return self.refusal(exc)
        try:
            self._apply_remote(_unb64(payload.get("update")))
            sv = _unb64(payload.get("sv"))
            update = self.doc.missing_for(sv) if sv else self.doc.snapshot()
        except Exception:
            return self.refusal(ValueError("malformed"))
        return self._reply(request, {"update": _b64(update), "sv": _b64(self.doc.state_vector())})

    async def _h_update(self, request: web.Request) -> web.StreamResponse:
        try:
            _, payload = await self._signed(request, "update")
        except (crypto.AuthFailure, Forbidden) as exc:
            return self.refusal(exc)
        try:
            self._apply_remote(_unb64(payload.get("update")))
        except Exception:
            return self.refusal(ValueError("malformed"))
        return self._reply(request, {"ok": True})

    async def _h_route(self, request: web.Request) -> web.StreamResponse:
        if self.route_handler is None:
            return web.json_response(
                {"error": {"code": "REMOTE_ROUTES_DISABLED", "message": "Remote routes are disabled"}},
                status=403,
            )
        return await self.route_handler(request)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


async def fetch_fingerprint(host: str, port: int, timeout: float = 5.0) -> str:
    """SHA-256 of the certificate a peer presents (trust on first use; later contacts must match it)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=ctx), timeout)
    except (OSError, TimeoutError, ssl.SSLError):
        raise PeerError(OFFLINE, "connect") from None
    try:
        ssl_obj = writer.get_extra_info("ssl_object")
        der = ssl_obj.getpeercert(binary_form=True) if ssl_obj is not None else None
    finally:
        writer.close()
    if not der:
        raise PeerError(UNREACHABLE, "no_certificate")
    return hashlib.sha256(der).hexdigest()


def iter_addrs(values: Iterable[str]) -> list[str]:
    return [v.strip() for v in values if v and v.strip()]
