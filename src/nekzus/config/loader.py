"""Load the configuration: defaults < file < NEKZUS_* environment variables.

Every problem becomes one `ConfigError` naming the key, so start-up can print one line and exit 2.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from nekzus.config.model import Config


class ConfigError(Exception):
    """A configuration problem, already phrased as `key: problem`."""


_TRUE = ("true", "1")

# env var -> dotted key; the value replaces the file's value.
_ENV_STRINGS = {
    "NEKZUS_ADDR": "server.addr",
    "NEKZUS_BASE_URL": "server.base_url",
    "NEKZUS_TLS_CERT": "server.tls_cert",
    "NEKZUS_TLS_KEY": "server.tls_key",
    "NEKZUS_JWT_SECRET": "auth.hs256_secret",
    "NEKZUS_DATABASE_PATH": "storage.database_path",
    "NEKZUS_TOOLBOX_HOST_DATA_DIR": "toolbox.host_data_dir",
    "NEKZUS_SCRIPTS_HOST_DIRECTORY": "scripts.host_directory",
    "NEKZUS_HOST_ROOT_PATH": "system.host_root_path",
    "NEKZUS_BACKUP_PASSPHRASE": "backup.passphrase",
    "NEKZUS_CLUSTER_SECRET": "federation.cluster_secret",
    "NEKZUS_GOSSIP_PORT": "federation.gossip_port",
    "NEKZUS_LOG_FORMAT": "server.log_format",
    "NEKZUS_PROXY_IDLE_TIMEOUT": "server.proxy_idle_timeout",
    "NEKZUS_WS_AUTH_TIMEOUT": "server.ws_auth_timeout",
    "NEKZUS_WORKERS": "server.workers",
}

# Docker's own variable: the endpoint of both Docker keys unless the file names one.
DOCKER_HOST_KEYS = ("runtimes.docker.socket_path", "discovery.docker.socket_path")
DEFAULT_DOCKER_SOCKET = "unix:///var/run/docker.sock"

# env var -> dotted key; `true`/`1` turns the feature on, anything else leaves the file's value.
_ENV_FLAGS = {
    "NEKZUS_DISCOVERY_ENABLED": "discovery.enabled",
    "NEKZUS_DISCOVERY_DOCKER_ENABLED": "discovery.docker.enabled",
    "NEKZUS_TOOLBOX_ENABLED": "toolbox.enabled",
    "NEKZUS_SCRIPTS_ENABLED": "scripts.enabled",
    "NEKZUS_NOTIFICATIONS_ENABLED": "notifications.enabled",
    "NEKZUS_METRICS_ENABLED": "metrics.enabled",
    "NEKZUS_FEDERATION_ENABLED": "federation.enabled",
}


def read_file(path: str | None) -> dict[str, Any]:
    """Parse the config file; a missing file means an empty one (defaults)."""
    if not path:
        return {}
    file = Path(path)
    if not file.exists():
        return {}
    if file.is_dir():
        raise ConfigError(f"config: {path} is a directory, not a file")
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"config: cannot read {path}: {exc.strerror}") from exc
    suffix = file.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            try:
                data = json.loads(text)
            except json.JSONDecodeError:
                raise ConfigError(
                    f"config: unknown config format for {path} (use .yaml, .yml or .json)"
                ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config: {path} is not valid YAML{where}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config: {path} is not valid JSON at line {exc.lineno}: {exc.msg}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config: {path} must contain a mapping of sections at the top level")
    return data


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _get(tree: Mapping[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    for name, key in _ENV_STRINGS.items():
        if env.get(name):
            _set(raw, key, env[name])
    for name, key in _ENV_FLAGS.items():
        if env.get(name, "").strip().lower() in _TRUE:
            _set(raw, key, True)
    docker_host = env.get("DOCKER_HOST", "").strip()
    if docker_host:
        for key in DOCKER_HOST_KEYS:
            if _get(raw, key) in (None, "", DEFAULT_DOCKER_SOCKET):
                _set(raw, key, docker_host)
    token = env.get("NEKZUS_BOOTSTRAP_TOKEN", "").strip()
    if token:
        tokens = _get(raw, "bootstrap.tokens") or []
        if isinstance(tokens, str):
            tokens = [tokens]
        if isinstance(tokens, list) and token not in tokens:
            _set(raw, "bootstrap.tokens", [*tokens, token])
    if env.get("NEKZUS_BOOTSTRAP_ALLOW_ANY", "").strip().lower() in _TRUE:
        _set(raw, "bootstrap.allow_any", True)
    raw["debug"] = env.get("NEKZUS_DEBUG", "").strip().lower() in _TRUE
    raw["debug_tokens"] = env.get("NEKZUS_DEBUG_TOKENS", "").strip().lower() in _TRUE
    raw["environment"] = env.get("ENVIRONMENT", "")
    return raw


def _key(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-", "tagged-union")) or part.endswith("]"):
            continue
        else:
            out += f".{part}" if out else part
    return out or "config"


def _message(error: Mapping[str, Any]) -> str:
    kind = error.get("type", "")
    msg = str(error.get("msg", "invalid value"))
    if kind == "missing":
        return "is required"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return f"must be one of {expected}"
    return msg[:1].lower() + msg[1:]


_KEYED = re.compile(r"^([A-Za-z_][A-Za-z0-9_.\[\]]*): (.+)$")


def format_validation_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    key = _key(tuple(first["loc"]))
    message = _message(first)
    # Model-level checks name their own key: absolute ("auth.hs256_secret: ...") or relative ("tls_key: ...").
    keyed = _KEYED.match(message)
    if keyed:
        inner, text = keyed.groups()
        if key == "config" or "." in inner or "[" in inner:
            return message
        return f"{key}.{inner}: {text}"
    return f"{key}: {message}"


def load_config(
    path: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    insecure_http: bool = False,
) -> Config:
    """Build the effective configuration or raise `ConfigError`."""
    environ = os.environ if env is None else env
    raw = read_file(path)
    raw = apply_env(raw, environ)
    if insecure_http:
        server = raw.get("server")
        if isinstance(server, dict):
            server["tls_cert"] = ""
            server["tls_key"] = ""
        raw["insecure_http"] = True
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
    if insecure_http and "addr" not in (raw.get("server") or {}) and not environ.get("NEKZUS_ADDR"):
        config.server.addr = ":8080"
    return config


def unknown_keys(raw: Mapping[str, Any], model: type[Any] = Config, prefix: str = "") -> list[str]:
    """Keys in the file that no section knows: reported as warnings, since they are likely typos."""
    found: list[str] = []
    fields = getattr(model, "model_fields", {})
    for key, value in raw.items():
        if key not in fields:
            found.append(f"{prefix}{key}")
            continue
        annotation = fields[key].annotation
        if (
            isinstance(value, Mapping)
            and isinstance(annotation, type)
            and hasattr(annotation, "model_fields")
        ):
            found.extend(unknown_keys(value, annotation, f"{prefix}{key}."))
    return found
