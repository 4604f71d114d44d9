"""mDNS (DNS-SD) discovery and Nekzus' own `_nekzus._tcp` advertisement, with python-zeroconf.

Browsing is event-driven: zeroconf reports a service as it is announced, we resolve it (SRV, TXT,
addresses) and submit a proposal within seconds; a goodbye packet or an expired record withdraws it.
Every `discovery.mdns.scan_interval` the browsers are rebuilt (a full re-browse, which re-queries the
network) and known services that no longer resolve are withdrawn.

Web service types (`_http._tcp`, `_https._tcp`, `_homeassistant._tcp`, `_hap._tcp`) are proposed; other
configured types only when their TXT says `nekzus_enable=true`. TXT keys understood: `app_id`,
`app_name`, `path`, `icon`, `tags`, `scopes`, `scheme`, `nekzus_enable`. TXT content is untrusted: keys
and values are decoded leniently, malformed ones ignored, and a record that cannot be understood is
skipped without disturbing the worker.

`discovery.mdns.interfaces` (addresses; empty = all interfaces) limits where Nekzus browses and
advertises. The advertisement carries `nexusId`, `baseUrl` and the API path in TXT so the phone app
can find this Nekzus on the LAN.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from nekzus.discovery.labels import _APP_ID, _PATH, DEFAULT_ICON, sanitize
from nekzus.discovery.models import PortOption, Proposal, Source, SuggestedApp, SuggestedRoute

log = logging.getLogger("nekzus.discovery.mdns")

SOURCE = Source.MDNS
WEB_TYPES = {"_http._tcp", "_https._tcp", "_homeassistant._tcp", "_hap._tcp"}
NEKZUS_TYPE = "_nekzus._tcp.local."
RESOLVE_TIMEOUT_MS = 3000
MAX_SERVICES = 2000  # bound on remembered services (a hostile LAN cannot grow memory without limit)
MAX_TXT_VALUE = 512

Submit = Callable[[Proposal], Awaitable[Any]]
Withdraw = Callable[[list[str]], Awaitable[Any]]


def _fqdn_type(kind: str) -> str:
    kind = kind.strip().rstrip(".")
    return kind if kind.endswith(".local") else f"{kind}.local"


def decode_txt(properties: Any) -> dict[str, str]:
    """TXT properties as a clean str->str map: lower-case keys, bounded values, garbage dropped."""
    out: dict[str, str] = {}
    if not isinstance(properties, dict):
        return out
    for key, value in properties.items():
        try:
            k = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
            if value is None:
                v = ""
            elif isinstance(value, bytes):
                v = value.decode("utf-8", "replace")
            else:
                v = str(value)
        except Exception:  # noqa: S112 - a single unreadable pair never spoils the record
            continue
        k = k.strip().lower()
        if not k or len(k) > 64 or not k.isprintable():
            continue
        v = "".join(ch for ch in v if ch.isprintable())[:MAX_TXT_VALUE].strip()
        out[k] = v
    return out


def _host_for(address: str) -> str:
    try:
        return f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
    except ValueError:
        return address


def build_proposal(
    service_type: str, name: str, addresses: list[str], port: int, server: str, txt: dict[str, str]
) -> Proposal | None:
    """The proposal for one resolved service, or None when it should not be proposed."""
    short_type = service_type.removesuffix(".").removesuffix(".local")
    enable = txt.get("nekzus_enable", "").lower()
    if enable in ("false", "0", "no", "off"):
        return None
    explicit = enable in ("true", "1", "yes", "on")
    if short_type not in WEB_TYPES and not explicit:
        return None
    if not addresses or not 0 < port < 65536:
        return None
    warnings: list[str] = []
    scheme = txt.get("scheme", "").lower()
    if scheme not in ("http", "https"):
        if scheme:
            warnings.append(f"ignored malformed TXT scheme={scheme!r}")
        scheme = "https" if (short_type == "_https._tcp" or port in (443, 8443)) else "http"
    instance = name.removesuffix(".").removesuffix("." + service_type.removesuffix(".")).strip() or name
    app_id = sanitize(instance)[:64].strip("_") or "mdns_service"
    has_id = False
    raw_id = txt.get("app_id", "")
    if raw_id:
        if _APP_ID.fullmatch(raw_id):
            app_id, has_id = raw_id, True
        else:
            warnings.append(f"ignored malformed TXT app_id={raw_id!r}")
    app_name = txt.get("app_name") or instance
    path_base = f"/apps/{app_id}/"
    raw_path = txt.get("path", "")
    if raw_path:
        if _PATH.fullmatch(raw_path) and ".." not in raw_path and "//" not in raw_path:
            path_base = raw_path if raw_path.endswith("/") else raw_path + "/"
        else:
            warnings.append(f"ignored malformed TXT path={raw_path!r}")
    tags = [t.strip() for t in txt.get("tags", "").split(",") if t.strip()][:20] or ["mdns"]
    scopes = [s.strip() for s in txt.get("scopes", "").split(",") if s.strip()][:20]
    if not scopes and has_id:
        scopes = [f"access:{app_id}"]
    # Prefer IPv4 (routable from a typical home LAN), else the first address.
    addresses = sorted(addresses, key=lambda a: (":" in a, a))
    host = _host_for(addresses[0])
    target = f"{scheme}://{host}:{port}"
    endpoints = {"lan": target}
    if server:
        endpoints["mdns"] = f"{scheme}://{server.rstrip('.')}:{port}"
    confidence = 0.95 if explicit else (0.85 if has_id else 0.7)
    notes = ["Discovered via mDNS", "JWT required", "Announced on the local network (unauthenticated)"]
    if scheme == "http":
        notes.append("Upstream uses HTTP (unencrypted)")
    return Proposal(
        id=f"proposal_mdns_{scheme}_{sanitize(instance)[:80]}_{port}",
        source=Source.MDNS,
        scheme=scheme,
        host=addresses[0],
        port=port,
        confidence=confidence,
        app=SuggestedApp(
            id=app_id,
            name=app_name,
            icon=txt.get("icon") or DEFAULT_ICON,
            tags=tuple(tags),
            endpoints=endpoints,
            details={
                "source": Source.MDNS.value,
                "serviceType": short_type,
                "instance": instance,
                "server": server,
            },
        ),
        route=SuggestedRoute(
            route_id=f"route_{app_id}", path_base=path_base, target=target, scopes=tuple(scopes)
        ),
        ports=(PortOption(port=port, scheme=scheme, label=short_type),),
        notes=tuple(notes),
        warnings=tuple(warnings),
    )


@dataclass(frozen=True, slots=True)
class Advertisement:
    """What Nekzus announces about itself as `_nekzus._tcp` (read when the worker starts)."""

    nexus_id: str
    base_url: str
    port: int
    version: str = ""


class MdnsWorker:
    """Browses the configured service types and keeps one proposal per announced instance."""

    name = SOURCE

    def __init__(
        self,
        *,
        submit: Submit,
        withdraw: Withdraw,
        service_types: list[str],
        interfaces: list[str],
        scan_interval: float,
        advertise: Callable[[], Advertisement] | None = None,
    ) -> None:
        self.submit, self.withdraw = submit, withdraw
        self.types = sorted({_fqdn_type(t) + "." for t in service_types if t.strip()})
        self.interfaces = [i for i in interfaces if i]
        self.scan_interval = max(float(scan_interval), 5.0)
        self.advertise = advertise
        self.healthy = False
        self.last_error = ""
        self.known: dict[tuple[str, str], str] = {}  # (type, name) -> proposal id
        self._pending: asyncio.Queue[tuple[str, str, bool]] = asyncio.Queue(maxsize=1000)
        self._azc: Any = None
        self._browser: Any = None
        self._kick = asyncio.Event()
        self.advertised: Any = None

    def kick(self) -> None:
        self.known.clear()
        self._kick.set()

    def _zeroconf_args(self) -> dict[str, Any]:
        from zeroconf import InterfaceChoice, IPVersion

        if not self.interfaces:
            return {"interfaces": InterfaceChoice.All}
        v6 = any(":" in i for i in self.interfaces)
        v4 = any(":" not in i for i in self.interfaces)
        version = IPVersion.All if (v4 and v6) else (IPVersion.V6Only if v6 else IPVersion.V4Only)
        return {"interfaces": list(self.interfaces), "ip_version": version}

    async def run(self) -> None:
        from zeroconf.asyncio import AsyncZeroconf

        try:
            self._azc = AsyncZeroconf(**self._zeroconf_args())
        except Exception as exc:
            self.last_error = f"mDNS unavailable: {exc}"
            log.warning("mDNS discovery disabled: %s", exc)
            return
        self.healthy = True
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._resolve_loop())
                group.create_task(self._browse_loop())
                if self.advertise is not None:
                    group.create_task(self._advertise())
        finally:
            await self._shutdown()

    async def _shutdown(self) -> None:
        azc, self._azc = self._azc, None
        if azc is None:
            return
        with contextlib.suppress(Exception):
            if self._browser is not None:
                await self._browser.async_cancel()
        with contextlib.suppress(Exception):
            if self.advertised is not None:
                await azc.async_unregister_service(self.advertised)
        with contextlib.suppress(Exception):
            await azc.async_close()

    # -- browsing ------------------------------------------------------------------------------------

    def _on_change(self, zeroconf: Any, service_type: str, name: str, state_change: Any) -> None:
        from zeroconf import ServiceStateChange

        removed = state_change is ServiceStateChange.Removed
        with contextlib.suppress(asyncio.QueueFull):  # a flood of announcements is shed, not queued
            self._pending.put_nowait((service_type, name, removed))

    async def _browse_loop(self) -> None:
        from zeroconf.asyncio import AsyncServiceBrowser

        while True:
            if self._browser is not None:
                with contextlib.suppress(Exception):
                    await self._browser.async_cancel()
            self._browser = AsyncServiceBrowser(self._azc.zeroconf, self.types, handlers=[self._on_change])
            # A full re-browse also re-checks what we know: whatever no longer resolves goes.
            for service_type, name in list(self.known):
                with contextlib.suppress(asyncio.QueueFull):
                    self._pending.put_nowait((service_type, name, False))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self.scan_interval)
            self._kick.clear()

    async def _resolve_loop(self) -> None:
        while True:
            service_type, name, removed = await self._pending.get()
            try:
                await self._handle(service_type, name, removed)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("mDNS service %r could not be handled", name, exc_info=True)

    async def _handle(self, service_type: str, name: str, removed: bool) -> None:
        from zeroconf.asyncio import AsyncServiceInfo

        key = (service_type, name)
        if removed:
            await self._drop(key)
            return
        info = AsyncServiceInfo(service_type, name)
        found = await info.async_request(self._azc.zeroconf, RESOLVE_TIMEOUT_MS)
        if not found or not info.port:
            await self._drop(key)
            return
        addresses = [str(a) for a in info.parsed_scoped_addresses()]
        proposal = build_proposal(
            service_type, name, addresses, int(info.port), str(info.server or ""), decode_txt(info.properties)
        )
        if proposal is None:
            await self._drop(key)
            return
        old = self.known.get(key)
        if old is None and len(self.known) >= MAX_SERVICES:
            log.warning("mDNS: more than %d services announced; ignoring %r", MAX_SERVICES, name)
            return
        if old is not None and old != proposal.id:
            await self.withdraw([old])
        self.known[key] = proposal.id
        await self.submit(proposal)

    async def _drop(self, key: tuple[str, str]) -> None:
        pid = self.known.pop(key, None)
        if pid is not None:
            await self.withdraw([pid])

    # -- advertising ---------------------------------------------------------------------------------

    async def _advertise(self) -> None:
        from zeroconf.asyncio import AsyncServiceInfo

        assert self.advertise is not None
        details = self.advertise()
        addresses = self.interfaces or local_addresses()
        packed = []
        for address in addresses:
            with contextlib.suppress(ValueError):
                packed.append(ipaddress.ip_address(address).packed)
        if not packed:
            log.warning("mDNS: no address to advertise Nekzus on")
            return
        host = socket.gethostname().split(".")[0] or "nekzus"
        info = AsyncServiceInfo(
            NEKZUS_TYPE,
            f"Nekzus {details.nexus_id}.{NEKZUS_TYPE}",
            port=details.port,
            addresses=packed,
            server=f"{host}.local.",
            properties={
                "nexusId": details.nexus_id,
                "baseUrl": details.base_url,
                "api": "/api/v1",
                "version": details.version,
                "tls": "true" if details.base_url.startswith("https") else "false",
            },
        )
        try:
            await self._azc.async_register_service(info, allow_name_change=True)
        except Exception as exc:
            log.warning("mDNS: could not advertise Nekzus: %s", exc)
            return
        self.advertised = info
        log.info("advertising %s on port %s via mDNS", info.name, details.port)
        await asyncio.Event().wait()  # keep the registration until shutdown


def local_addresses() -> list[str]:
    """Non-loopback addresses of this host (what `interfaces: all` advertises)."""
    try:
        import ifaddr
    except ImportError:  # pragma: no cover - zeroconf depends on ifaddr
        return []
    out: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            address = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            with contextlib.suppress(ValueError):
                parsed = ipaddress.ip_address(address)
                if not parsed.is_loopback and not parsed.is_link_local:
                    out.append(str(parsed))
    return out


def port_of(base_url: str, addr: str) -> int:
    """The port the phone app should use: the base URL's, else the listen address's, else the scheme's."""
    parts = urlsplit(base_url)
    if parts.port:
        return parts.port
    _, _, port = addr.rpartition(":")
    if port.isdigit():
        return int(port)
    return 443 if parts.scheme == "https" else 80
