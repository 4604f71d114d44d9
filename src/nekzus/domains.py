"""The typed container of every domain service of one running Nekzus.

Built by the composition root (`nekzus.compose.build_domains`) in dependency order and read by the
routers through `services.domains.<name>`: each attribute has its real type, so mypy checks every call
between the HTTP layer and a domain. Features added later that are not core attributes register their
service under a typed `Key[T]` (the idea of Home Assistant's `HassKey`):

    TOOLBOX: Key[ToolboxService] = Key("toolbox")
    services.domains.features.provide(TOOLBOX, service)      # in the feature's install()
    services.domains.features.require(TOOLBOX)               # typed ToolboxService, or a loud error
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

if TYPE_CHECKING:
    from nekzus.auth.activity import ActivityService
    from nekzus.auth.audit import AuditService
    from nekzus.auth.enrollment import DeviceEnrollment
    from nekzus.auth.service import AuthService
    from nekzus.catalog.favicons import FaviconFetcher
    from nekzus.catalog.health import ServiceHealthChecker
    from nekzus.catalog.service import CatalogService
    from nekzus.discovery.manager import DiscoveryManager
    from nekzus.events.hub import Hub
    from nekzus.events.notifications import NotificationQueue
    from nekzus.proxy.app import ProxyApp
    from nekzus.proxy.cookies import SessionCookieStore
    from nekzus.reloader import ConfigReloader
    from nekzus.runtime.manager import RuntimeManager
    from nekzus.runtime.operations import ContainerService

T = TypeVar("T")


class MissingDependency(RuntimeError):
    """A feature asked for a service nobody built: a wiring mistake, reported at start-up."""


class Key(Generic[T]):
    """A typed name for a feature's service in `FeatureRegistry`."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Key({self.name!r})"


class FeatureRegistry:
    """Services of plug-in features, looked up by typed key; a second provider of a key is an error."""

    def __init__(self) -> None:
        self._items: dict[str, object] = {}

    def provide(self, key: Key[T], value: T) -> T:
        if key.name in self._items:
            raise MissingDependency(f"{key.name!r} is provided twice")
        self._items[key.name] = value
        return value

    def get(self, key: Key[T]) -> T | None:
        return cast("T | None", self._items.get(key.name))

    def require(self, key: Key[T]) -> T:
        if key.name not in self._items:
            raise MissingDependency(f"{key.name!r} is required but no feature provides it (install order?)")
        return cast(T, self._items[key.name])

    def __contains__(self, key: Key[Any]) -> bool:
        return key.name in self._items


@dataclass(slots=True)
class Domains:
    """Core domain services; the optional ones are None when their feature is switched off."""

    auth: AuthService
    audit: AuditService
    activity: ActivityService
    hub: Hub
    notifications: NotificationQueue
    catalog: CatalogService
    catalog_health: ServiceHealthChecker
    session_cookies: SessionCookieStore
    favicons: FaviconFetcher
    proxy: ProxyApp
    enrollment: DeviceEnrollment
    runtime: RuntimeManager | None = None
    containers: ContainerService | None = None
    discovery: DiscoveryManager | None = None
    reloader: ConfigReloader | None = None
    features: FeatureRegistry = field(default_factory=FeatureRegistry)
