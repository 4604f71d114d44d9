"""Helpers for federation tests: federated Nekzus processes on loopback ports and bounded waits."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
from tests.nekzus_server import NekzusServer, free_port

SECRET = "test-cluster-secret-0123456789-abcdefghij"

T = TypeVar("T")


def fed_config(gossip_port: int, peers: list[int], *, secret: str = SECRET, **extra: Any) -> dict[str, Any]:
    fed: dict[str, Any] = {
        "enabled": True,
        "cluster_secret": secret,
        "gossip_port": gossip_port,
        "bootstrap_peers": [f"127.0.0.1:{p}" for p in peers],
        "peer_timeout": "2s",
        "allow_remote_routes": True,
    }
    fed.update(extra)
    return {"federation": fed}


class FedServer(NekzusServer):
    """A federated Nekzus: also knows the loopback port its gossip listener binds."""

    def __init__(self, config: dict[str, Any], gossip_port: int) -> None:
        super().__init__(config)
        self.gossip_port = gossip_port


def fed_server(gossip_port: int | None = None, peers: list[int] | None = None, **kwargs: Any) -> FedServer:
    port = gossip_port or free_port()
    return FedServer(fed_config(port, peers or [], **kwargs), port)


def wait_for(check: Callable[[], T | None], timeout: float = 15.0, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy (bounded in time)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except (httpx.TransportError, KeyError, AssertionError) as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def peers(srv: NekzusServer) -> dict[str, dict[str, Any]]:
    with srv.client() as c:
        r = c.get("/api/v1/federation/peers")
        assert r.status_code == 200, r.text
        return {p["id"]: p for p in r.json()["peers"]}


def status(srv: NekzusServer) -> dict[str, Any]:
    with srv.client() as c:
        r = c.get("/api/v1/federation/status")
        assert r.status_code == 200, r.text
        result: dict[str, Any] = r.json()
        return result


def apps(srv: NekzusServer) -> dict[str, dict[str, Any]]:
    with srv.client() as c:
        r = c.get("/api/v1/apps")
        assert r.status_code == 200, r.text
        return {a["id"]: a for a in r.json()}


def add_route(srv: NekzusServer, app_id: str, to: str, **extra: Any) -> None:
    body = {"routeId": f"r_{app_id}", "appId": app_id, "pathBase": f"/apps/{app_id}/", "to": to, **extra}
    with srv.client() as c:
        r = c.post("/api/v1/routes", json=body)
        assert r.status_code == 201, r.text


def delete_route(srv: NekzusServer, app_id: str) -> None:
    with srv.client() as c:
        r = c.delete(f"/api/v1/routes/r_{app_id}")
        assert r.status_code in (200, 204), r.text
