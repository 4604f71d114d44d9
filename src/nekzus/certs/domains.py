"""Which names a certificate may cover: local names and private addresses only.

A local CA that signs public names would let anyone who installed it be fooled for real sites, so public
domains and public IP addresses are refused outright.
"""

from __future__ import annotations

import ipaddress
import re
import socket

from nekzus.errors import Invalid

LOCAL_SUFFIXES = (".local", ".lan", ".home.arpa", ".localhost", ".internal", ".home")
_LABEL = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$")
_HEX_ID = re.compile(r"^[0-9a-f]{8,}$")


def _bad(domain: str, why: str) -> Invalid:
    return Invalid(f"invalid domain {domain!r}: {why}", code="INVALID_DOMAIN")


def check_domain(domain: str) -> str:
    """Return the normalised name, or raise INVALID_DOMAIN."""
    if not isinstance(domain, str) or not domain.strip():
        raise _bad(str(domain), "empty")
    name = domain.strip().lower().rstrip(".")
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        ip = None
    if ip is not None:
        if ip.is_loopback or ip.is_private or ip.is_link_local:
            return str(ip)
        raise _bad(domain, "public IP addresses are not allowed (only private and loopback addresses)")
    if len(name) > 253 or any(c in name for c in "/\\ ") or ".." in name:
        raise _bad(domain, "malformed name")
    base = name[2:] if name.startswith("*.") else name
    labels = base.split(".")
    if not all(_LABEL.match(label) for label in labels):
        raise _bad(domain, "malformed name")
    if len(labels) == 1 or base == "localhost" or base.endswith(LOCAL_SUFFIXES):
        if name.startswith("*.") and len(labels) == 1:
            raise _bad(domain, "a wildcard needs a local parent domain")
        return name
    raise _bad(domain, "public domains are not allowed (only localhost, .local, .lan, .home.arpa, IPs)")


def check_domains(domains: list[str]) -> list[str]:
    if not domains:
        raise Invalid("at least one domain is required", code="INVALID_DOMAINS")
    if len(domains) > 100:
        raise Invalid("at most 100 domains", code="INVALID_DOMAINS")
    return list(dict.fromkeys(check_domain(d) for d in domains))


def suggestions() -> list[str]:
    """localhost, this host's name (if it looks like one, not a container id) and its private IPv4s."""
    out = ["localhost"]
    host = socket.gethostname().split(".")[0].lower()
    if host and host != "localhost" and not _HEX_ID.match(host) and _LABEL.match(host):
        out += [host, f"{host}.local"]
    try:
        import psutil

        for addrs in psutil.net_if_addrs().values():
            for addr in addrs:
                if addr.family != socket.AF_INET:
                    continue
                ip = ipaddress.ip_address(addr.address)
                if not ip.is_loopback and ip.is_private and str(ip) not in out:
                    out.append(str(ip))
    except OSError:  # pragma: no cover - restricted /proc
        pass
    return out
