"""Three real Nekzus processes federating on loopback through `bootstrap_peers`."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.events.conftest import pair_device
from tests.federation.conftest import (
    SECRET,
    FedServer,
    add_route,
    apps,
    delete_route,
    fed_server,
    peers,
    status,
    wait_for,
)
from tests.nekzus_server import NekzusServer, free_port
from tests.proxy.conftest import Upstream
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from nekzus.api.scopes import undeclared
from nekzus.federation import crypto

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    up = Upstream().start()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def cluster() -> Iterator[list[FedServer]]:
    ports = [free_port() for _ in range(3)]
    servers = [fed_server(port, [p for p in ports if p != port]) for port in ports]
    try:
        for srv in servers:
            srv.start(wait=False)
        for srv in servers:
            srv.wait_ready(60)
        for srv in servers:

            def two_online(srv: FedServer = srv) -> bool:
                return sum(1 for p in peers(srv).values() if p["status"] == "online") == 2

            wait_for(two_online, 30, "every instance to see two online peers")
        yield servers
    finally:
        for srv in servers:
            srv.stop()


def peer_id(srv: NekzusServer) -> str:
    result: str = status(srv)["local_peer_id"]
    return result


def test_membership_status_and_metrics(cluster: list[FedServer]) -> None:
    a, b, c = cluster
    st = status(a)
    assert st["enabled"] is True and st["running"] is True
    assert st["local_peer_id"].startswith("nexus_")
    assert st["peer_count"] == 2
    assert st["peers_by_status"]["online"] == 2
    ids = {peer_id(b), peer_id(c)}
    assert set(peers(a)) == ids
    with a.client() as cl:
        one = cl.get(f"/api/v1/federation/peers/{peer_id(b)}")
        assert one.status_code == 200
        body = one.json()
        assert body["status"] == "online" and body["address"] == "127.0.0.1"
        assert body["gossip_addr"] == f"127.0.0.1:{b.gossip_port}"
        missing = cl.get("/api/v1/federation/peers/nexus_000000000000")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "PEER_NOT_FOUND"
        metrics = cl.get("/metrics").text
        assert "nekzus_federation_peers_active 2.0" in metrics
        assert "nekzus_federation_messages_sent_total" in metrics


def test_federation_operations_declare_their_scopes(cluster: list[FedServer]) -> None:
    with cluster[0].client() as cl:
        schema = cl.get("/api/v1/openapi.json").json()
    assert undeclared(schema) == []
    paths = schema["paths"]
    assert paths["/api/v1/federation/peers/{peer_id}"]["delete"]["x-required-scopes"] == ["access:admin"]
    assert paths["/api/v1/federation/sync"]["post"]["x-required-scopes"] == ["write:*"]


def test_add_and_delete_propagate(cluster: list[FedServer], upstream: Upstream) -> None:
    a, b, c = cluster
    origin = peer_id(a)
    add_route(a, "fedgrafana", upstream.url, stripPrefix=True)
    for other in (b, c):

        def replicated(other: FedServer = other) -> dict[str, Any] | None:
            return apps(other).get("fedgrafana")

        app = wait_for(replicated, 15, "the app to replicate")
        assert "federated" in app["tags"]
        assert app["origin"]["peerId"] == origin
        assert app["proxyPath"] == "/apps/fedgrafana/"
    assert "federated" not in apps(a)["fedgrafana"]["tags"]
    assert status(b)["services"]["remote"] >= 1
    delete_route(a, "fedgrafana")
    for other in (b, c):

        def deleted(other: FedServer = other) -> bool:
            return "fedgrafana" not in apps(other)

        wait_for(deleted, 15, "the delete to replicate")


def test_manual_sync_endpoint(cluster: list[FedServer]) -> None:
    a = cluster[0]
    with a.client() as cl:
        r = cl.post("/api/v1/federation/sync")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["success"] is True and body["peers"] == 2 and body["succeeded"] == 2


def test_replayed_and_forged_sync_refused(cluster: list[FedServer]) -> None:
    a, b, _ = cluster
    key = crypto.derive_key(SECRET)
    body = json.dumps({"sv": ""}).encode()
    path = "/federation/v1/sync"
    headers = crypto.sign_request(
        key, peer_id=peer_id(b), method="POST", path=path, digest=crypto.body_digest(body)
    )
    url = f"https://127.0.0.1:{a.gossip_port}{path}"
    with httpx.Client(verify=False, timeout=10) as cl:
        first = cl.post(url, content=body, headers=headers)
        assert first.status_code == 200, first.text
        assert first.headers[crypto.H_PEER] == peer_id(a)
        replay = cl.post(url, content=body, headers=headers)
        assert replay.status_code == 401
        assert replay.json()["error"]["code"] == "FEDERATION_AUTH_FAILED"
        assert "replayed" in replay.json()["error"]["message"]
        forged = crypto.sign_request(
            crypto.derive_key("x" * 40),
            peer_id=peer_id(b),
            method="POST",
            path=path,
            digest=crypto.body_digest(body),
        )
        assert cl.post(url, content=body, headers=forged).status_code == 401
        stale = crypto.sign_request(
            key, peer_id=peer_id(b), method="POST", path=path, digest=crypto.body_digest(body), ts=1_000_000
        )
        assert cl.post(url, content=body, headers=stale).status_code == 401
        tampered = dict(
            crypto.sign_request(key, peer_id=peer_id(b), method="POST", path=path, digest="0" * 64)
        )
        assert cl.post(url, content=body, headers=tampered).status_code == 401
    with a.client() as cl:
        metrics = cl.get("/metrics").text
    assert 'nekzus_federation_auth_failures_total{reason="replayed"}' in metrics
    assert 'nekzus_federation_auth_failures_total{reason="bad_signature"}' in metrics


def test_wrong_secret_is_refused_and_never_sees_the_catalog(
    cluster: list[FedServer], upstream: Upstream
) -> None:
    a = cluster[0]
    add_route(a, "secretapp", upstream.url)
    intruder = fed_server(None, [a.gossip_port], secret="wrong-secret-but-long-enough-0123456789")
    intruder.start(timeout=60)
    try:
        add_route(intruder, "intruderapp", upstream.url)
        wait_for(
            lambda: (
                'nekzus_federation_auth_failures_total{reason="bad_signature"}'
                in a.client().get("/metrics").text
            ),
            20,
            "the refused hello",
        )
        mine = peer_id(intruder)
        assert mine not in peers(a)
        assert peers(intruder) == {}
        assert "secretapp" not in apps(intruder)
        assert "intruderapp" not in apps(a)
        # The refusal is audited on the instance that refused it.
        assert _audited(a)
    finally:
        intruder.stop()
        delete_route(a, "secretapp")


def _audited(srv: NekzusServer) -> bool:
    from tests.auth.conftest import bearer, create_admin, login

    with srv.client() as cl:
        if cl.get("/api/v1/auth/status").json().get("setupRequired", True):
            create_admin(cl)
        token = login(cl)
        r = cl.get("/api/v1/audit-logs", params={"action": "federation.auth_failed"}, headers=bearer(token))
        assert r.status_code == 200, r.text
        return any(row["action"] == "federation.auth_failed" for row in r.json()["logs"])


def _api_key(srv: NekzusServer, scopes: list[str]) -> str:
    with srv.client() as cl:
        r = cl.post("/api/v1/apikeys", json={"name": f"fed-{'-'.join(scopes)}", "scopes": scopes})
        assert r.status_code == 201, r.text
        key: str = r.json()["key"]
        return key


def test_remote_route_http_websocket_and_scopes_at_owner(
    cluster: list[FedServer], upstream: Upstream
) -> None:
    a, b, _ = cluster
    add_route(a, "remoteecho", upstream.url, stripPrefix=True, websocket=True, scopes=["read:catalog"])
    wait_for(lambda: apps(b).get("remoteecho"), 15, "the remote app on the caller")
    with b.client() as cl:
        # A trusted-network caller on B: proxied to A and on to the upstream, without Nekzus credentials.
        r = cl.get("/apps/remoteecho/hello?x=1")
        assert r.status_code == 200, r.text
        echoed = r.json()
        assert echoed["path"] == "/hello" and echoed["query"] == "x=1"
        assert r.headers["x-nekzus-federated-from"] == peer_id(a)
        assert "authorization" not in echoed["headers"] and "x-nekzus-identity" not in echoed["headers"]
        assert echoed["headers"]["x-forwarded-for"] == "127.0.0.1"
        # POST bodies stream through.
        posted = cl.post("/apps/remoteecho/submit", content=b"z" * 100_000)
        assert posted.status_code == 200 and posted.json()["body_len"] == 100_000
        # An API key of B with the right scope passes A's check; one without is refused by A (the owner).
        good = _api_key(b, ["read:catalog"])
        ok = cl.get("/apps/remoteecho/ok", headers={"X-API-Key": good})
        assert ok.status_code == 200, ok.text
        weak = _api_key(b, ["read:events"])
        denied = cl.get("/apps/remoteecho/nope", headers={"X-API-Key": weak})
        assert denied.status_code == 403, denied.text
        assert denied.json()["error"]["code"] == "FORBIDDEN"
        assert denied.headers["x-nekzus-federated-from"] == peer_id(a)
        assert cl.get("/apps/remoteecho/x", headers={"X-API-Key": "nekzus_" + "0" * 64}).status_code == 401
        # Server-sent events stream through both hops without buffering.
        with cl.stream("GET", "/apps/remoteecho/sse") as sse:
            assert sse.status_code == 200
            arrivals = []
            for line in sse.iter_lines():
                if line.startswith("data:"):
                    arrivals.append(time.monotonic())
            assert len(arrivals) == 4
            assert arrivals[-1] - arrivals[0] > 0.8  # the first event came long before the last was sent
    # The owner refuses the route request without a valid peer signature (a LAN caller is not trusted).
    direct = httpx.get(
        f"https://127.0.0.1:{a.gossip_port}/federation/v1/route/apps/remoteecho/x",
        verify=False,
        headers={crypto.H_IDENTITY: crypto.encode_identity({"kind": "trusted", "scopes": ["access:admin"]})},
    )
    assert direct.status_code == 401
    # WebSocket through B to the upstream behind A.
    with connect(b.ws_url + "/apps/remoteecho/ws", open_timeout=10) as ws:
        hello: dict[str, Any] = json.loads(ws.recv(timeout=10))
        assert hello["path"] == "/ws" and hello["credentials"] == []
        ws.send("ping")
        assert ws.recv(timeout=10) == "echo:ping"
    delete_route(a, "remoteecho")


def test_a_local_route_wins_over_a_remote_one(cluster: list[FedServer], upstream: Upstream) -> None:
    a, b, _ = cluster
    add_route(a, "shadowed", upstream.url, stripPrefix=True)
    wait_for(lambda: apps(b).get("shadowed"), 15, "the remote app on the caller")
    with b.client() as cl:
        remote = cl.get("/apps/shadowed/x", headers={"Remote-User": "admin", "X_Forwarded_User": "admin"})
        assert remote.headers.get("x-nekzus-federated-from") == peer_id(a)
        # The proxy's strip list applies to remote routes too: no identity header reaches the upstream.
        sent = {k.lower().replace("_", "-") for k in remote.json()["headers"]}
        assert not sent & {"remote-user", "x-forwarded-user"}, sent
        add_route(b, "shadowed", upstream.url, stripPrefix=True)
        local = cl.get("/apps/shadowed/x")
        assert local.status_code == 200 and "x-nekzus-federated-from" not in local.headers
        delete_route(b, "shadowed")
        assert cl.get("/apps/shadowed/x").headers.get("x-nekzus-federated-from") == peer_id(a)
    delete_route(a, "shadowed")


def test_remote_websocket_closes_when_the_callers_device_is_revoked(
    cluster: list[FedServer], upstream: Upstream
) -> None:
    a, b, _ = cluster
    add_route(a, "revokeecho", upstream.url, stripPrefix=True, websocket=True, scopes=["read:catalog"])
    wait_for(lambda: apps(b).get("revokeecho"), 15, "the remote app on the caller")
    token = pair_device(b, "fed-revoked-phone")
    with connect(
        b.ws_url + "/apps/revokeecho/ws",
        open_timeout=10,
        additional_headers={"Authorization": f"Bearer {token}"},
    ) as ws:
        json.loads(ws.recv(timeout=10))
        ws.send("ping")
        assert ws.recv(timeout=10) == "echo:ping"
        with b.client() as cl:
            assert cl.delete("/api/v1/devices/fed-revoked-phone").status_code == 200
        with pytest.raises(ConnectionClosed) as closed:
            for _ in range(10):
                ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    delete_route(a, "revokeecho")


def test_remote_event_stream_is_cut_when_the_callers_device_is_revoked(
    cluster: list[FedServer], upstream: Upstream
) -> None:
    """A response streaming from the owner through the caller's instance stops when the device that
    opened it is revoked there, as a remote WebSocket does."""
    a, b, _ = cluster
    add_route(a, "revokefeed", upstream.url, stripPrefix=True, scopes=["read:catalog"])
    wait_for(lambda: apps(b).get("revokefeed"), 15, "the remote app on the caller")
    token = pair_device(b, "fed-feed-phone")
    try:
        with b.client(timeout=httpx.Timeout(10, read=5)) as cl:
            bearer = {"Authorization": f"Bearer {token}"}
            with cl.stream("GET", "/apps/revokefeed/sse-gated", headers=bearer) as sse:
                assert sse.status_code == 200 and sse.headers["x-nekzus-federated-from"] == peer_id(a)
                events = sse.iter_raw()
                assert next(events).startswith(b"data: first")
                assert cl.delete("/api/v1/devices/fed-feed-phone").status_code == 200
                with pytest.raises(httpx.RemoteProtocolError):
                    for _ in events:
                        pass
        logs = b.logs()
        assert "response from revokefeed cut short: device_revoked" in logs
        assert "without completing response" not in logs
    finally:
        upstream.open_gate()
        delete_route(a, "revokefeed")


class EventTap:
    """Collects the event types A's WebSocket delivers, in a background thread."""

    def __init__(self, srv: NekzusServer) -> None:
        self.types: list[str] = []
        self.messages: list[dict[str, Any]] = []
        self.ws = connect(srv.ws_url + "/api/v1/ws", open_timeout=10)
        self.ws.send(json.dumps({"type": "auth", "data": {"token": ""}}))  # trusted network: no token
        assert json.loads(self.ws.recv(timeout=10))["type"] == "auth_success"
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for raw in self.ws:
                message = json.loads(raw)
                self.messages.append(message)
                self.types.append(str(message.get("type")))
        except Exception:
            return

    def close(self) -> None:
        self.ws.close()
        self.thread.join(5)


