"""Kubernetes discovery: Services and Ingresses in the configured namespaces become proposals.

Watch-based like an informer: each resource kind is listed (paginated) and then watched from the list's
`resourceVersion`; a watch that ends (server timeout) or drops mid-stream resumes from the last version
seen, a `410 Gone` (the version was compacted) triggers a fresh list, and a periodic full re-list
catches anything a watch could have missed. Objects are cached in a trimmed form (labels, annotations,
ports, rules) so memory stays proportional to what matters; proposals are recomputed only for the
objects that changed, and each object's proposal ids are remembered so a deleted Service withdraws
exactly its proposals.

Which Services are proposed: `nekzus.enable` on the Service (label or annotation) decides; otherwise the
namespace's `nekzus.enable` label (a namespace set to `false` needs an explicit `true` on the Service);
system namespaces are skipped; otherwise a Service is inferred to be a web app when it is in an Istio
mesh, is a LoadBalancer/NodePort with an identifying label, is a frontend/UI component, or comes from a
Helm chart that is not a known backend (databases, queues, ...). Headless Services are skipped; one
proposal per TCP port. `nekzus.*` settings are read from the Service's labels, then its annotations,
then (except the app identity keys, which name one app) the namespace's labels.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from nekzus.discovery.labels import _APP_ID, _PATH, DEFAULT_ICON, sanitize
from nekzus.discovery.models import PortOption, Proposal, Source, SuggestedApp, SuggestedRoute
from nekzus.metrics import Metrics
from nekzus.runtime.base import RuntimeErrorBase
from nekzus.runtime.kubernetes import KubeConnection, map_api_error

log = logging.getLogger("nekzus.discovery.kubernetes")

SOURCE = Source.KUBERNETES
PAGE_SIZE = 500
WATCH_TIMEOUT = 240  # seconds the server keeps one watch open (it then ends it cleanly; we resume)
MAX_LINE = 8 << 20  # one watch event above 8 MiB is treated as a broken stream
SYSTEM_NAMESPACES = {"kube-system", "kube-public", "kube-node-lease"}
IDENTIFYING_LABELS = ("app.kubernetes.io/name", "app", "app.kubernetes.io/instance")
UI_COMPONENTS = {"frontend", "ui", "web"}
APP_COMPONENTS = UI_COMPONENTS | {"dashboard"}
BACKEND_CHARTS = {
    "postgresql",
    "postgres",
    "mysql",
    "mariadb",
    "mongodb",
    "mongo",
    "redis",
    "memcached",
    "elasticsearch",
    "cassandra",
    "kafka",
    "rabbitmq",
    "nats",
    "etcd",
    "consul",
    "vault",
}
FRIENDLY_NAMES = {
    "grafana": "Grafana",
    "prometheus": "Prometheus",
    "argocd": "ArgoCD",
    "argo": "ArgoCD",
    "loki": "Loki",
    "tempo": "Tempo",
    "jaeger": "Jaeger",
    "nginx": "NGINX Ingress Controller",
    "ingress": "NGINX Ingress Controller",
    "cert": "Cert Manager",
    "external": "External DNS",
    "harbor": "Harbor",
    "vault": "Vault",
    "consul": "Consul",
    "linkerd": "Linkerd",
    "jenkins": "Jenkins",
    "gitlab": "GitLab",
    "sonarqube": "SonarQube",
    "nexus": "Nexus Repository",
    "artifactory": "Artifactory",
}
# Keys that name one app: never inherited from the namespace (every Service would share them).
_OWN_KEYS = {"nekzus.app.id", "nekzus.app.name", "nekzus.route.path", "nekzus.enable"}
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


# -- pure rules --------------------------------------------------------------------------------------


def _str_map(value: Any) -> dict[str, str]:
    """Labels/annotations as a str->str map; anything malformed is dropped, never fatal."""
    if not isinstance(value, dict):
        return {}
    return {
        str(k): str(v) for k, v in value.items() if isinstance(k, str) and isinstance(v, str | int | bool)
    }


def _list(value: Any) -> list[Any]:
    """A list field of an object; anything else (null, a scalar, a map) counts as empty."""
    return value if isinstance(value, list) else []


def _map(value: Any) -> dict[str, Any]:
    """A map field of an object; anything else counts as empty."""
    return value if isinstance(value, dict) else {}


def trim(obj: dict[str, Any]) -> dict[str, Any]:
    """What discovery keeps of an object (no status, managedFields, templates)."""
    meta: dict[str, Any] = obj["metadata"] if isinstance(obj.get("metadata"), dict) else {}
    spec: dict[str, Any] = obj["spec"] if isinstance(obj.get("spec"), dict) else {}
    out: dict[str, Any] = {
        "name": str(meta.get("name") or ""),
        "namespace": str(meta.get("namespace") or ""),
        "labels": _str_map(meta.get("labels")),
        "annotations": {
            k: v
            for k, v in _str_map(meta.get("annotations")).items()
            if k.startswith(("nekzus.", "sidecar.istio.io/"))
        },
    }
    kind = obj.get("kind")
    if kind == "Service" or "ports" in spec:
        out["type"] = str(spec.get("type") or "ClusterIP")
        out["clusterIP"] = str(spec.get("clusterIP") or "")
        ports = []
        for p in _list(spec.get("ports")):
            if isinstance(p, dict):
                ports.append(
                    {"name": str(p.get("name") or ""), "port": p.get("port"), "protocol": p.get("protocol")}
                )
        out["ports"] = ports
        lb = _list(_map(_map(obj.get("status")).get("loadBalancer")).get("ingress"))
        out["lb"] = [str(i.get("ip") or i.get("hostname") or "") for i in lb if isinstance(i, dict)]
    if "rules" in spec or "tls" in spec:
        out["tls"] = [
            [str(h) for h in _list(t.get("hosts"))] for t in _list(spec.get("tls")) if isinstance(t, dict)
        ]
        out["rules"] = _list(spec.get("rules"))
    return out


@dataclass
class Ctx:
    labels: dict[str, str]  # merged nekzus.* lookup (service/ingress first, then namespace)
    warnings: list[str]

    def get(self, key: str) -> str | None:
        return self.labels.get(key)

    def flag(self, key: str, default: bool) -> bool:
        raw = self.labels.get(key)
        if raw is None:
            return default
        value = raw.strip().lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        self.warnings.append(f"ignored malformed {key}={raw!r}")
        return default


def _lookup(obj: dict[str, Any], ns_labels: dict[str, str]) -> dict[str, str]:
    merged = {k: v for k, v in ns_labels.items() if k.startswith("nekzus.") and k not in _OWN_KEYS}
    merged.update({k: v for k, v in obj["annotations"].items() if k.startswith("nekzus.")})
    merged.update({k: v for k, v in obj["labels"].items() if k.startswith("nekzus.")})
    return merged


def _tri(value: str | None) -> bool | None:
    if value is None:
        return None
    v = value.strip().lower()
    return True if v in _TRUE else False if v in _FALSE else None


def _istio(svc: dict[str, Any], ns_labels: dict[str, str]) -> bool:
    labels = svc["labels"]
    return (
        ns_labels.get("istio-injection") == "enabled"
        or labels.get("istio-injection") == "enabled"
        or "istio.io/rev" in labels
        or "service.istio.io/canonical-name" in labels
        or svc["annotations"].get("sidecar.istio.io/inject") == "true"
    )


def _chart(labels: dict[str, str]) -> str:
    return labels.get("helm.sh/chart", "").split("-", 1)[0].lower()


def service_enabled(svc: dict[str, Any], ns_labels: dict[str, str]) -> tuple[bool, bool]:
    """(propose it?, explicitly enabled?)."""
    own = _tri(svc["labels"].get("nekzus.enable", svc["annotations"].get("nekzus.enable")))
    ns_flag = _tri(ns_labels.get("nekzus.enable"))
    if own is not None:
        return own, own
    if ns_flag is not None:
        return ns_flag, ns_flag
    if svc["namespace"] in SYSTEM_NAMESPACES:
        return False, False
    labels = svc["labels"]
    if _istio(svc, ns_labels):
        return True, False
    if svc.get("type") in ("LoadBalancer", "NodePort") and any(k in labels for k in IDENTIFYING_LABELS):
        return True, False
    component = labels.get("app.kubernetes.io/component", "").lower()
    if component in UI_COMPONENTS:
        return True, False
    if "app.kubernetes.io/name" in labels:
        chart = _chart(labels)
        if component in APP_COMPONENTS or (chart and chart not in BACKEND_CHARTS):
            return True, False
    return False, False


def _app_identity(obj: dict[str, Any], ctx: Ctx) -> tuple[str, bool, str]:
    """(app id, explicitly given?, display name)."""
    labels = obj["labels"]
    raw = ctx.get("nekzus.app.id")
    app_id, explicit = "", False
    if raw is not None:
        if _APP_ID.fullmatch(raw.strip()):
            app_id, explicit = raw.strip(), True
        else:
            ctx.warnings.append(f"ignored malformed nekzus.app.id={raw!r}")
    if not app_id:
        base = labels.get("app.kubernetes.io/name") or labels.get("app") or obj["name"]
        app_id = sanitize(base)[:64] or sanitize(obj["name"])[:64]
    name = (ctx.get("nekzus.app.name") or "").strip()
    if not name:
        name = labels.get("app.kubernetes.io/name") or labels.get("app") or ""
    if not name:
        chart = _chart(labels)
        name = next((v for k, v in FRIENDLY_NAMES.items() if chart.startswith(k)), "") if chart else ""
    return app_id, explicit, name or obj["name"]


def _scheme(ctx: Ctx, port_name: str, port: int) -> str:
    override = (ctx.get("nekzus.scheme") or "").strip().lower()
    if override in ("http", "https"):
        return override
    if override:
        ctx.warnings.append(f"ignored malformed nekzus.scheme={override!r}")
    name = port_name.lower()
    return "https" if ("https" in name or "tls" in name or port in (443, 8443)) else "http"


def _route_fields(ctx: Ctx, app_id: str, explicit: bool, target: str) -> SuggestedRoute:
    path_base = f"/apps/{app_id}/"
    raw_path = ctx.get("nekzus.route.path")
    if raw_path is not None:
        candidate = raw_path.strip()
        if _PATH.fullmatch(candidate) and ".." not in candidate and "//" not in candidate:
            path_base = candidate if candidate.endswith("/") else candidate + "/"
        else:
            ctx.warnings.append(f"ignored malformed nekzus.route.path={raw_path!r}")
    scopes_raw = (ctx.get("nekzus.route.scopes") or "").strip()
    if scopes_raw:
        scopes = [s.strip() for s in scopes_raw.split(",") if s.strip()]
    else:
        scopes = [f"access:{app_id}"] if explicit else []
    return SuggestedRoute(
        route_id=f"route_{app_id}",
        path_base=path_base,
        target=target,
        scopes=tuple(scopes),
        strip_prefix=ctx.flag("nekzus.route.strip_prefix", True),
        rewrite_html=ctx.flag("nekzus.route.rewrite_html", True),
        websocket=ctx.flag("nekzus.route.websocket", False),
        skip_health_check=ctx.flag("nekzus.health.skip", False),
    )


def _tags(ctx: Ctx, labels: dict[str, str]) -> list[str]:
    raw = (ctx.get("nekzus.app.tags") or "").strip()
    if raw:
        return [t.strip() for t in raw.split(",") if t.strip()]
    tags = ["kubernetes"]
    chart = _chart(labels)
    if chart in ("grafana", "prometheus", "loki", "tempo", "jaeger"):
        tags.append("monitoring")
    return tags


def _tcp_ports(svc: dict[str, Any], ctx: Ctx) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for p in svc.get("ports") or []:
        number = p.get("port")
        if isinstance(number, bool) or not isinstance(number, int) or not 0 < number < 65536:
            ctx.warnings.append(f"ignored malformed port {number!r}")
            continue
        if str(p.get("protocol") or "TCP").upper() != "TCP":
            continue
        out.append((str(p.get("name") or ""), number))
    return out


def service_proposals(svc: dict[str, Any], ns_labels: dict[str, str]) -> list[Proposal]:
    """The proposals (one per TCP port) for one Service; [] when it is not a candidate."""
    if svc.get("clusterIP") in ("", "None"):
        return []  # headless: no stable address to route to
    enabled, explicit_enable = service_enabled(svc, ns_labels)
    if not enabled:
        return []
    ctx = Ctx(_lookup(svc, ns_labels), [])
    ports = _tcp_ports(svc, ctx)
    if not ports:
        return []
    app_id, explicit_id, app_name = _app_identity(svc, ctx)
    ns, name = svc["namespace"], svc["name"]
    host = f"{name}.{ns}.svc.cluster.local"
    istio = _istio(svc, ns_labels)
    chart = _chart(svc["labels"])
    confidence = 0.95 if explicit_enable else (0.85 if explicit_id else 0.50)
    if istio:
        confidence += 0.2
    if chart and any(chart.startswith(k) for k in FRIENDLY_NAMES):
        confidence += 0.2
    if svc.get("type") in ("LoadBalancer", "NodePort"):
        confidence += 0.1
    if any(p in (80, 8080, 3000, 443) for _, p in ports):
        confidence += 0.1
    confidence = round(min(confidence, 1.0), 2)
    out = []
    for index, (port_name, port) in enumerate(ports):
        scheme = _scheme(ctx, port_name, port)
        pid_app = app_id if index == 0 else f"{app_id}-{sanitize(port_name or str(port))}"[:64]
        target = f"{scheme}://{host}:{port}"
        route = _route_fields(ctx, pid_app, explicit_id, target)
        endpoints: dict[str, str] = {"cluster": target}
        if svc.get("type") == "LoadBalancer" and svc.get("lb") and svc["lb"][0]:
            endpoints["lan"] = f"{scheme}://{svc['lb'][0]}:{port}"
        notes = ["Discovered via Kubernetes API", "JWT required", f"Namespace: {ns}"]
        if istio:
            notes.append("Istio service mesh sidecar")
        if scheme == "http":
            notes.append("Upstream uses HTTP (unencrypted)")
        if svc.get("type") == "LoadBalancer":
            notes.append("Exposed outside the cluster by a LoadBalancer")
        if svc.get("type") == "NodePort":
            notes.append("Exposed on every node by a NodePort")
        out.append(
            Proposal(
                id=f"proposal_kubernetes_{scheme}_{sanitize(f'{ns}_{name}')}_{port}",
                source=SOURCE,
                scheme=scheme,
                host=host,
                port=port,
                confidence=confidence,
                app=SuggestedApp(
                    id=pid_app,
                    name=app_name if index == 0 else f"{app_name} ({port_name or port})",
                    icon=(ctx.get("nekzus.app.icon") or "").strip() or DEFAULT_ICON,
                    tags=tuple(_tags(ctx, svc["labels"])),
                    endpoints=endpoints,
                    details={
                        "source": SOURCE.value,
                        "kind": "Service",
                        "namespace": ns,
                        "service": name,
                        "servicePort": port,
                    },
                ),
                route=route,
                ports=(PortOption(port=port, scheme=scheme, label=port_name or f"port {port}"),),
                notes=tuple(notes),
                warnings=tuple(dict.fromkeys(ctx.warnings)),
            )
        )
    return out


def ingress_proposals(
    ing: dict[str, Any], ns_labels: dict[str, str], services: dict[str, dict[str, Any]]
) -> list[Proposal]:
    """One proposal per rule path that points at a Service of the same namespace."""
    ns = ing["namespace"]
    own = _tri(ing["labels"].get("nekzus.enable", ing["annotations"].get("nekzus.enable")))
    if own is False:
        return []
    if own is not True and (ns in SYSTEM_NAMESPACES or "app.kubernetes.io/name" not in ing["labels"]):
        return []
    tls_hosts = {h for hosts in ing.get("tls") or [] for h in hosts}
    has_tls = bool(ing.get("tls"))
    out = []
    for rule in ing.get("rules") or []:
        if not isinstance(rule, dict):
            continue
        rule_host = str(rule.get("host") or "")
        http = rule["http"] if isinstance(rule.get("http"), dict) else {}
        for path in _list(http.get("paths")):
            if not isinstance(path, dict):
                continue
            backend = _map(_map(path.get("backend")).get("service"))
            svc = services.get(str(backend.get("name") or ""))
            if svc is None:
                continue
            port_ref = _map(backend.get("port"))
            svc_port = None
            for p in svc.get("ports") or []:
                if p.get("port") == port_ref.get("number") or (
                    port_ref.get("name") and p.get("name") == port_ref.get("name")
                ):
                    svc_port = p.get("port")
            if not isinstance(svc_port, int) or isinstance(svc_port, bool):
                continue
            # Ingress settings win over the Service's for identity, icon and scopes.
            svc_ctx = _lookup(svc, ns_labels)
            ctx = Ctx({**svc_ctx, **_lookup(ing, {})}, [])
            base = {**svc, "labels": {**svc["labels"], **ing["labels"]}}
            app_id, explicit_id, app_name = _app_identity(base, ctx)
            override = (ctx.get("nekzus.scheme") or "").strip().lower()
            scheme = (
                override
                if override in ("http", "https")
                else ("https" if (rule_host in tls_hosts or (has_tls and not rule_host)) else "http")
            )
            svc_host = f"{svc['name']}.{ns}.svc.cluster.local"
            host = rule_host or svc_host
            port = (443 if scheme == "https" else 80) if rule_host else svc_port
            raw_path = str(path.get("path") or "")
            target = f"{scheme}://{host}" + (f":{port}" if not rule_host else "")
            route = _route_fields(ctx, app_id, explicit_id, target)
            if raw_path not in ("", "/") and _PATH.fullmatch(raw_path) and ".." not in raw_path:
                route = replace(route, path_base=raw_path if raw_path.endswith("/") else raw_path + "/")
            notes = ["Discovered via Ingress", "JWT required", f"Namespace: {ns}"]
            if scheme == "https":
                notes.append("TLS termination at Ingress")
            else:
                notes.append("Upstream uses HTTP (unencrypted)")
            key = sanitize(f"{ns}/{ing['name']}{raw_path}")
            out.append(
                Proposal(
                    id=f"proposal_kubernetes-ingress_{scheme}_{key}_{port}",
                    source=SOURCE,
                    scheme=scheme,
                    host=host,
                    port=port,
                    confidence=0.95 if own else (0.85 if explicit_id else 0.7),
                    app=SuggestedApp(
                        id=app_id,
                        name=app_name,
                        icon=(ctx.get("nekzus.app.icon") or "").strip() or DEFAULT_ICON,
                        tags=tuple(_tags(ctx, base["labels"])),
                        endpoints={"cluster": f"http://{svc_host}:{svc_port}", "ingress": target},
                        details={
                            "source": SOURCE.value,
                            "kind": "Ingress",
                            "namespace": ns,
                            "ingress": ing["name"],
                            "service": svc["name"],
                            "servicePort": svc_port,
                            "host": rule_host,
                            "path": raw_path or "/",
                            "tls": scheme == "https",
                        },
                    ),
                    route=route,
                    ports=(PortOption(port=port, scheme=scheme, label=f"Ingress {host}"),),
                    notes=tuple(notes),
                    warnings=tuple(dict.fromkeys(ctx.warnings)),
                )
            )
    return out


def _fingerprint(p: Proposal) -> Proposal:
    return p.fingerprint()


# -- the worker --------------------------------------------------------------------------------------


class Gone(Exception):
    """The watch's resourceVersion was compacted away (410): list again."""


