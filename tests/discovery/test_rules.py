"""Pure rules of discovery and the runtime that need no daemon: labels, exposure, self-detection, stats."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nekzus.discovery.exposure import check, classify
from nekzus.discovery.labels import PortCandidate, build_proposal, plan_container, skip_reason
from nekzus.runtime.docker import compute_stats
from nekzus.runtime.manager import detect_self


def inspect(
    labels: dict[str, str], *, name: str = "web", image: str = "nginx:1", ports: Any = None
) -> dict[str, Any]:
    return {
        "Id": "a" * 64,
        "Name": "/" + name,
        "State": {"Running": True},
        "Config": {"Labels": labels, "Image": image, "ExposedPorts": {"80/tcp": {}}},
        "HostConfig": {"NetworkMode": "bridge"},
        "NetworkSettings": {
            "Ports": ports
            if ports is not None
            else {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8081"}]},
            "Networks": {"bridge": {"IPAddress": "172.17.0.5"}, "front": {"IPAddress": "10.1.0.5"}},
        },
    }


def test_skip_rules() -> None:
    assert skip_reason(inspect({"nekzus.enable": "true"}), is_self=True) == "self"
    assert skip_reason(inspect({"nekzus.enable": "true", "nekzus.skip": "true"}), False) == "nekzus.skip"
    assert skip_reason(inspect({"nekzus.enable": "true"}, name="my-nekzus"), False) == "system"
    assert (
        skip_reason(inspect({"nekzus.enable": "true", "nekzus.test": "1"}, name="my-nekzus"), False) is None
    )
    assert skip_reason(inspect({"nekzus.enable": "true"}, image="traefik:v3"), False) == "system"
    assert skip_reason(inspect({"nekzus.enable": "false", "nekzus.app.id": "x"}), False) == "disabled"
    assert skip_reason(inspect({}), False) == "not opted in"
    assert skip_reason(inspect({"traefik.enable": "true"}), False) is None
    assert skip_reason(inspect({"caddy": "example.com"}), False) is None


def test_network_modes_pick_hosts() -> None:
    info = inspect({"nekzus.enable": "true"})
    published = plan_container(info, mode="published")
    assert published is not None and published.host == "127.0.0.1"
    assert [(c.container_port, c.port) for c in published.candidates] == [(80, 8081)]
    first = plan_container(info, mode="first")
    assert first is not None and first.host == "172.17.0.5" and first.candidates[0].port == 80
    preferred = plan_container(info, mode="preferred", networks=["front"])
    assert preferred is not None and preferred.host == "10.1.0.5"
    assert plan_container(info, mode="all", exclude_networks=["bridge", "front"]) is None
    # a port bound to a LAN address is not reachable on loopback: not a published-mode target
    lan = inspect({"nekzus.enable": "true"}, ports={"80/tcp": [{"HostIp": "192.168.1.4", "HostPort": "80"}]})
    assert plan_container(lan, mode="published") is None


def test_confidence_tags_and_notes() -> None:
    plan = plan_container(inspect({"nekzus.enable": "true"}, image="grafana/grafana"), mode="published")
    assert plan is not None
    proposal = build_proposal(plan, [PortCandidate(3000, 3000, "http")])
    assert proposal.confidence == 1.0
    assert proposal.app.tags == ("docker", "monitoring", "http")
    assert proposal.id == "proposal_docker_http_web_3000"
    plain = plan_container(inspect({"nekzus.app.id": "x1"}, image="busybox"), mode="published")
    assert plain is not None
    low = build_proposal(plain, [PortCandidate(9000, 9000, "https")])
    assert low.confidence == 0.85 and "Upstream uses HTTP (unencrypted)" not in low.notes
    traefik = plan_container(inspect({"traefik.enable": "true"}, image="busybox"), mode="published")
    assert traefik is not None
    assert build_proposal(traefik, [PortCandidate(9000, 9000, "http")]).confidence == 0.65


def test_port_exposure_levels() -> None:
    assert classify("")[0] == "critical" and classify("0.0.0.0")[0] == "critical"
    assert classify("::")[0] == "critical" and classify("8.8.8.8")[0] == "critical"
    assert classify("127.0.0.1")[0] == "none" and classify("::1")[0] == "none"
    assert classify("192.168.1.10")[0] == "warning" and classify("10.0.0.2")[0] == "warning"
    report = check(
        {
            "NetworkSettings": {
                "Ports": {
                    "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}],
                    "443/tcp": [{"HostIp": "0.0.0.0", "HostPort": "443"}],
                    "53/udp": None,
                }
            }
        },
        "app",
        "App",
    )
    assert report["riskLevel"] == "critical" and len(report["bindings"]) == 2
    assert report["recommendations"]
    assert check({"NetworkSettings": {"Ports": {}}}, "a", "A")["riskLevel"] == "none"


def test_detect_self(tmp_path: Path) -> None:
    cid = "0123456789ab" + "c" * 52
    cgroup = tmp_path / "cgroup"
    cgroup.write_text(f"12:memory:/docker/{cid}\n")
    ids, names = detect_self(str(cgroup), str(tmp_path / "none"), hostname="myhost")
    assert ids == {cid} and names == {"myhost"}
    ids, names = detect_self(str(tmp_path / "x"), str(tmp_path / "y"), hostname="0123456789ab")
    assert ids == {"0123456789ab"} and names == set()


def test_cpu_from_two_samples() -> None:
    first = {"cpu_stats": {"cpu_usage": {"total_usage": 1_000}, "system_cpu_usage": 10_000}}
    second = {
        "cpu_stats": {
            "cpu_usage": {"total_usage": 3_000, "percpu_usage": [1, 1]},
            "system_cpu_usage": 14_000,
        },
        "memory_stats": {"usage": 25, "limit": 100},
        "networks": {"eth0": {"rx_bytes": 5, "tx_bytes": 7}, "eth1": {"rx_bytes": 1, "tx_bytes": 1}},
    }
    stats = compute_stats("f" * 64, first, second)
    assert stats["cpu"] == {"usage": 100.0, "coresUsed": 1.0, "totalCores": 2.0}
    assert stats["memory"] == {"usage": 25.0, "used": 25, "limit": 100, "available": 75}
    assert stats["network"] == {"rx": 6, "tx": 8}
    assert stats["containerId"] == "f" * 12
