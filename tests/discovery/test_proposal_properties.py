"""Property tests for the label -> proposal rules of every discovery source (Docker labels, Kubernetes
labels/annotations, mDNS TXT): arbitrary input never raises, and a proposal's id is a valid, stable
handle (the same object always gives the same id, usable as one URL path segment)."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nekzus.discovery.kubernetes_worker import ingress_proposals, service_proposals, trim
from nekzus.discovery.labels import PortCandidate, build_proposal, plan_container
from nekzus.discovery.mdns import build_proposal as mdns_proposal
from nekzus.discovery.models import Proposal

# What the approve/dismiss routes accept as one path segment, and what every source promises.
VALID_ID = re.compile(r"^proposal_[A-Za-z0-9_-]{1,246}$")
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

text = st.text(max_size=80)
nekzus_keys = st.sampled_from(
    [
        "nekzus.enable",
        "nekzus.app.id",
        "nekzus.app.name",
        "nekzus.app.icon",
        "nekzus.app.tags",
        "nekzus.route.path",
        "nekzus.route.scopes",
        "nekzus.route.strip_prefix",
        "nekzus.route.websocket",
        "nekzus.scheme",
        "nekzus.port",
        "nekzus.primary_port",
        "nekzus.health.skip",
    ]
)
label_values = st.one_of(text, st.sampled_from(["true", "false", "yes", "0", "https", "/x/", "a,b", ""]))
labels = st.dictionaries(st.one_of(nekzus_keys, text), label_values, max_size=8)
ports = st.integers(min_value=-5, max_value=70000)


def _check(proposals: list[Proposal]) -> None:
    ids = [p.id for p in proposals]
    assert len(ids) == len(set(ids)), ids
    for p in proposals:
        assert VALID_ID.fullmatch(p.id), p.id
        assert p.source in ("docker", "kubernetes", "mdns")


def _ids(proposals: list[Proposal]) -> list[str]:
    return [p.id for p in proposals]


# -- Docker ---------------------------------------------------------------------------------------------


def _container(name: str, image: str, lab: dict[str, str], exposed: list[int]) -> dict[str, Any]:
    return {
        "Id": "a" * 64,
        "Name": "/" + name,
        "Config": {"Image": image, "Labels": lab, "ExposedPorts": {f"{p}/tcp": {} for p in exposed}},
        "State": {"Running": True},
        "NetworkSettings": {
            "Networks": {"bridge": {"IPAddress": "172.17.0.2"}},
            "Ports": {f"{p}/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(p)}] for p in exposed},
        },
    }


@SETTINGS
@given(
    name=text,
    image=text,
    lab=labels,
    exposed=st.lists(st.integers(min_value=1, max_value=65535), max_size=4, unique=True),
    mode=st.sampled_from(["all", "first", "published"]),
)
def test_docker_labels_never_crash_and_ids_are_stable(
    name: str, image: str, lab: dict[str, str], exposed: list[int], mode: str
) -> None:
    info = _container(name, image, lab, exposed)
    plan = plan_container(info, mode=mode)
    if plan is None or not plan.candidates:
        return
    first = build_proposal(plan, plan.candidates)
    again = build_proposal(plan_container(info, mode=mode) or plan, plan.candidates)
    _check([first])
    assert first.id == again.id
    assert first.app.id == again.app.id


@SETTINGS
@given(name=text, lab=labels, port=st.integers(min_value=1, max_value=65535))
def test_docker_proposal_from_any_labels(name: str, lab: dict[str, str], port: int) -> None:
    plan = plan_container(_container(name, "img", lab, [port]), mode="all")
    if plan is None:
        return
    proposal = build_proposal(plan, [PortCandidate(port, port, "http")])
    _check([proposal])
    route = proposal.route
    assert route.path_base.startswith("/") and route.path_base.endswith("/")
    assert ".." not in route.path_base


# -- Kubernetes -------------------------------------------------------------------------------------------

k8s_name = st.one_of(st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True), text)
k8s_port = st.fixed_dictionaries(
    {
        "name": st.one_of(text, st.sampled_from(["http", "https", "web", "metrics"])),
        "port": st.one_of(ports, text),
    },
    optional={"protocol": st.sampled_from(["TCP", "UDP", "SCTP", 7])},
)
junk = st.one_of(st.none(), st.integers(), text, st.lists(st.integers(), max_size=2))


@SETTINGS
@given(
    name=k8s_name,
    ns=k8s_name,
    lab=st.one_of(labels, junk),
    ann=st.one_of(labels, junk),
    ns_labels=labels,
    svc_type=st.sampled_from(["ClusterIP", "LoadBalancer", "NodePort", "ExternalName", ""]),
    svc_ports=st.one_of(st.lists(k8s_port, max_size=4), junk),
    cluster_ip=st.sampled_from(["10.0.0.1", "None", ""]),
)
def test_kubernetes_service_never_crashes_and_ids_are_stable(
    name: str,
    ns: str,
    lab: Any,
    ann: Any,
    ns_labels: dict[str, str],
    svc_type: str,
    svc_ports: Any,
    cluster_ip: str,
) -> None:
    raw = {
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "labels": lab, "annotations": ann},
        "spec": {"type": svc_type, "clusterIP": cluster_ip, "ports": svc_ports},
    }
    obj = trim(raw)
    first = service_proposals(obj, ns_labels)
    _check(first)
    assert _ids(first) == _ids(service_proposals(trim(raw), dict(ns_labels)))


rule = st.fixed_dictionaries(
    {},
    optional={
        "host": st.one_of(text, st.just("grafana.example.com")),
        "http": st.fixed_dictionaries(
            {
                "paths": st.lists(
                    st.fixed_dictionaries(
                        {
                            "path": st.one_of(text, st.just("/")),
                            "backend": st.fixed_dictionaries(
                                {
                                    "service": st.fixed_dictionaries(
                                        {
                                            "name": st.sampled_from(["web", "other", ""]),
                                            "port": st.one_of(
                                                st.fixed_dictionaries({"number": st.one_of(ports, text)}),
                                                st.fixed_dictionaries({"name": text}),
                                                junk,
                                            ),
                                        }
                                    )
                                }
                            ),
                        }
                    ),
                    max_size=3,
                )
            }
        ),
    },
)


@SETTINGS
@given(
    name=k8s_name,
    lab=labels,
    rules=st.lists(rule, max_size=3),
    tls_hosts=st.lists(text, max_size=2),
)
def test_kubernetes_ingress_never_crashes_and_ids_are_stable(
    name: str, lab: dict[str, str], rules: list[dict[str, Any]], tls_hosts: list[str]
) -> None:
    raw = {
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": "apps", "labels": lab},
        "spec": {"rules": rules, "tls": [{"hosts": tls_hosts}]},
    }
    web = trim(
        {
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "apps"},
            "spec": {"clusterIP": "10.0.0.1", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
        }
    )
    first = ingress_proposals(trim(raw), {}, {"web": web})
    _check(first)
    assert _ids(first) == _ids(ingress_proposals(trim(raw), {}, {"web": web}))


# -- mDNS ---------------------------------------------------------------------------------------------------

txt_keys = st.one_of(
    st.sampled_from(["app_id", "app_name", "path", "icon", "tags", "scopes", "scheme", "nekzus_enable"]), text
)


@SETTINGS
@given(
    kind=st.sampled_from(["_http._tcp.local.", "_https._tcp.local.", "_ssh._tcp.local.", "_x._tcp.local."]),
    instance=text,
    addresses=st.lists(st.one_of(st.ip_addresses().map(str), text), max_size=3),
    port=ports,
    server=text,
    txt=st.dictionaries(txt_keys, text, max_size=8),
)
def test_mdns_records_never_crash_and_ids_are_stable(
    kind: str, instance: str, addresses: list[str], port: int, server: str, txt: dict[str, str]
) -> None:
    name = f"{instance}.{kind}"
    first = mdns_proposal(kind, name, addresses, port, server, txt)
    if first is None:
        return
    _check([first])
    again = mdns_proposal(kind, name, list(addresses), port, server, dict(txt))
    assert again is not None and again.id == first.id