Submit = Callable[[Proposal], Awaitable[Any]]
Withdraw = Callable[[list[str]], Awaitable[Any]]
Retain = Callable[[Source, set[str]], Awaitable[Any]]


class KubernetesWorker:
    """List+watch reflectors for Namespaces, Services and Ingresses feeding the discovery manager."""

    name = SOURCE

    def __init__(
        self,
        conn: KubeConnection,
        *,
        submit: Submit,
        withdraw: Withdraw,
        retain: Retain,
        namespaces: list[str],
        resync_interval: float,
        metrics: Metrics | None = None,
        watch_timeout: int = WATCH_TIMEOUT,
    ) -> None:
        self.conn = conn
        self.submit, self.withdraw, self.retain = submit, withdraw, retain
        self.namespaces = [n for n in namespaces if n]
        self.resync_interval = max(float(resync_interval), 1.0)
        self.metrics = metrics
        self.watch_timeout = watch_timeout
        self.healthy = False
        self.last_error = ""
        # (kind, namespace, name) -> trimmed object
        self.cache: dict[tuple[str, str, str], dict[str, Any]] = {}
        # object -> {proposal id: its fingerprint}
        self.emitted: dict[tuple[str, str, str], dict[str, Proposal]] = {}
        self._index: dict[tuple[str, str], set[str]] = {}  # (kind, namespace) -> names, for fan-out
        self._dirty: set[tuple[str, str, str]] = set()
        self._wake = asyncio.Event()
        self._kick = asyncio.Event()
        self._synced: set[str] = set()
        self.relists = 0
        self.gone = 0

    def _scope_list(self) -> list[str | None]:
        return list(self.namespaces) if self.namespaces else [None]

    def kick(self) -> None:
        """Re-evaluate everything now (rediscover): forget what was already submitted."""
        self.emitted.clear()
        self._dirty.update(self.cache.keys())
        self._wake.set()
        self._kick.set()

    # -- loops -----------------------------------------------------------------------------------------

    async def run(self) -> None:
        if self.metrics is not None:
            self.metrics.discovery_workers_active.inc()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._reflect("Namespace", None))
                for ns in self._scope_list():
                    group.create_task(self._reflect("Service", ns))
                    group.create_task(self._reflect("Ingress", ns))
                group.create_task(self._process_loop())
        finally:
            if self.metrics is not None:
                self.metrics.discovery_workers_active.dec()

    async def _api_calls(self, kind: str, ns: str | None) -> Callable[..., Awaitable[Any]]:
        call: Callable[..., Awaitable[Any]]
        if kind == "Namespace":
            core = await self.conn.core()
            call = core.list_namespace
        elif kind == "Service":
            core = await self.conn.core()
            if ns is None:
                call = core.list_service_for_all_namespaces
            else:
                call = lambda **kw: core.list_namespaced_service(ns, **kw)  # noqa: E731
        else:
            net = await self.conn.networking()
            if ns is None:
                call = net.list_ingress_for_all_namespaces
            else:
                call = lambda **kw: net.list_namespaced_ingress(ns, **kw)  # noqa: E731
        return call

    async def _reflect(self, kind: str, ns: str | None) -> None:
        """List, then watch from the list's version; re-list on 410 and every resync interval."""
        delay = 1.0
        scope = f"{kind}/{ns or '*'}"
        while True:
            try:
                fn = await self._api_calls(kind, ns)
                rv = await self._list(kind, ns, fn)
                self._synced.add(scope)
                self.healthy, self.last_error, delay = True, "", 1.0
                deadline = time.monotonic() + self.resync_interval
                while time.monotonic() < deadline:
                    try:
                        rv = await self._watch(kind, fn, rv, deadline)
                    except Gone:
                        self.gone += 1
                        log.info(
                            "kubernetes watch %s: resourceVersion %s expired (410); re-listing", scope, rv
                        )
                        break
                    except (RuntimeErrorBase, OSError, TimeoutError, ValueError) as exc:
                        # A watch cut mid-stream: resume from the last version seen.
                        log.info("kubernetes watch %s dropped (%s); resuming at %s", scope, exc, rv)
                        await asyncio.sleep(min(delay, 5.0))
                        delay = min(delay * 2, 30.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                err = map_api_error(exc)
                if kind == "Namespace" and "(403)" in str(getattr(err, "message", "")):
                    # Namespace-scoped permissions only: no namespace labels, so no inheritance.
                    log.warning(
                        "kubernetes discovery: namespaces not listable (403); namespace labels ignored"
                    )
                    self._synced.add(scope)
                    self._wake.set()
                    return
                self.healthy = False
                self.last_error = str(getattr(err, "message", err))
                log.warning("kubernetes discovery %s: %s; retrying in %.0fs", scope, self.last_error, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._kick.wait(), delay)
                self._kick.clear()
                delay = min(delay * 2, 60.0)

    async def _list(self, kind: str, ns: str | None, fn: Callable[..., Awaitable[Any]]) -> str:
        started = time.perf_counter()
        seen: set[tuple[str, str, str]] = set()
        token: str | None = None
        rv = ""
        for _page in range(100_000 // PAGE_SIZE + 1):  # bounded: at most 100k objects per kind
            kwargs: dict[str, Any] = {"limit": PAGE_SIZE, "_preload_content": False, "_request_timeout": 60}
            if token:
                kwargs["_continue"] = token
            try:
                response = await fn(**kwargs)
                body = await _read_body(response)
            except Exception as exc:
                raise map_api_error(exc) from None
            meta = body.get("metadata") or {}
            rv = str(meta.get("resourceVersion") or rv)
            for item in body.get("items") or []:
                if isinstance(item, dict):
                    item.setdefault("kind", kind)
                    key = self._store(kind, item)
                    if key is not None:
                        seen.add(key)
            token = meta.get("continue") or None
            if not token:
                break
        for key in [k for k in self.cache if k[0] == kind and (ns is None or k[1] == ns) and k not in seen]:
            self._forget(key)
        self.relists += 1
        if self.metrics is not None:
            self.metrics.discovery_scans_total.labels(SOURCE, "success").inc()
            self.metrics.discovery_scan_duration_seconds.labels(SOURCE).observe(time.perf_counter() - started)
        self._wake.set()
        return rv

    async def _watch(self, kind: str, fn: Callable[..., Awaitable[Any]], rv: str, deadline: float) -> str:
        timeout = max(1, min(self.watch_timeout, int(deadline - time.monotonic()) + 1))
        try:
            response = await fn(
                watch=True,
                resource_version=rv,
                timeout_seconds=timeout,
                allow_watch_bookmarks=True,
                _preload_content=False,
                _request_timeout=timeout + 30,
            )
        except Exception as exc:
            mapped = map_api_error(exc)
            if getattr(exc, "status", None) == 410:
                raise Gone() from None
            raise mapped from None
        try:
            if response.status == 410:
                raise Gone()
            if not 200 <= response.status <= 299:
                raise map_api_error(_status_error(response.status))
            buffer = b""
            async for chunk in response.content.iter_any():
                buffer += chunk
                if len(buffer) > MAX_LINE:
                    raise ValueError("watch event too large")
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    rv = self._event(kind, line, rv)
            if buffer.strip():
                rv = self._event(kind, buffer, rv)
        except Exception as exc:
            if isinstance(exc, Gone | ValueError | RuntimeErrorBase):
                raise
            raise map_api_error(exc) from None
        finally:
            response.release()
        return rv

    def _event(self, kind: str, line: bytes, rv: str) -> str:
        if not line.strip():
            return rv
        try:
            event = json.loads(line)
        except ValueError:
            log.debug("skipped an unreadable watch line")
            return rv
        if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
            return rv
        obj = event["object"]
        etype = str(event.get("type") or "")
        if etype == "ERROR":
            if obj.get("code") == 410:
                raise Gone()
            raise ValueError(f"watch error {obj.get('code')}: {obj.get('message')}")
        new_rv = str((obj.get("metadata") or {}).get("resourceVersion") or rv)
        if etype == "BOOKMARK":
            return new_rv
        obj.setdefault("kind", kind)
        if etype == "DELETED":
            meta = obj.get("metadata") or {}
            ns = "" if kind == "Namespace" else str(meta.get("namespace") or "")
            self._forget((kind, ns, str(meta.get("name") or "")))
        elif etype in ("ADDED", "MODIFIED"):
            self._store(kind, obj)
        self._wake.set()
        return new_rv

    # -- cache -----------------------------------------------------------------------------------------

    def _store(self, kind: str, obj: dict[str, Any]) -> tuple[str, str, str] | None:
        try:
            trimmed = trim(obj)
        except Exception:
            log.debug("skipped a malformed %s", kind)
            return None
        if not trimmed["name"]:
            return None
        ns = "" if kind == "Namespace" else trimmed["namespace"]
        key = (kind, ns, trimmed["name"])
        if self.cache.get(key) != trimmed:
            self.cache[key] = trimmed
            self._index.setdefault((kind, ns), set()).add(key[2])
            self._mark(key)
        return key

    def _forget(self, key: tuple[str, str, str]) -> None:
        if self.cache.pop(key, None) is not None:
            self._index.get((key[0], key[1]), set()).discard(key[2])
            self._mark(key)

    def _names(self, kind: str, ns: str) -> set[str]:
        return self._index.get((kind, ns), set())

    def _mark(self, key: tuple[str, str, str]) -> None:
        kind, ns, name = key
        if kind == "Namespace":
            # Namespace labels feed inheritance: re-evaluate everything inside it.
            for child in ("Service", "Ingress"):
                self._dirty.update((child, name, n) for n in self._names(child, name))
        elif kind == "Service":
            # Ingresses of the namespace resolve their backends through Services.
            self._dirty.add(key)
            self._dirty.update(("Ingress", ns, n) for n in self._names("Ingress", ns))
        else:
            self._dirty.add(key)

    # -- proposals -------------------------------------------------------------------------------------

    async def _process_loop(self) -> None:
        first = True
        while True:
            await self._wake.wait()
            await asyncio.sleep(0.2)  # coalesce a burst of events
            self._wake.clear()
            try:
                await self.process()
                if first and {"Namespace/*"} | self._scopes() <= self._synced:
                    first = False
                    live = {pid for ids in self.emitted.values() for pid in ids}
                    await self.retain(SOURCE, live)  # drop proposals of objects gone while we were down
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("kubernetes discovery processing failed")

    def _scopes(self) -> set[str]:
        return {f"{k}/{ns or '*'}" for ns in self._scope_list() for k in ("Service", "Ingress")}

    async def process(self) -> None:
        dirty, self._dirty = self._dirty, set()
        for key in sorted(dirty):
            kind, ns, name = key
            if kind == "Namespace":
                continue
            obj = self.cache.get(key)
            proposals: list[Proposal] = []
            if obj is not None:
                ns_labels = (self.cache.get(("Namespace", "", ns)) or {}).get("labels") or {}
                try:
                    if kind == "Service":
                        proposals = service_proposals(obj, ns_labels)
                    else:
                        services = {
                            n: self.cache[("Service", ns, n)]
                            for n in self._names("Service", ns)
                            if ("Service", ns, n) in self.cache
                        }
                        proposals = ingress_proposals(obj, ns_labels, services)
                except Exception:
                    log.warning("kubernetes %s %s/%s: could not evaluate", kind, ns, name, exc_info=True)
                    proposals = []
            before = self.emitted.get(key, {})
            now = {p.id: _fingerprint(p) for p in proposals}
            gone = [pid for pid in before if pid not in now]
            if gone:
                await self.withdraw(gone)
            for p in proposals:
                if before.get(p.id) != now[p.id]:
                    if p.warnings:
                        log.info("%s %s/%s: %s", kind, ns, name, "; ".join(p.warnings))
                    await self.submit(p)
            if now:
                self.emitted[key] = now
            else:
                self.emitted.pop(key, None)


async def _read_body(response: Any) -> dict[str, Any]:
    try:
        raw = await response.read()
        if not 200 <= response.status <= 299:
            raise _status_error(response.status)
        body = json.loads(raw)
    finally:
        response.release()
    return body if isinstance(body, dict) else {}


def _status_error(status: int) -> Exception:
    from kubernetes_asyncio.client.exceptions import ApiException

    return ApiException(status=status, reason="watch/list failed")
