"""Hot reload of the config file.

Triggers: a change of the file (polled every second: mtime, size, inode — robust against editors that
replace the file and against symlink swaps, no extra dependency), debounced 500 ms, and SIGHUP. Reloads
are serialized. A reload is a full `load_config` (file + environment, exactly as at start-up).

Outcomes (`nekzus_config_reloads_total{status}`):
- `error_load`: the file cannot be read or parsed; `error_validation`: a key is invalid;
  `error_restart_required`: a key listed in `RESTART_KEYS` changed. In all three the running
  configuration stays and one line is logged.
- `success`: `LIVE_KEYS` are applied at once; any other changed key is kept at its running value and
  logged as "takes effect after a restart" (discovery, notifications, TLS, toolbox, ...).

Applied live: routes and apps (merged: config entries upserted, config entries gone from the file
removed, API-created and discovery-approved entries never touched), bootstrap tokens, auth default
scopes / local networks / token lifetimes, trusted proxies, the body limit, rate limits (changed
categories get fresh buckets), `metrics.enabled` and the health-check settings.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from nekzus.config.model import Config

log = logging.getLogger("nekzus.config")

# Changing these needs a restart: the reload is refused and names the key. The JWT secret is
# compared as configured (file/env), never the generated one, so reloads work in the default setup.
RESTART_KEYS = (
    "server.addr",
    "server.tls_cert",
    "server.tls_key",
    "auth.hs256_secret",
    "auth.issuer",
    "auth.audience",
    "storage.database_path",
    "metrics.path",
)

# Keys (and everything below them) that a reload applies to the running server.
LIVE_KEYS = (
    "routes",
    "apps",
    "bootstrap.tokens",
    "auth.default_scopes",
    "auth.local_networks",
    "auth.token_ttl",
    "auth.refresh_grace",
    "server.trusted_proxies",
    "server.max_body_bytes",
    "server.ws_max_per_principal",
    "rate_limits",
    "metrics.enabled",
    "health_checks",
    "discovery.auto_approve_confidence",
    "devices.offline_threshold",
)

POLL_INTERVAL = 1.0
DEBOUNCE = 0.5

# A domain's reload hook: `reconfigure(old, new)`; it may be async and may return a summary of what it
# changed (merged into the audit record of the reload).
Listener = Callable[[Config, Config], "Awaitable[dict[str, Any] | None] | dict[str, Any] | None"]
Signature = tuple[int, ...] | None


def _lookup(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    else:
        out[prefix] = value
    return out


def changed_keys(old: Config, new: Config) -> list[str]:
    """Dotted keys whose values differ (lists, such as `routes`, compare as a whole)."""
    before = _flatten(old.model_dump(), "", {})
    after = _flatten(new.model_dump(), "", {})
    return sorted(k for k in before.keys() | after.keys() if before.get(k, None) != after.get(k, None))


def _is_live(key: str) -> bool:
    return any(key == live or key.startswith(live + ".") for live in LIVE_KEYS)


def effective_config(old: Config, new: Config) -> Config:
    """The running config after a reload: the new values of `LIVE_KEYS`, the old values elsewhere."""
    result = old.model_copy(deep=True)
    for dotted in LIVE_KEYS:
        *parents, last = dotted.split(".")
        target: Any = result
        source: Any = new
        for part in parents:
            target = getattr(target, part)
            source = getattr(source, part)
        value = getattr(source, last)
        setattr(target, last, value.model_copy(deep=True) if hasattr(value, "model_copy") else value)
    return result


def file_signature(path: str) -> Signature:
    """What identifies one version of the file; None while it does not exist."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError:
        return (-1,)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _summarise(keys: list[str]) -> list[str]:
    """Collapse `routes`/`apps`/`rate_limits.auth.rate`... into readable top-level names."""
    out: list[str] = []
    for key in keys:
        top = key.split(".")[0]
        name = top if top in ("routes", "apps", "health_checks", "rate_limits") else key
        if name not in out:
            out.append(name)
    return out
