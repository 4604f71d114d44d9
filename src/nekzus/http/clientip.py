"""Who is really calling: the TCP peer, or what a trusted proxy in front of us says."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def parse_ip(value: str | None) -> IPAddress | None:
    if not value:
        return None
    value = value.strip()
    if value.startswith("[") and "]" in value:
        value = value[1 : value.index("]")]
    try:
        addr = ipaddress.ip_address(value.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def in_networks(addr: IPAddress | None, networks: tuple[IPNetwork, ...]) -> bool:
    return addr is not None and any(addr in net for net in networks)


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def resolve_client_ip(scope: dict[str, Any], trusted_proxies: tuple[IPNetwork, ...]) -> str:
    """The client address without port; forwarding headers count only when the peer is a trusted proxy."""
    client = scope.get("client")
    peer = client[0] if client else ""
    peer_ip = parse_ip(peer)
    if peer_ip is None:
        return peer or "unknown"
    if trusted_proxies and in_networks(peer_ip, trusted_proxies):
        forwarded = _header(scope, b"x-forwarded-for")
        if forwarded:
            # Walk right to left, skipping our own proxies: the first untrusted hop is the client.
            for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
                hop_ip = parse_ip(hop)
                if hop_ip is None:
                    break
                if not in_networks(hop_ip, trusted_proxies):
                    return str(hop_ip)
        real = parse_ip(_header(scope, b"x-real-ip"))
        if real is not None:
            return str(real)
    return str(peer_ip)
