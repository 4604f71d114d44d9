"""Who is really calling: the TCP peer, or what a trusted proxy in front of us says."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import Scope

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


# Parsed addresses by their text: the same few peers send every request, and `ipaddress` parsing costs
# more than the rest of the proxy's admission check. Address objects are immutable; the table is bounded.
_PARSED: dict[str, IPAddress | None] = {}
_PARSED_MAX = 4096


def parse_ip(value: str | None) -> IPAddress | None:
    if not value:
        return None
    try:
        return _PARSED[value]
    except KeyError:
        pass
    addr = _parse_ip(value)
    if len(_PARSED) >= _PARSED_MAX:
        _PARSED.clear()
    _PARSED[value] = addr
    return addr


def _parse_ip(value: str) -> IPAddress | None:
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
    if addr is None:
        return False
    for net in networks:  # noqa: SIM110 - a plain loop: no generator per call on the hot path
        if addr in net:
            return True
    return False


def _header_lines(scope: Scope, name: bytes) -> list[str]:
    return [value.decode("latin-1") for key, value in scope.get("headers", ()) if key == name]


def forwarded_chain(scope: Scope) -> list[str]:
    """Every hop named by `X-Forwarded-For`, all header lines combined in order (a proxy that appends
    its own line instead of extending the first one must not let the client's line win)."""
    return [hop.strip() for line in _header_lines(scope, b"x-forwarded-for") for hop in line.split(",")]


def client_from_chain(
    peer_ip: IPAddress, chain: list[str], trusted_proxies: tuple[IPNetwork, ...]
) -> IPAddress | None:
    """Walk the chain from the right past our own proxies; the first untrusted hop is the client.

    An unparsable hop means nobody we trust vouched for what lies to its left, so the client is unknown
    (None): never the proxy's own, trusted, address, and never a value from another header.
    """
    current = peer_ip
    for hop in reversed(chain):
        hop_ip = parse_ip(hop)
        if hop_ip is None:
            return None
        if not in_networks(hop_ip, trusted_proxies):
            return hop_ip
        current = hop_ip
    return current


def resolve_client_ip(scope: Scope, trusted_proxies: tuple[IPNetwork, ...]) -> str:
    """The client address without port; forwarding headers count only when the peer is a trusted proxy."""
    client = scope.get("client")
    peer = client[0] if client else ""
    peer_ip = parse_ip(peer)
    if peer_ip is None:
        return peer or "unknown"
    if not (trusted_proxies and in_networks(peer_ip, trusted_proxies)):
        return str(peer_ip)
    chain = forwarded_chain(scope)
    if chain:
        client = client_from_chain(peer_ip, chain, trusted_proxies)
        return str(client) if client is not None else "unknown"
    # X-Real-IP only when the proxy sent no chain at all (never as a fallback for a broken chain).
    real_lines = _header_lines(scope, b"x-real-ip")
    real = parse_ip(real_lines[0]) if len(real_lines) == 1 else None
    return str(real if real is not None else peer_ip)
