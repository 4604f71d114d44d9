"""From one `docker inspect` result to a discovery plan and proposal, as pure functions.

Discovery is opt-in (proposing every container on the host only buries the useful ones): a container
is considered only when it carries
`nekzus.enable=true`, another `nekzus.*` discovery label, `traefik.enable=true` or a `caddy` label.
Malformed labels are ignored (the default is used) and reported as warnings, never fatal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from nekzus.discovery.models import PortOption, Proposal, Source, SuggestedApp, SuggestedRoute

NON_HTTP_PORTS = {21, 22, 23, 25, 53, 110, 143, 389, 636, 1883, 3306, 5432, 5672, 6379, 11211, 27017}
SYSTEM_IMAGES = ("k8s.gcr.io/", "gcr.io/k8s", "rancher/", "portainer/", "traefik:", "caddy:")
KNOWN_IMAGES = (
    "nginx",
    "grafana",
    "prometheus",
    "postgres",
    "mysql",
    "redis",
    "mongo",
    "elasticsearch",
    "kibana",
    "jenkins",
    "gitlab",
    "nextcloud",
    "wordpress",
    "ghost",
    "plex",
)
OPT_IN_LABELS = (
    "nekzus.app.id",
    "nekzus.app.name",
    "nekzus.route.path",
    "nekzus.primary_port",
    "nekzus.discover.all_ports",
)
_APP_ID = re.compile(r"^[\w-]{1,64}$", re.UNICODE)
_PATH = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$")
LOOPBACK_BINDINGS = {"", "0.0.0.0", "::", "127.0.0.1", "::1"}
DEFAULT_ICON = "📦"


def sanitize(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", value)


@dataclass
class PortCandidate:
    container_port: int
    port: int  # what the route targets: published host port in `published` mode, else container port
    scheme: str


@dataclass
class Plan:
    """What discovery knows about a container before probing its ports."""

    container_id: str
    name: str
    image: str
    labels: dict[str, str]
    host: str
    mode: str
    candidates: list[PortCandidate]
    probe: bool
    warnings: list[str] = field(default_factory=list)


def _bool(labels: dict[str, str], key: str, default: bool, warnings: list[str]) -> bool:
    raw = labels.get(key)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    warnings.append(f"ignored malformed label {key}={raw!r}")
    return default


def skip_reason(info: dict[str, Any], is_self: bool) -> str | None:
    """Why this container is not a discovery candidate (None = consider it)."""
    labels = (info.get("Config") or {}).get("Labels") or {}
    name = str(info.get("Name", "")).lstrip("/")
    image = str((info.get("Config") or {}).get("Image") or "")
    if is_self:
        return "self"
    if labels.get("nekzus.skip", "").strip().lower() == "true":
        return "nekzus.skip"
    if not labels.get("nekzus.test") and (re.search("(?i)nekzus", name) or re.search("(?i)nekzus", image)):
        return "system"
    if any(marker in image for marker in SYSTEM_IMAGES):
        return "system"
    enable = labels.get("nekzus.enable", "").strip().lower()
    if enable == "false":
        return "disabled"
    opted_in = (
        enable == "true"
        or any(labels.get(k) for k in OPT_IN_LABELS)
        or labels.get("traefik.enable", "").lower() == "true"
        or any(k == "caddy" or k.startswith(("caddy.", "caddy_")) for k in labels)
    )
    if not opted_in:
        return "not opted in"
    if not (info.get("State") or {}).get("Running"):
        return "not running"
    return None


def _scheme_for(container_port: int, override: str | None) -> str:
    if override:
        return override
    return "https" if container_port in (443, 8443) else "http"


def plan_container(
    info: dict[str, Any],
    *,
    mode: str,
    networks: list[str] | None = None,
    exclude_networks: list[str] | None = None,
) -> Plan | None:
    """Host and candidate ports for one running container (None = nothing reachable)."""
    config = info.get("Config") or {}
    labels = {str(k): str(v) for k, v in (config.get("Labels") or {}).items()}
    warnings: list[str] = []
    scheme_label = labels.get("nekzus.scheme")
    override: str | None = None
    if scheme_label is not None:
        if scheme_label.strip().lower() in ("http", "https"):
            override = scheme_label.strip().lower()
        else:
            warnings.append(f"ignored malformed label nekzus.scheme={scheme_label!r}")
    settings = info.get("NetworkSettings") or {}
    port_map: dict[str, Any] = settings.get("Ports") or {}
    host_mode = (info.get("HostConfig") or {}).get("NetworkMode") == "host"

    pairs: dict[int, int] = {}  # container port -> targeted port
    if mode == "published" or host_mode:
        host = "127.0.0.1"
        if host_mode:
            for spec in config.get("ExposedPorts") or {}:
                number, _, proto = spec.partition("/")
                if (proto or "tcp") == "tcp" and number.isdigit():
                    pairs[int(number)] = int(number)
        for spec, bindings in port_map.items():
            number, _, proto = spec.partition("/")
            if (proto or "tcp") != "tcp" or not number.isdigit():
                continue
            for binding in bindings or []:
                hip = str((binding or {}).get("HostIp") or "")
                hport = str((binding or {}).get("HostPort") or "")
                if hip in LOOPBACK_BINDINGS and hport.isdigit():
                    pairs.setdefault(int(number), int(hport))
                    break
    else:
        nets: dict[str, Any] = settings.get("Networks") or {}
        names = sorted(nets)
        if networks:
            names = [n for n in names if n in networks]
        if exclude_networks:
            names = [n for n in names if n not in exclude_networks]
        if mode == "preferred" and networks:
            preferred = [n for n in networks if n in names]
            names = preferred[:1] or names[:1]
        elif mode == "first":
            names = names[:1]
        ips = [str(nets[n].get("IPAddress") or "") for n in names]
        ips = [ip for ip in ips if ip]
        if not ips:
            return None
        host = ips[0]
        specs = set(port_map) | set(config.get("ExposedPorts") or {})
        for spec in specs:
            number, _, proto = spec.partition("/")
            if (proto or "tcp") == "tcp" and number.isdigit():
                pairs[int(number)] = int(number)

    candidates = [PortCandidate(c, p, _scheme_for(c, override)) for c, p in sorted(pairs.items())]
    probe = True
    primary = labels.get("nekzus.primary_port")
    if primary is not None:
        if primary.strip().isdigit() and 0 < int(primary) < 65536:
            candidates = [c for c in candidates if c.container_port == int(primary)]
            probe = False
        else:
            warnings.append(f"ignored malformed label nekzus.primary_port={primary!r}")
    if probe and _bool(labels, "nekzus.discover.all_ports", False, warnings):
        probe = False
    if probe:
        candidates = [c for c in candidates if c.container_port not in NON_HTTP_PORTS]
    if not candidates:
        return None
    return Plan(
        container_id=str(info.get("Id", "")),
        name=str(info.get("Name", "")).lstrip("/"),
        image=str(config.get("Image") or ""),
        labels=labels,
        host=host,
        mode="published" if (mode == "published" or host_mode) else mode,
        candidates=candidates,
        probe=probe,
        warnings=warnings,
    )


def _auto_tags(image: str, ports: list[int]) -> list[str]:
    tags = ["docker"]
    lower = image.lower()
    hints = (
        (("postgres", "mysql", "mongo"), ["database"]),
        (("nginx", "apache", "httpd"), ["web", "http"]),
        (("redis", "memcached"), ["cache"]),
        (("grafana", "prometheus"), ["monitoring"]),
    )
    for words, add in hints:
        if any(w in lower for w in words):
            tags.extend(add)
    port_hints = {80: "http", 8080: "http", 8000: "http", 3000: "http", 443: "https", 8443: "https"}
    port_hints.update({5432: "postgres", 3306: "mysql", 6379: "redis", 27017: "mongodb"})
    for port in ports:
        if port in port_hints:
            tags.append(port_hints[port])
    return list(dict.fromkeys(tags))


def build_proposal(plan: Plan, ports: list[PortCandidate]) -> Proposal:
    """The proposal for a container whose HTTP ports are known (ports non-empty)."""
    labels = plan.labels
    warnings = plan.warnings
    primary = ports[0]
    short = plan.container_id[:12]
    service = labels.get("nekzus.app.name", "").strip() or plan.name or plan.image.rsplit("/", 1)[-1] or short
    app_id = sanitize(service)
    raw_id = labels.get("nekzus.app.id")
    has_app_id = False
    if raw_id is not None:
        if _APP_ID.fullmatch(raw_id.strip()):
            app_id, has_app_id = raw_id.strip(), True
        else:
            warnings.append(f"ignored malformed label nekzus.app.id={raw_id!r}")
    app_name = labels.get("nekzus.app.name", "").strip() or service
    path_base = f"/apps/{app_id}/"
    raw_path = labels.get("nekzus.route.path")
    if raw_path is not None:
        candidate = raw_path.strip()
        if _PATH.fullmatch(candidate) and ".." not in candidate and "//" not in candidate:
            path_base = candidate if candidate.endswith("/") else candidate + "/"
        else:
            warnings.append(f"ignored malformed label nekzus.route.path={raw_path!r}")
    if labels.get("nekzus.app.tags", "").strip():
        tags = [t.strip() for t in labels["nekzus.app.tags"].split(",") if t.strip()]
    else:
        tags = _auto_tags(plan.image, [p.container_port for p in ports])
    if labels.get("nekzus.route.scopes", "").strip():
        scopes = [s.strip() for s in labels["nekzus.route.scopes"].split(",") if s.strip()]
    elif has_app_id:
        scopes = [f"access:{app_id}"]
    else:
        scopes = []
    strip_prefix = _bool(labels, "nekzus.route.strip_prefix", True, warnings)
    rewrite_html = _bool(labels, "nekzus.route.rewrite_html", True, warnings)
    websocket = _bool(labels, "nekzus.route.websocket", False, warnings)
    skip_health = _bool(labels, "nekzus.health.skip", False, warnings)

    enabled = labels.get("nekzus.enable", "").strip().lower() == "true"
    confidence = 0.95 if enabled else (0.85 if has_app_id else 0.50)
    image = plan.image.lower()
    if any(k in image for k in KNOWN_IMAGES):
        confidence += 0.20
    if any(p.container_port in (80, 8080, 3000) for p in ports):
        confidence += 0.10
    if labels.get("traefik.enable", "").lower() == "true" or any(k.startswith("caddy") for k in labels):
        confidence += 0.15
    if not enabled:
        confidence = min(confidence, 0.85)
    confidence = round(min(confidence, 1.0), 2)

    target = f"{primary.scheme}://{plan.host}:{primary.port}"
    notes = ["Discovered via Docker API", "JWT required"]
    if primary.scheme == "http":
        notes.append("Upstream uses HTTP (unencrypted)")
    if plan.host.startswith(("127.", "172.", "192.168.", "10.")):
        notes.append("Private network address")
    available = tuple(
        PortOption(
            port=p.port,
            scheme=p.scheme,
            label=("Main UI" if i == 0 else f"{p.scheme.upper()} port {p.container_port}")
            + (f" (container port {p.container_port})" if p.port != p.container_port else ""),
            container_port=p.container_port,
        )
        for i, p in enumerate(ports)
    )
    return Proposal(
        id=f"proposal_docker_{primary.scheme}_{sanitize(plan.name or short)}_{primary.container_port}",
        source=Source.DOCKER,
        scheme=primary.scheme,
        host=plan.host,
        port=primary.port,
        confidence=confidence,
        app=SuggestedApp(
            id=app_id,
            name=app_name,
            icon=labels.get("nekzus.app.icon", "").strip() or DEFAULT_ICON,
            tags=tuple(tags),
            endpoints={"lan": target},
            details={
                "source": Source.DOCKER.value,
                "containerId": short,
                "containerName": plan.name,
                "containerPort": primary.container_port,
                "networkMode": plan.mode,
            },
        ),
        route=SuggestedRoute(
            route_id=f"route_{app_id}",
            path_base=path_base,
            target=target,
            scopes=tuple(scopes),
            strip_prefix=strip_prefix,
            rewrite_html=rewrite_html,
            websocket=websocket,
            skip_health_check=skip_health,
        ),
        ports=available,
        notes=tuple(notes),
        warnings=tuple(dict.fromkeys(warnings)),
        container_id=short,
        published=plan.mode == "published",
    )
