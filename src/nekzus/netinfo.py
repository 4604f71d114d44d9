"""Where this instance lives on the network: the base URL clients should use."""

from __future__ import annotations

import ipaddress

from nekzus.certs.selfsigned import machine_addresses


def lan_address() -> str:
    """A LAN IPv4 address, preferring 192.168/10.x, then other private ones, avoiding Docker bridges."""
    docker_like: str | None = None
    other: str | None = None
    for text in machine_addresses():
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            continue
        if ip.version != 4 or ip.is_loopback or ip.is_link_local:
            continue
        if ip in ipaddress.ip_network("172.16.0.0/12"):
            docker_like = docker_like or text
            continue
        if text.startswith(("192.168.", "10.")):
            return text
        other = other or text
    return other or docker_like or "localhost"


def port_of(addr: str) -> int:
    return int(addr.rpartition(":")[2] or 0)


def detect_base_url(addr: str, *, tls: bool) -> str:
    scheme = "https" if tls else "http"
    port = port_of(addr)
    host = lan_address()
    default = 443 if tls else 80
    return f"{scheme}://{host}" if port == default else f"{scheme}://{host}:{port}"
