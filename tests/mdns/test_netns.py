"""Cross-host mDNS: Nekzus runs in one network namespace and its `_nekzus._tcp` advertisement is resolved
from another, the two joined by a veth pair this test creates (root only; skipped otherwise). Nothing
leaves the two namespaces, which are always removed afterwards."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.nekzus_server import ROOT

SUBNET_A, SUBNET_B = "10.213.77.1", "10.213.77.2"


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20, check=False)


@pytest.fixture
def netns_pair() -> Iterator[tuple[str, str]]:
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces (ip netns add)")
    tag = f"{os.getpid() % 100000}"
    ns_a, ns_b = f"nkz-mdns-a-{tag}", f"nkz-mdns-b-{tag}"
    veth_a, veth_b = f"nkzma{tag}", f"nkzmb{tag}"
    created: list[str] = []
    try:
        for ns in (ns_a, ns_b):
            result = _ip("netns", "add", ns)
            if result.returncode != 0:
                pytest.skip(f"cannot create network namespaces here: {result.stderr.strip()}")
            created.append(ns)
        steps = [
            ("link", "add", veth_a, "type", "veth", "peer", "name", veth_b),
            ("link", "set", veth_a, "netns", ns_a),
            ("link", "set", veth_b, "netns", ns_b),
            ("-n", ns_a, "addr", "add", f"{SUBNET_A}/24", "dev", veth_a),
            ("-n", ns_b, "addr", "add", f"{SUBNET_B}/24", "dev", veth_b),
            ("-n", ns_a, "link", "set", veth_a, "up", "multicast", "on"),
            ("-n", ns_b, "link", "set", veth_b, "up", "multicast", "on"),
            ("-n", ns_a, "link", "set", "lo", "up"),
            ("-n", ns_b, "link", "set", "lo", "up"),
        ]
        for step in steps:
            result = _ip(*step)
            if result.returncode != 0:
                pytest.skip(f"cannot build the veth pair ({' '.join(step)}): {result.stderr.strip()}")
        yield ns_a, ns_b
    finally:
        for ns in created:
            _ip("netns", "del", ns)


RESOLVER = textwrap.dedent(
    """
    import json, sys, time
    from zeroconf import IPVersion, ServiceBrowser, ServiceInfo, Zeroconf
    zc = Zeroconf(interfaces=[sys.argv[1]], ip_version=IPVersion.V4Only)
    names = []
    class Listener:
        def add_service(self, zc, type_, name): names.append(name)
        def update_service(self, zc, type_, name): pass
        def remove_service(self, zc, type_, name): pass
    browser = ServiceBrowser(zc, "_nekzus._tcp.local.", Listener())
    deadline = time.monotonic() + 40
    while not names and time.monotonic() < deadline:
        time.sleep(0.2)
    out = {}
    if names:
        info = ServiceInfo("_nekzus._tcp.local.", names[0])
        if info.request(zc, 5000):
            out = {
                "name": names[0],
                "port": info.port,
                "addresses": info.parsed_addresses(),
                "txt": {k.decode(): (v or b"").decode() for k, v in info.properties.items()},
            }
    browser.cancel()
    zc.close()
    print(json.dumps(out))
    """
)


def test_advertisement_resolves_from_another_namespace(netns_pair: tuple[str, str], tmp_path: Path) -> None:
    ns_a, ns_b = netns_pair
    base_url = f"http://{SUBNET_A}:18443"
    config = {
        "server": {"addr": f"{SUBNET_A}:18443", "base_url": base_url},
        "storage": {"database_path": str(tmp_path / "nexus.db")},
        "discovery": {"enabled": True, "mdns": {"enabled": True, "interfaces": [SUBNET_A]}},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEKZUS_")}
    env["PYTHONPATH"] = str(ROOT / "src")
    log = open(tmp_path / "nekzus.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            ns_a,
            sys.executable,
            "-m",
            "nekzus",
            "--config",
            str(tmp_path / "config.yaml"),
            "--insecure-http",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
        env=env,
    )
    try:
        script = tmp_path / "resolve.py"
        script.write_text(RESOLVER)
        result = subprocess.run(
            ["ip", "netns", "exec", ns_b, sys.executable, str(script), SUBNET_B],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        found = json.loads(result.stdout.strip().splitlines()[-1]) if result.stdout.strip() else {}
        assert found, f"not resolved: {result.stderr}\n{(tmp_path / 'nekzus.log').read_text()}"
        assert re.fullmatch(r"nexus_[0-9a-f]{12}", found["txt"]["nexusId"])
        assert found["txt"]["baseUrl"] == base_url
        assert found["port"] == 18443
        assert found["addresses"] == [SUBNET_A]
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
