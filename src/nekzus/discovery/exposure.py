"""Port-exposure check after approving a Docker proposal: how reachable are the host ports?"""

from __future__ import annotations

import ipaddress
from typing import Any

from nekzus.timefmt import rfc3339

_RANK = {"none": 0, "warning": 1, "critical": 2}


def classify(host_ip: str) -> tuple[str, str]:
    ip = (host_ip or "").strip()
    if ip in ("", "0.0.0.0", "::"):
        return "critical", "Bound to all interfaces: PUBLICLY ACCESSIBLE if the host is reachable"
    if ip in ("127.0.0.1", "::1", "localhost"):
        return "none", "Bound to loopback only"
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return "critical", f"Bound to {ip}"
    if addr.is_private:
        return "warning", f"Bound to private network address {ip}"
    return "critical", f"Bound to public address {ip}: PUBLICLY ACCESSIBLE"


def check(info: dict[str, Any], app_id: str, app_name: str) -> dict[str, Any]:
    """The `port_exposure_warning` payload; riskLevel `none` means nothing to warn about."""
    bindings: list[dict[str, Any]] = []
    ports = (info.get("NetworkSettings") or {}).get("Ports") or {}
    for spec, entries in sorted(ports.items()):
        for entry in entries or []:
            host_ip = str((entry or {}).get("HostIp") or "")
            risk, message = classify(host_ip)
            bindings.append(
                {
                    "port": spec,
                    "hostPort": str((entry or {}).get("HostPort") or ""),
                    "binding": f"{host_ip or '0.0.0.0'}:{(entry or {}).get('HostPort') or ''}",
                    "riskLevel": risk,
                    "message": message,
                }
            )
    overall = max((b["riskLevel"] for b in bindings), key=lambda r: _RANK[r], default="none")
    exposed = [b for b in bindings if b["riskLevel"] != "none"]
    if overall == "none":
        summary = "No host ports exposed beyond loopback"
        recommendations: list[str] = []
    else:
        summary = f"{len(exposed)} port binding(s) reachable beyond this host"
        recommendations = [
            "Bind published ports to 127.0.0.1 (e.g. 127.0.0.1:8080:80) and reach the app through Nekzus",
            "Or remove the published ports and put the app on a network Nekzus shares",
        ]
    return {
        "appId": app_id,
        "appName": app_name,
        "riskLevel": overall,
        "summary": summary,
        "bindings": bindings,
        "recommendations": recommendations,
        "timestamp": rfc3339(),
    }
