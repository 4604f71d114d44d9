"""Realistic cluster objects: what `helm install grafana grafana/grafana -n monitoring` leaves behind, an
Istio-injected namespace with the bookinfo product page, an Ingress with TLS, a StatefulSet database and a
bare debugging pod."""

from __future__ import annotations

from typing import Any

GRAFANA_LABELS = {
    "app.kubernetes.io/name": "grafana",
    "app.kubernetes.io/instance": "grafana",
    "app.kubernetes.io/version": "11.2.0",
    "app.kubernetes.io/managed-by": "Helm",
    "helm.sh/chart": "grafana-8.5.1",
}


def namespace(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}


def container(name: str, image: str, port: int, port_name: str = "http") -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "ports": [{"name": port_name, "containerPort": port, "protocol": "TCP"}],
        "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m"}},
    }


def deployment(
    name: str, ns: str, labels: dict[str, str], image: str, port: int, replicas: int = 1
) -> dict[str, Any]:
    selector = {
        k: v
        for k, v in labels.items()
        if k in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app")
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [container(name, image, port)]},
            },
        },
    }


def service(
    name: str,
    ns: str,
    labels: dict[str, str],
    ports: list[dict[str, Any]],
    *,
    type_: str = "ClusterIP",
    annotations: dict[str, str] | None = None,
    cluster_ip: str = "10.96.12.34",
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "labels": labels, "annotations": annotations or {}},
        "spec": {
            "type": type_,
            "clusterIP": cluster_ip,
            "selector": {"app.kubernetes.io/name": labels.get("app.kubernetes.io/name", name)},
            "ports": ports,
        },
    }


def grafana() -> list[dict[str, Any]]:
    return [
        namespace("monitoring", {"kubernetes.io/metadata.name": "monitoring"}),
        deployment("grafana", "monitoring", GRAFANA_LABELS, "docker.io/grafana/grafana:11.2.0", 3000),
        service(
            "grafana",
            "monitoring",
            GRAFANA_LABELS,
            [{"name": "service", "port": 80, "protocol": "TCP", "targetPort": 3000}],
            annotations={
                "meta.helm.sh/release-name": "grafana",
                "meta.helm.sh/release-namespace": "monitoring",
            },
        ),
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {
                "name": "grafana",
                "namespace": "monitoring",
                "labels": GRAFANA_LABELS,
                "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"},
            },
            "spec": {
                "ingressClassName": "nginx",
                "tls": [{"hosts": ["grafana.home.example"], "secretName": "grafana-tls"}],
                "rules": [
                    {
                        "host": "grafana.home.example",
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": "grafana", "port": {"number": 80}}},
                                }
                            ]
                        },
                    }
                ],
            },
        },
    ]


def istio_bookinfo() -> list[dict[str, Any]]:
    labels = {"app": "productpage", "version": "v1", "service.istio.io/canonical-name": "productpage"}
    return [
        namespace("bookinfo", {"istio-injection": "enabled"}),
        deployment(
            "productpage-v1",
            "bookinfo",
            labels,
            "docker.io/istio/examples-bookinfo-productpage-v1:1.20.1",
            9080,
        ),
        service(
            "productpage",
            "bookinfo",
            {"app": "productpage", "service": "productpage"},
            [{"name": "http", "port": 9080, "protocol": "TCP", "targetPort": 9080}],
        ),
    ]


def database_and_debug() -> list[dict[str, Any]]:
    pg_labels = {"app.kubernetes.io/name": "postgresql", "helm.sh/chart": "postgresql-15.5.0"}
    return [
        namespace("default"),
        namespace("kube-system"),
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "postgres", "namespace": "default", "labels": pg_labels},
            "spec": {
                "replicas": 1,
                "serviceName": "postgres",
                "selector": {"matchLabels": {"app.kubernetes.io/name": "postgresql"}},
                "template": {
                    "metadata": {"labels": pg_labels},
                    "spec": {
                        "containers": [
                            container("postgres", "docker.io/library/postgres:16", 5432, "tcp-postgresql")
                        ]
                    },
                },
            },
        },
        service(
            "postgres", "default", pg_labels, [{"name": "tcp-postgresql", "port": 5432, "protocol": "TCP"}]
        ),
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "debug", "namespace": "default", "labels": {"run": "debug"}},
            "spec": {"containers": [{"name": "debug", "image": "docker.io/library/busybox:1.36"}]},
            "status": {
                "phase": "Running",
                "podIP": "10.244.0.99",
                "containerStatuses": [
                    {
                        "name": "debug",
                        "image": "busybox:1.36",
                        "imageID": "docker.io/library/busybox@sha256:" + "0" * 64,
                        "ready": True,
                        "restartCount": 0,
                        "state": {"running": {"startedAt": "2026-12-01T20:00:00Z"}},
                    }
                ],
            },
        },
        service(
            "kube-dns",
            "kube-system",
            {"k8s-app": "kube-dns"},
            [{"name": "dns-tcp", "port": 53, "protocol": "TCP"}],
        ),
    ]


def all_objects() -> list[dict[str, Any]]:
    return grafana() + istio_bookinfo() + database_and_debug()
