"""Turn `docker inspect` output into a Docker Compose file.

Only what differs from the image is written (env, labels, command), secrets in the environment move to
a `.env` file, and every `$` in copied values is escaped so Compose does not interpolate it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

SECRET_WORDS = (
    "PASSWORD",
    "PASSWD",
    "PWD",
    "SECRET",
    "PRIVATE_KEY",
    "API_KEY",
    "ACCESS_KEY",
    "TOKEN",
    "AUTH",
    "CREDENTIAL",
    "CERTIFICATE",
    "CERT",
    "PASS",
    "SALT",
    "PRIVATE",
    "DSN",
)
# Whole name parts that mark a secret on their own: `APP_KEY`, `SECRET_KEY`, `LICENSE_KEY`.
_SECRET_PARTS = frozenset({"KEY", "PW", "PIN"})
# `scheme://user:password@host`: a connection string carries its password inline.
_URL_WITH_CREDENTIALS = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]*:[^/\s@]+@", re.I)
# `--password=…`, `-token=…` on a command line; and the flag alone when its value is the next argument.
_FLAG_WORD = r"(?:pass(?:word|wd|phrase)?|secret|token|key|auth|credentials?)"
_SECRET_FLAG = re.compile(r"^(-{1,2}[\w.-]*?" + _FLAG_WORD + r")=(.+)$", re.I)
_SECRET_FLAG_ALONE = re.compile(r"^-{1,2}[\w.-]*?" + _FLAG_WORD + r"$", re.I)
_DEFAULT_NETWORKS = {"bridge", "host", "none", "default"}
ENV_HEADER = (
    "# Environment for the exported stack.\n"
    "# Values were removed from the compose file because they look secret.\n"
    "# Fill them in and save this file as .env next to the compose file.\n"
)


@dataclass
class ExportOptions:
    sanitize_secrets: bool = True
    include_volumes: bool = True
    include_networks: bool = True


@dataclass
class ComposeResult:
    content: str
    env_content: str = ""
    warnings: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)


def is_secret(key: str, value: str = "") -> bool:
    """Judged by the variable's name, and by its value for connection strings with a password."""
    upper = key.upper()
    if any(word in upper for word in SECRET_WORDS):
        return True
    if any(part in _SECRET_PARTS for part in re.split(r"[^A-Z0-9]+", upper)):
        return True
    return bool(_URL_WITH_CREDENTIALS.search(value))


def _placeholder(flag: str) -> str:
    return re.sub(r"[^A-Z0-9]+", "_", flag.upper()).strip("_") or "SECRET"


def _command(args: list[Any], sanitize: bool, secrets: list[str]) -> list[str]:
    """Command-line arguments with `$` escaped and secret flag values moved to the .env file."""
    out: list[str] = []
    hide_next = False
    for raw in args:
        arg = str(raw)
        if sanitize and hide_next:
            hide_next = False
            name = _placeholder(out[-1])
            secrets.append(name)
            out.append("${" + name + "}")
            continue
        match = _SECRET_FLAG.match(arg) if sanitize else None
        if match is not None:
            name = _placeholder(match.group(1))
            secrets.append(name)
            out.append(_esc(match.group(1)) + "=${" + name + "}")
            continue
        if sanitize and _SECRET_FLAG_ALONE.match(arg):
            hide_next = True
        elif sanitize and _URL_WITH_CREDENTIALS.search(arg):
            name = f"ARG_{len(out)}_URL"
            secrets.append(name)
            out.append("${" + name + "}")
            continue
        out.append(_esc(arg))
    return out


def service_name(name: str) -> str:
    cleaned = re.sub(r"[^a-z0-9_.-]+", "-", name.lower().lstrip("/")).strip("-._")
    return cleaned or "service"


def project_name(name: str) -> str:
    cleaned = re.sub(r"[^a-z0-9_-]+", "-", (name or "").lower()).strip("-_")
    return cleaned or "exported-stack"


