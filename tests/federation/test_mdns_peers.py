"""mDNS peer discovery: two instances with no bootstrap peers find each other on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.federation.conftest import FedServer, fed_server, peers, wait_for

pytestmark = [pytest.mark.timeout(120), pytest.mark.xdist_group("mdns")]


@pytest.fixture(scope="module")
def pair() -> Iterator[list[FedServer]]:
    servers: list[FedServer] = []
    for _ in range(2):
        srv = fed_server(None, [], mdns_enabled=True)
        srv.config["discovery"] = {"mdns": {"interfaces": ["127.0.0.1"]}}
        srv.config_path.write_text(__import__("yaml").safe_dump(srv.config))
        servers.append(srv)
    try:
        for srv in servers:
            srv.start(wait=False)
        for srv in servers:
            srv.wait_ready(60)
        yield servers
    finally:
        for srv in servers:
            srv.stop()


def test_instances_discover_each_other_over_mdns(pair: list[FedServer]) -> None:
    a, b = pair
    found = wait_for(lambda: peers(a), 30, "A to discover B over mDNS")
    (peer,) = found.values()
    assert peer["status"] == "online"
    assert peer["gossip_addr"] == f"127.0.0.1:{b.gossip_port}"
    wait_for(lambda: len(peers(b)) == 1, 30, "B to know A")
