"""The first check every request meets: is it for us, and is it from a page we served?

Two attacks reach a gateway through its users' own browsers:
- **DNS rebinding**: a page on `attacker.example` re-points its name at Nekzus' address; the browser then
  sends same-origin requests with `Host: attacker.example` from a trusted network. Requests for a host
  name Nekzus does not serve are refused (421), so such a page can never talk to it.
- **Cross-site requests**: a form or `fetch` on another site posting to Nekzus (a trusted-network caller
  is admin without a credential). State-changing requests and WebSocket upgrades whose `Origin` names a
  host Nekzus does not serve, or that the browser marks `Sec-Fetch-Site: cross-site`, are refused (403).
  Requests without those headers come from non-browser clients (the phone app, curl) and pass.

Served hosts: `localhost`, this machine's addresses and host name (and `<hostname>.local`), the host of
`server.base_url`, `server.base_domain` and its subdomains, and `server.allowed_hosts`.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import Scope, Send

from nekzus.http.errors import send_error

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def host_name(value: str) -> str:
    """The host part of a Host header or URL authority, lower-cased, without port or brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


class ServedHosts:
    """The host names and addresses this instance answers for."""

    def __init__(self, names: Iterable[str], domains: Iterable[str] = ()) -> None:
        self.names = frozenset(host_name(n) for n in names if n)
        self.domains = tuple(d.strip(".").lower() for d in domains if d)
        # Answers by Host value as sent: every request of a keep-alive connection repeats it. Bounded,
        # since the values come from clients.
        self._answers: dict[str, bool] = {}

    @classmethod
    def for_instance(
        cls, *, base_url: str, base_domain: str, allowed: Iterable[str], addresses: Iterable[str]
    ) -> ServedHosts:
        names = {"localhost", *addresses, *allowed}
        hostname = socket.gethostname().lower()
        if hostname:
            names.update({hostname, f"{hostname}.local", hostname.split(".", 1)[0]})
        if base_url:
            names.add(urlsplit(base_url).hostname or "")
        domains = [base_domain] if base_domain else []
        names.update(domains)
        return cls(names, domains)

    def serves(self, host: str) -> bool:
        answer = self._answers.get(host)
        if answer is None:
            if len(self._answers) >= 1024:
                self._answers.clear()
            answer = self._answers[host] = self._serves(host)
        return answer

    def _serves(self, host: str) -> bool:
        name = host_name(host)
        if not name:
            return False
        if name in self.names or any(name.endswith("." + d) for d in self.domains):
            return True
        try:
            ip = ipaddress.ip_address(name)
        except ValueError:
            return False
        return ip.is_loopback  # any loopback address is this machine


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def refusal(scope: Scope, hosts: ServedHosts) -> tuple[int, str, str] | None:
    """Why this request must be refused before anything else looks at it, or None."""
    host = _header(scope, b"host")
    if host is not None and not hosts.serves(host):
        return 421, "HOST_NOT_SERVED", "This server does not serve that host name"
    if scope["type"] == "http" and scope.get("method", "GET") in SAFE_METHODS:
        return None
    if _header(scope, b"sec-fetch-site") == "cross-site":
        return 403, "CROSS_SITE_REQUEST", "Cross-site requests are not allowed"
    origin = _header(scope, b"origin")
    if origin is not None and origin != "null":
        if not hosts.serves(urlsplit(origin).netloc or origin):
            return 403, "CROSS_SITE_REQUEST", "Requests from other sites are not allowed"
    elif origin == "null":
        return 403, "CROSS_SITE_REQUEST", "Requests from opaque origins are not allowed"
    return None


async def refuse(scope: Scope, send: Send, refused: tuple[int, str, str]) -> None:
    """Answer a refused request: the error shape for HTTP, a close before accept (403) for WebSocket."""
    status, code, message = refused
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": message})
    else:
        await send_error(send, status, code, message)
