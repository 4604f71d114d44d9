"""Real mDNS on loopback only: the discovery config that listens on 127.0.0.1 and the announcements tests
make there, so no multicast leaves the machine."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

from zeroconf import IPVersion, ServiceInfo, Zeroconf

LOOPBACK = ["127.0.0.1"]


def mdns_discovery(services: Sequence[str] = ("_http._tcp",), **mdns: Any) -> dict[str, Any]:
    """The `discovery` config section: mDNS browsing on loopback only (a scan interval long enough that
    only announcements, not rescans, make proposals); extra keys go into the `mdns` block."""
    return {
        "enabled": True,
        "mdns": {
            "enabled": True,
            "interfaces": LOOPBACK,
            "services": list(services),
            "scan_interval": "30s",
            **mdns,
        },
    }


def loopback_zeroconf() -> Zeroconf:
    return Zeroconf(interfaces=LOOPBACK, ip_version=IPVersion.V4Only)


def loopback_service(
    name: str, port: int, props: dict[Any, Any], host: str, kind: str = "_http._tcp.local."
) -> ServiceInfo:
    """A service record `name` of type `kind` on 127.0.0.1:`port` with TXT `props`, served by `host`."""
    return ServiceInfo(
        kind,
        f"{name}.{kind}",
        port=port,
        addresses=[socket.inet_aton("127.0.0.1")],
        server=host,
        properties=props,
    )
