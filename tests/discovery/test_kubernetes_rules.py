"""Kubernetes discovery rules as pure functions: opt-in and inference, namespace inheritance, malformed
labels, Ingress backends, and that nothing malformed raises."""

from __future__ import annotations

from typing import Any

from nekzus.discovery.kubernetes_worker import ingress_proposals, service_enabled, service_proposals, trim


def svc(
    name: str = "web",
    ns: str = "apps",
    labels: dict[str, Any] | None = None,
    annotations: dict[str, Any] | None = None,
    type_: str = "ClusterIP",
    ports: Any = None,
    cluster_ip: str = "10.0.0.1",
) -> dict[str, Any]:
    return trim(
        {
            "kind": "Service",
            "metadata": {"name": name, "namespace": ns, "labels": labels, "annotations": annotations},
            "spec": {
                "type": type_,
                "clusterIP": cluster_ip,
                "ports": [{"name": "http", "port": 80, "protocol": "TCP"}] if ports is None else ports,
            },
        }
    )


def test_inference_cases() -> None:
    assert service_enabled(svc(), {}) == (False, False)
    assert service_enabled(svc(labels={"app.kubernetes.io/component": "frontend"}), {})[0]
    assert service_enabled(svc(labels={"app": "x"}, type_="LoadBalancer"), {})[0]
    assert not service_enabled(svc(labels={"app": "x"}, type_="ClusterIP"), {})[0]
    assert service_enabled(svc(annotations={"sidecar.istio.io/inject": "true"}), {})[0]
    assert service_enabled(svc(), {"istio-injection": "enabled"})[0]
    helm = {"app.kubernetes.io/name": "x", "helm.sh/chart": "redis-18.0.0"}
    assert not service_enabled(svc(labels=helm), {})[0]
    helm["helm.sh/chart"] = "uptime-kuma-2.0.0"
    assert service_enabled(svc(labels=helm), {})[0]
    assert not service_enabled(svc(ns="kube-system", labels={"app.kubernetes.io/component": "ui"}), {})[0]
    assert service_enabled(svc(ns="kube-system", labels={"nekzus.enable": "true"}), {}) == (True, True)


def test_namespace_inheritance_and_override() -> None:
    assert service_enabled(svc(), {"nekzus.enable": "true"}) == (True, True)
    assert service_enabled(svc(labels={"nekzus.enable": "false"}), {"nekzus.enable": "true"})[0] is False
    assert service_enabled(svc(annotations={"nekzus.enable": "true"}), {"nekzus.enable": "false"})[0]
    # Identity keys are never inherited: two Services in one namespace keep their own app ids.
    a = service_proposals(svc("a"), {"nekzus.enable": "true", "nekzus.app.id": "shared"})
    b = service_proposals(svc("b"), {"nekzus.enable": "true", "nekzus.app.id": "shared"})
    assert a[0].app.id == "a" and b[0].app.id == "b"


def test_headless_and_malformed_never_raise() -> None:
    assert service_proposals(svc(labels={"nekzus.enable": "true"}, cluster_ip="None"), {}) == []
    weird = svc(
        labels={"nekzus.enable": "true", "nekzus.scheme": "ftp", "nekzus.route.scopes": " , ,"},
        ports=[{"port": 0}, {"port": True}, "garbage", {"port": 8443, "name": "web"}],
    )
    (p,) = service_proposals(weird, {})
    assert p.scheme == "https" and p.port == 8443
    assert p.route.scopes == ()
    assert any("nekzus.scheme" in w for w in p.warnings)
    # Labels that are not string maps are dropped, not fatal.
    broken = trim(
        {"kind": "Service", "metadata": {"name": "x", "labels": ["a"], "annotations": 5}, "spec": None}
    )
    assert broken["labels"] == {} and service_proposals(broken, {}) == []


def test_ingress_backend_tls_and_path() -> None:
    backend = svc("grafana", "mon", labels={"app.kubernetes.io/name": "grafana"})
    ingress = trim(
        {
            "kind": "Ingress",
            "metadata": {
                "name": "g",
                "namespace": "mon",
                "labels": {"app.kubernetes.io/name": "grafana", "nekzus.app.id": "dash"},
            },
            "spec": {
                "tls": [{"hosts": ["g.example"]}],
                "rules": [
                    {
                        "host": "g.example",
                        "http": {
                            "paths": [
                                {
                                    "path": "/grafana",
                                    "backend": {"service": {"name": "grafana", "port": {"name": "http"}}},
                                },
                                {
                                    "path": "/missing",
                                    "backend": {"service": {"name": "nope", "port": {"number": 80}}},
                                },
                            ]
                        },
                    },
                    {
                        "host": "plain.example",
                        "http": {
                            "paths": [{"backend": {"service": {"name": "grafana", "port": {"number": 80}}}}]
                        },
                    },
                    "junk",
                ],
            },
        }
    )
    out = {p.id: p for p in ingress_proposals(ingress, {}, {"grafana": backend})}
    assert set(out) == {
        "proposal_kubernetes-ingress_https_mon_g_grafana_443",
        "proposal_kubernetes-ingress_http_mon_g_80",
    }
    tls = out["proposal_kubernetes-ingress_https_mon_g_grafana_443"]
    assert tls.route.path_base == "/grafana/" and tls.app.id == "dash"
    plain = out["proposal_kubernetes-ingress_http_mon_g_80"]
    assert plain.route.target == "http://plain.example"
    assert plain.route.path_base == "/apps/dash/"