def _esc(value: str) -> str:
    return value.replace("$", "$$")


def _duration(ns: int | None) -> str | None:
    if not ns:
        return None
    seconds = ns / 1e9
    return f"{int(seconds)}s" if seconds == int(seconds) else f"{int(ns / 1e6)}ms"


def _env_map(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        key, _, value = item.partition("=")
        if key:
            out[key] = value
    return out


def _restart(policy: dict[str, Any] | None) -> str | None:
    policy = policy or {}
    name = policy.get("Name") or ""
    if name in ("", "no"):
        return None
    if name == "on-failure" and policy.get("MaximumRetryCount"):
        return f"on-failure:{policy['MaximumRetryCount']}"
    return str(name)


def build_service(
    info: dict[str, Any], image_info: dict[str, Any] | None, options: ExportOptions
) -> tuple[str, dict[str, Any], dict[str, Any], dict[str, Any], list[str], list[str]]:
    """One service from an inspect result → (name, service, volumes, networks, secrets, warnings)."""
    config = info.get("Config") or {}
    host = info.get("HostConfig") or {}
    image_cfg = (image_info or {}).get("Config") or {}
    name = str(info.get("Name", "")).lstrip("/") or str(info.get("Id", ""))[:12]
    warnings: list[str] = []
    secrets: list[str] = []
    svc: dict[str, Any] = {"image": config.get("Image") or info.get("Image"), "container_name": name}

    env = _env_map(config.get("Env"))
    image_env = _env_map(image_cfg.get("Env"))
    environment: dict[str, str] = {}
    for key in sorted(env):
        if image_env.get(key) == env[key]:
            continue
        if options.sanitize_secrets and is_secret(key, env[key]):
            environment[key] = "${" + key + "}"
            secrets.append(key)
        else:
            environment[key] = _esc(env[key])
    if environment:
        svc["environment"] = environment

    for src, dst in (("Entrypoint", "entrypoint"), ("Cmd", "command")):
        value = config.get(src)
        if value and value != image_cfg.get(src):
            svc[dst] = _command(list(value), options.sanitize_secrets, secrets)
    # Every string Compose interpolates gets its `$` escaped, not only environment values.
    if config.get("User") and config.get("User") != image_cfg.get("User"):
        svc["user"] = _esc(str(config["User"]))
    if config.get("WorkingDir") and config.get("WorkingDir") != image_cfg.get("WorkingDir"):
        svc["working_dir"] = _esc(str(config["WorkingDir"]))

    ports: list[str] = []
    for spec, bindings in sorted((host.get("PortBindings") or {}).items()):
        cport, _, proto = spec.partition("/")
        suffix = f"/{proto}" if proto and proto != "tcp" else ""
        for binding in bindings or [{}]:
            hip = (binding or {}).get("HostIp") or ""
            hport = (binding or {}).get("HostPort") or ""
            if not hport:
                ports.append(f"{cport}{suffix}")
            elif hip in ("", "0.0.0.0"):
                ports.append(f"{hport}:{cport}{suffix}")
            elif ":" in hip:
                ports.append(f"[{hip}]:{hport}:{cport}{suffix}")
            else:
                ports.append(f"{hip}:{hport}:{cport}{suffix}")
    if ports:
        svc["ports"] = ports

    volumes_top: dict[str, Any] = {}
    if options.include_volumes:
        mounts: list[str] = []
        for mount in sorted(info.get("Mounts") or [], key=lambda m: str(m.get("Destination", ""))):
            dest = _esc(str(mount.get("Destination", "")))
            mode = "" if mount.get("RW", True) else ":ro"
            if mount.get("Type") == "volume" and mount.get("Name"):
                vol = str(mount["Name"])
                if re.fullmatch(r"[0-9a-f]{64}", vol):
                    warnings.append(f"{name}: anonymous volume at {dest} exported as a new named volume")
                    vol = service_name(f"{name}-{dest}")
                    volumes_top[vol] = {}
                else:
                    volumes_top[vol] = {"external": True, "name": vol}
                mounts.append(f"{vol}:{dest}{mode}")
            elif mount.get("Type") == "bind" and mount.get("Source"):
                mounts.append(f"{_esc(str(mount['Source']))}:{dest}{mode}")
            elif mount.get("Type") == "tmpfs":
                svc.setdefault("tmpfs", []).append(dest)
        if mounts:
            svc["volumes"] = mounts

    networks_top: dict[str, Any] = {}
    mode = str(host.get("NetworkMode") or "")
    if mode in ("host", "none") or mode.startswith("container:"):
        svc["network_mode"] = mode
        if mode.startswith("container:"):
            warnings.append(f"{name}: network_mode {mode} refers to another container")
    elif options.include_networks:
        names = sorted(((info.get("NetworkSettings") or {}).get("Networks") or {}).keys())
        custom = [n for n in names if n not in _DEFAULT_NETWORKS]
        if custom:
            svc["networks"] = custom
            for net in custom:
                networks_top[net] = {"external": True, "name": net}

    restart = _restart(host.get("RestartPolicy"))
    if restart:
        svc["restart"] = restart
    health = config.get("Healthcheck") or {}
    test = health.get("Test")
    if test and test != (image_cfg.get("Healthcheck") or {}).get("Test"):
        hc: dict[str, Any] = {"test": [_esc(str(t)) for t in test]}
        if test == ["NONE"]:
            hc = {"disable": True}
        for key, out in (("Interval", "interval"), ("Timeout", "timeout"), ("StartPeriod", "start_period")):
            value = _duration(health.get(key))
            if value and "disable" not in hc:
                hc[out] = value
        if health.get("Retries") and "disable" not in hc:
            hc["retries"] = int(health["Retries"])
        svc["healthcheck"] = hc
    if host.get("Privileged"):
        svc["privileged"] = True
    if host.get("Init"):
        svc["init"] = True
    if host.get("CapAdd"):
        svc["cap_add"] = list(host["CapAdd"])
    if host.get("CapDrop"):
        svc["cap_drop"] = list(host["CapDrop"])
    if config.get("StopTimeout"):
        svc["stop_grace_period"] = f"{int(config['StopTimeout'])}s"
    image_labels = image_cfg.get("Labels") or {}
    labels = {
        k: _esc(str(v))
        for k, v in sorted((config.get("Labels") or {}).items())
        if not k.startswith("com.docker.compose.") and image_labels.get(k) != v
    }
    if labels:
        svc["labels"] = labels
    return service_name(name), svc, volumes_top, networks_top, secrets, warnings


def render(
    items: list[tuple[dict[str, Any], dict[str, Any] | None]], options: ExportOptions, stack: str = ""
) -> ComposeResult:
    """A compose document for one or more inspected containers (networks/volumes deduplicated)."""
    services: dict[str, Any] = {}
    volumes: dict[str, Any] = {}
    networks: dict[str, Any] = {}
    secrets: list[str] = []
    warnings: list[str] = []
    for info, image_info in items:
        name, svc, vols, nets, secs, warns = build_service(info, image_info, options)
        base, n = name, 2
        while name in services:
            name, n = f"{base}-{n}", n + 1
        services[name] = svc
        volumes.update(vols)
        networks.update(nets)
        secrets.extend(s for s in secs if s not in secrets)
        warnings.extend(warns)
    doc: dict[str, Any] = {}
    if stack:
        doc["name"] = project_name(stack)
    doc["services"] = services
    if networks:
        doc["networks"] = networks
    if volumes:
        doc["volumes"] = volumes
    content = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1000)
    env = ""
    if secrets:
        env = ENV_HEADER + "".join(f"{key}=CHANGE_ME\n" for key in sorted(secrets))
    return ComposeResult(content=content, env_content=env, warnings=warnings, secrets=sorted(secrets))
