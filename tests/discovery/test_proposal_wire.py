"""The typed proposal and its two renderings: the API/event JSON (camelCase, built in `nekzus.api`) and the
stored record (round-trips exactly)."""

from __future__ import annotations

from typing import Any

from nekzus.api.discovery import approved_json, proposal_json
from nekzus.discovery.kubernetes_worker import service_proposals, trim
from nekzus.discovery.labels import PortCandidate, build_proposal, plan_container
from nekzus.discovery.manager import Approved
from nekzus.discovery.mdns import build_proposal as mdns_proposal
from nekzus.discovery.models import Proposal, Source

TOP_KEYS = [
    "id",
    "source",
    "detectedScheme",
    "detectedHost",
    "detectedPort",
    "confidence",
    "suggestedApp",
    "suggestedRoute",
    "availablePorts",
    "tags",
    "lastSeen",
    "securityNotes",
    "labelWarnings",
]


def _docker() -> Proposal:
    info: dict[str, Any] = {
        "Id": "b" * 64,
        "Name": "/web",
        "State": {"Running": True},
        "Config": {"Labels": {"nekzus.enable": "true"}, "Image": "busybox", "ExposedPorts": {"80/tcp": {}}},
        "HostConfig": {"NetworkMode": "bridge"},
        "NetworkSettings": {
            "Ports": {
                "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8081"}],
                "81/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8082"}],
            },
            "Networks": {},
        },
    }
    plan = plan_container(info, mode="published")
    assert plan is not None
    return build_proposal(plan, [PortCandidate(80, 8081, "http"), PortCandidate(81, 8082, "http")])


def test_docker_proposal_json_keeps_the_wire_shape() -> None:
    proposal = _docker()
    assert proposal.source is Source.DOCKER and proposal.container_id == "b" * 12 and proposal.published
    wire = proposal_json(proposal)
    assert list(wire) == TOP_KEYS
    assert wire["source"] == "docker" and wire["detectedHost"] == "127.0.0.1" and wire["detectedPort"] == 8081
    assert wire["suggestedApp"]["discoveryMeta"] == {
        "source": "docker",
        "containerId": "b" * 12,
        "containerName": "web",
        "containerPort": 80,
        "networkMode": "published",
    }
    route = wire["suggestedRoute"]
    assert route["routeId"] == "route_web" and route["appId"] == "web" and route["containerId"] == "b" * 12
    assert route["to"] == "http://127.0.0.1:8081" and route["rewriteHTML"] is True
    assert wire["availablePorts"][1] == {
        "port": 8082,
        "scheme": "http",
        "label": "HTTP port 81 (container port 81)",
        "containerPort": 81,
    }
    assert wire["lastSeen"].endswith("Z")


def test_sources_without_a_container_carry_no_container_fields() -> None:
    mdns = mdns_proposal("_http._tcp.local.", "NAS._http._tcp.local.", ["10.0.0.2"], 80, "nas.local.", {})
    assert mdns is not None
    wire = proposal_json(mdns)
    assert "containerId" not in wire["suggestedRoute"]
    assert wire["availablePorts"] == [{"port": 80, "scheme": "http", "label": "_http._tcp"}]
    svc = trim(
        {
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "apps", "labels": {"nekzus.enable": "true"}},
            "spec": {"clusterIP": "10.0.0.9", "ports": [{"port": 8080, "name": "http"}]},
        }
    )
    (kube,) = service_proposals(svc, {})
    assert proposal_json(kube)["suggestedApp"]["discoveryMeta"]["kind"] == "Service"


def test_record_round_trip_and_port_choice() -> None:
    proposal = _docker()
    assert Proposal.from_record(proposal.record()) == proposal
    other = proposal.with_port(proposal.ports[1])
    assert other.port == 8082 and other.route.target == "http://127.0.0.1:8082"
    assert other.app.details["containerPort"] == 81 and other.app.endpoints["lan"] == other.route.target
    assert other.material() != proposal.material()
    assert proposal.fingerprint() == _docker().fingerprint()
    body = approved_json(other.id, Approved(other, None))
    assert body["route"]["to"] == "http://127.0.0.1:8082" and "portExposure" not in body
    assert approved_json("x", None)["status"] == "already_processed"
