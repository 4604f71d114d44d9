"""mDNS discovery and advertisement on loopback only (`interfaces: ["127.0.0.1"]`): a service announced
with zeroconf becomes a proposal within seconds and is withdrawn with its goodbye; garbage TXT records
do not disturb the worker; Nekzus' own `_nekzus._tcp` record resolves with its nexusId."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from zeroconf import ServiceInfo, Zeroconf

from tests.mdns_helpers import loopback_service, loopback_zeroconf, mdns_discovery
from tests.nekzus_server import NekzusServer
from tests.waiting import wait_until as poll


@pytest.fixture(scope="module")
def mserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NekzusServer]:
    config = {"discovery": mdns_discovery(["_http._tcp", "_https._tcp", "_ssh._tcp"])}
    srv = NekzusServer(config, data_dir=tmp_path_factory.mktemp("mdns"))
    srv.start(timeout=90)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def zc() -> Iterator[Zeroconf]:
    z = loopback_zeroconf()
    yield z
    z.close()


def proposals(client: httpx.Client) -> dict[str, dict[str, Any]]:
    return {p["id"]: p for p in client.get("/api/v1/discovery/proposals").json()}


def service(name: str, port: int, props: dict[Any, Any], kind: str = "_http._tcp.local.") -> ServiceInfo:
    return loopback_service(name, port, props, "homelab-box.local.", kind)


def test_announced_service_is_proposed_and_withdrawn(mserver: NekzusServer, zc: Zeroconf) -> None:
    info = service(
        "Jellyfin Media",
        8096,
        {
            "app_id": "jellyfin",
            "app_name": "Jellyfin",
            "icon": "film",
            "tags": "media,video",
            "path": "/media",
        },
    )
    started = time.monotonic()
    zc.register_service(info)
    pid = "proposal_mdns_http_Jellyfin_Media_8096"
    with mserver.client() as client:
        p = poll(lambda: proposals(client).get(pid), what=pid)
        assert time.monotonic() - started < 10
        assert p["source"] == "mdns"
        assert (p["detectedScheme"], p["detectedHost"], p["detectedPort"]) == ("http", "127.0.0.1", 8096)
        app = p["suggestedApp"]
        assert (app["id"], app["name"], app["icon"], app["tags"]) == (
            "jellyfin",
            "Jellyfin",
            "film",
            ["media", "video"],
        )
        assert app["endpoints"] == {"lan": "http://127.0.0.1:8096", "mdns": "http://homelab-box.local:8096"}
        assert p["suggestedRoute"]["pathBase"] == "/media/"
        assert p["suggestedRoute"]["scopes"] == ["access:jellyfin"]
        assert p["confidence"] == 0.85
        zc.unregister_service(info)
        poll(lambda: pid not in proposals(client), what="withdrawal")


def test_garbage_txt_and_non_web_types(mserver: NekzusServer, zc: Zeroconf) -> None:
    garbage = service(
        "Weird",
        8081,
        {
            b"\xff\xfe\x00": b"\x00\x01binary",
            "scheme": "gopher",
            "app_id": "../../etc",
            b"path": b"//x/../y",
            "x" * 200: "y",
        },
    )
    ssh = service("nas-ssh", 22, {}, kind="_ssh._tcp.local.")
    tls = service("Router", 443, {"nekzus_enable": "true"}, kind="_https._tcp.local.")
    for info in (garbage, ssh, tls):
        zc.register_service(info)
    try:
        with mserver.client() as client:
            weird = poll(lambda: proposals(client).get("proposal_mdns_http_Weird_8081"), what="weird")
            assert weird["suggestedApp"]["id"] == "Weird"
            assert weird["suggestedRoute"]["pathBase"] == "/apps/Weird/"
            assert len(weird["labelWarnings"]) == 3
            router = poll(lambda: proposals(client).get("proposal_mdns_https_Router_443"), what="router")
            assert router["confidence"] == 0.95 and router["detectedScheme"] == "https"
            assert not any("nas_ssh" in pid for pid in proposals(client))  # not a web type, not opted in
    finally:
        for info in (garbage, ssh, tls):
            zc.unregister_service(info)


def test_nekzus_advertises_itself(mserver: NekzusServer, zc: Zeroconf) -> None:
    with mserver.client() as client:
        nexus_id = client.get("/api/v1/admin/info").json()["nexusId"]
    info = ServiceInfo("_nekzus._tcp.local.", f"Nekzus {nexus_id}._nekzus._tcp.local.")
    assert info.request(zc, 5000), "the _nekzus._tcp record did not resolve"
    txt = {k.decode(): (v or b"").decode() for k, v in info.properties.items()}
    assert txt["nexusId"] == nexus_id
    assert txt["baseUrl"].startswith("http")
    assert info.port == mserver.port
    assert info.parsed_addresses() == ["127.0.0.1"]
