"""mDNS peer discovery: announce this instance as `_nekzus-peer._tcp` and dial the peers it finds.

Restricted to the interfaces in `discovery.mdns.interfaces` (all interfaces when empty). Finding a peer only
adds an address to dial: joining still requires the authenticated hello, so a spoofed announcement gains
nothing but a refused handshake.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("nekzus.federation.mdns")

SERVICE_TYPE = "_nekzus-peer._tcp.local."


class PeerDiscovery:
    def __init__(
        self,
        *,
        interfaces: list[str],
        peer_id: str,
        peer_name: str,
        gossip_port: int,
        api_address: str,
        advertise: list[str],
        on_found: Callable[[str], None],
        spawn: Callable[[Awaitable[Any], str], Any],
    ) -> None:
        self.interfaces = [i for i in interfaces if i]
        self.peer_id = peer_id
        self.peer_name = peer_name
        self.gossip_port = gossip_port
        self.api_address = api_address
        self.advertise = advertise
        self.on_found = on_found
        self.spawn = spawn
        self._zc: Any = None
        self._browser: Any = None
        self._info: Any = None

    async def start(self) -> None:
        from zeroconf import InterfaceChoice, IPVersion
        from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

        self._zc = AsyncZeroconf(
            interfaces=self.interfaces or InterfaceChoice.All, ip_version=IPVersion.V4Only
        )
        addresses = [socket.inet_aton(a) for a in self.advertise if _is_v4(a)]
        self._info = AsyncServiceInfo(
            SERVICE_TYPE,
            f"{self.peer_id}.{SERVICE_TYPE}",
            addresses=addresses,
            port=self.gossip_port,
            properties={
                "peer_id": self.peer_id,
                "peer_name": self.peer_name,
                "gossip_port": str(self.gossip_port),
                "api_address": self.api_address,
            },
            server=f"{self.peer_id.replace('_', '-')}.local.",
        )
        await self._zc.async_register_service(self._info)
        self._browser = AsyncServiceBrowser(self._zc.zeroconf, SERVICE_TYPE, handlers=[self._changed])
        log.info("federation mDNS announcing %s on %s", SERVICE_TYPE, self.interfaces or "all interfaces")

    def _changed(self, zeroconf: Any, service_type: str, name: str, state_change: Any) -> None:
        from zeroconf import ServiceStateChange

        if state_change in (ServiceStateChange.Added, ServiceStateChange.Updated):
            self.spawn(self._resolve(service_type, name), "federation-mdns-resolve")

    async def _resolve(self, service_type: str, name: str) -> None:
        from zeroconf import IPVersion
        from zeroconf.asyncio import AsyncServiceInfo

        info = AsyncServiceInfo(service_type, name)
        if not await info.async_request(self._zc.zeroconf, 3000):
            return
        props = info.decoded_properties
        if props.get("peer_id") == self.peer_id or not info.port:
            return
        allowed = {a for a in self.interfaces if _is_v4(a)}
        for addr in info.parsed_addresses(IPVersion.V4Only):
            if allowed and not _same_net(addr, allowed):
                continue
            self.on_found(f"{addr}:{info.port}")

    async def stop(self) -> None:
        if self._browser is not None:
            await self._browser.async_cancel()
        if self._zc is not None:
            if self._info is not None:
                await self._zc.async_unregister_service(self._info)
            await self._zc.async_close()


def _is_v4(value: str) -> bool:
    try:
        return ipaddress.ip_address(value).version == 4
    except ValueError:
        return False


def _same_net(addr: str, interfaces: set[str]) -> bool:
    """Only dial addresses on the networks we were told to use (loopback stays loopback)."""
    ip = ipaddress.ip_address(addr)
    if ip.is_loopback:
        return any(ipaddress.ip_address(i).is_loopback for i in interfaces)
    return any(not ipaddress.ip_address(i).is_loopback for i in interfaces)