def test_stopped_instance_goes_offline_and_catches_up(cluster: list[FedServer], upstream: Upstream) -> None:
    a, b, c = cluster
    c_id = peer_id(c)
    tap = EventTap(a)
    add_route(a, "beforestop", upstream.url)
    wait_for(lambda: apps(c).get("beforestop"), 15, "replication before the stop")
    c.stop()
    wait_for(lambda: peers(a)[c_id]["status"] == "offline", 15, "A to mark C offline")
    wait_for(lambda: peers(b)[c_id]["status"] == "offline", 15, "B to mark C offline")
    assert status(a)["peers_by_status"]["offline"] == 1
    # Changes while C is down: one add, one delete.
    add_route(a, "whiledown", upstream.url)
    delete_route(a, "beforestop")
    c.start(timeout=60)
    assert peer_id(c) == c_id  # the peer id is the persisted nexusId
    wait_for(lambda: peers(a)[c_id]["status"] == "online", 20, "C back online on A")
    wait_for(lambda: "whiledown" in apps(c) and "beforestop" not in apps(c), 20, "C to catch up")
    delete_route(a, "whiledown")
    wait_for(lambda: "whiledown" not in apps(c), 15, "delete after restart")
    add_route(c, "fromc", upstream.url)
    wait_for(lambda: "fromc" in apps(a), 15, "C's own app to reach A")
    delete_route(c, "fromc")
    wait_for(lambda: "fromc" not in apps(a), 15, "C's delete to reach A")
    wait_for(
        lambda: (
            {"peer_offline", "peer_online", "federation_service_added", "federation_service_removed"}
            <= set(tap.types)
        ),
        10,
        f"peer and service events on the WebSocket (got {tap.types})",
    )
    tap.close()


def test_delete_peer_then_it_rejoins_by_authenticating(cluster: list[FedServer]) -> None:
    a, b, _ = cluster
    b_id = peer_id(b)
    with a.client() as cl:
        r = cl.delete(f"/api/v1/federation/peers/{b_id}")
        assert r.status_code == 200, r.text
        assert r.json() == {"success": True, "message": "Peer removed successfully", "peer_id": b_id}
        assert (
            cl.delete("/api/v1/federation/peers/nexus_000000000000").json()["error"]["code"]
            == "PEER_NOT_FOUND"
        )
    # B is still in A's bootstrap list: it comes back only through a fresh authenticated hello.
    wait_for(lambda: peers(a).get(b_id, {}).get("status") == "online", 20, "B to rejoin")
