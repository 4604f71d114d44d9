"""Discovery's model: the typed, source-agnostic `Proposal` every worker builds, and its tables (pending
proposals, dismissals and run-time settings, all survive restarts). The API's camelCase JSON is built in
`nekzus.api`."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Float, Index, String, Table

from nekzus.store.base import UtcDateTime, metadata, utcnow

# Pending proposals: the typed record (`Proposal.record()`) in `data`, plus the columns looked up by.
proposals_table = Table(
    "discovery_proposals",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("source", String(32), nullable=False),
    Column("app_id", String(128), nullable=False, default="", server_default=""),
    Column("container_id", String(64), nullable=False, default="", server_default=""),
    Column("confidence", Float, nullable=False, default=0.0, server_default="0"),
    Column("data", JSON, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False, default=utcnow),
    Column("last_seen", UtcDateTime(), nullable=False, default=utcnow),
    Index("ix_discovery_proposals_source", "source"),
    Index("ix_discovery_proposals_container_id", "container_id"),
)

# Proposals dismissed or approved: ignored when a worker proposes them again, until `rediscover`.
dismissals_table = Table(
    "discovery_dismissals",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("reason", String(32), nullable=False, default="dismissed", server_default="dismissed"),
    Column("created_at", UtcDateTime(), nullable=False, default=utcnow),
)

# Discovery settings changed at run time (dashboard or API); they win over the config file.
settings_table = Table(
    "discovery_settings",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", JSON, nullable=True),
    Column("updated_at", UtcDateTime(), nullable=False, default=utcnow),
    Column("updated_by", String(255), nullable=False, default="", server_default=""),
)


class Source(StrEnum):
    """Where a proposal came from (also its `source` on the wire and in metrics)."""

    DOCKER = "docker"
    KUBERNETES = "kubernetes"
    MDNS = "mdns"


@dataclass(frozen=True, slots=True)
class PortOption:
    """One port the user may pick when approving (`port` is what the route targets)."""

    port: int
    scheme: str
    label: str
    container_port: int | None = None  # the container's own port when it differs (Docker publishing)


@dataclass(frozen=True, slots=True)
class SuggestedApp:
    """The catalog app an approval creates."""

    id: str
    name: str
    icon: str
    tags: tuple[str, ...]
    endpoints: dict[str, str]
    # Source-specific facts shown to clients and stored with the app (container name, namespace, mDNS
    # instance, ...). The domain never branches on them; the typed fields below carry what it needs.
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SuggestedRoute:
    """The catalog route an approval creates (its app id is the suggested app's)."""

    route_id: str
    path_base: str
    target: str
    scopes: tuple[str, ...] = ()
    strip_prefix: bool = True
    rewrite_html: bool = True
    websocket: bool = False
    skip_health_check: bool = False
    public_access: bool = False


@dataclass(frozen=True, slots=True)
class Proposal:
    """A service a discovery source found and suggests routing, whatever the source.

    `id` is stable for the same object and port (dismissals and updates key on it). `container_id` (short
    Docker id) is set only for proposals backed by a local container: the manager follows that container to
    its new address and drops the proposal when it stops. `published` says the target is a port the
    container publishes on the host (so a new host port, not a new host, means the container moved).
    """

    id: str
    source: Source
    scheme: str
    host: str
    port: int
    confidence: float
    app: SuggestedApp
    route: SuggestedRoute
    ports: tuple[PortOption, ...]
    notes: tuple[str, ...] = ()  # security notes for the person approving
    warnings: tuple[str, ...] = ()  # malformed labels / TXT keys that were ignored
    tags: tuple[str, ...] = ()
    container_id: str = ""
    published: bool = False
    last_seen: float = field(default_factory=time.time)

    def material(self) -> tuple[Any, ...]:
        """What makes a changed proposal worth announcing again (not when it was last seen)."""
        return (
            self.host,
            self.port,
            self.scheme,
            tuple((p.port, p.scheme) for p in self.ports),
            self.confidence,
            self.app.id,
        )

    def fingerprint(self) -> Proposal:
        """The proposal with its timestamp cleared: equal fingerprints mean nothing changed."""
        return replace(self, last_seen=0.0)

    def with_port(self, port: PortOption) -> Proposal:
        """The proposal retargeted at `port` (one of `ports`), e.g. when approving with a chosen port."""
        target = f"{port.scheme}://{self.host}:{port.port}"
        details = dict(self.app.details)
        if port.container_port is not None and "containerPort" in details:
            details["containerPort"] = port.container_port
        app = replace(self.app, endpoints={**self.app.endpoints, "lan": target}, details=details)
        return replace(
            self,
            port=port.port,
            scheme=port.scheme,
            app=app,
            route=replace(self.route, target=target),
        )

    def record(self) -> dict[str, Any]:
        """The JSON stored in `discovery_proposals.data`."""
        return asdict(self)

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> Proposal:
        app = dict(data["app"])
        app["tags"] = tuple(app.get("tags") or ())
        route = dict(data["route"])
        route["scopes"] = tuple(route.get("scopes") or ())
        return cls(
            **{
                **data,
                "source": Source(data["source"]),
                "app": SuggestedApp(**app),
                "route": SuggestedRoute(**route),
                "ports": tuple(PortOption(**p) for p in data.get("ports") or ()),
                "notes": tuple(data.get("notes") or ()),
                "warnings": tuple(data.get("warnings") or ()),
                "tags": tuple(data.get("tags") or ()),
            }
        )
