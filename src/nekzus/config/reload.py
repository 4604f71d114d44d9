"""Hot reload of the config file (behaviour.md B §1.6, with its REC fixes).

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

import asyncio
import contextlib
import inspect
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI

from nekzus.config.loader import ConfigError, load_config, read_file, unknown_keys
from nekzus.config.model import Config
from nekzus.http.clientip import parse_networks
from nekzus.services import Services

log = logging.getLogger("nekzus.config")

# Changing these needs a restart: the reload is refused and names the key (B §1.6). The JWT secret is
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
    "rate_limits",
    "metrics.enabled",
    "health_checks",
)

POLL_INTERVAL = 1.0
DEBOUNCE = 0.5

Listener = Callable[[Config, Config], "Awaitable[None] | None"]
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


class ConfigReloader:
    """`services.domains["config_reload"]`: watches the file, reloads, applies, announces."""

    def __init__(self, services: Services, path: str) -> None:
        self.services = services
        self.path = path
        self.poll_interval = POLL_INTERVAL
        self.debounce = DEBOUNCE
        self._lock = asyncio.Lock()
        self._listeners: list[Listener] = []
        self._signature = file_signature(path)
        self._task: asyncio.Task[Any] | None = None
        self._sighup = False

    def on_reload(self, listener: Listener) -> None:
        """Call `listener(old, new)` after each accepted reload (after the built-in appliers)."""
        self._listeners.append(listener)

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = self.services.spawn(self._watch(), "config-watcher")
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
            self._sighup = True
        except (NotImplementedError, RuntimeError, ValueError, AttributeError):
            # Not the main thread (in-process tests) or no SIGHUP on this platform: file watching only.
            log.debug("SIGHUP reload not available here")
        log.info("watching %s for configuration changes (SIGHUP reloads too)", self.path)

    async def stop(self) -> None:
        if self._sighup:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            self._sighup = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None

    def _on_sighup(self) -> None:
        log.info("SIGHUP received: reloading %s", self.path)
        self.services.spawn(self.reload("sighup"), "config-reload")

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            current = file_signature(self.path)
            if current == self._signature:
                continue
            # Debounce: wait until the file has been still for `debounce` seconds (editors write in steps).
            while True:
                await asyncio.sleep(self.debounce)
                again = file_signature(self.path)
                if again == current:
                    break
                current = again
            self._signature = current
            if current is None:
                log.warning("config file %s was removed; keeping the running configuration", self.path)
                continue
            try:
                await self.reload("file")
            except Exception:
                log.exception("config reload failed unexpectedly")

    # -- the reload ---------------------------------------------------------------------------------

    async def reload(self, trigger: str = "manual") -> bool:
        """Load, check and apply the file; True when the new configuration was applied."""
        async with self._lock:
            started = time.perf_counter()
            try:
                status, detail = await self._reload(trigger)
            finally:
                self.services.metrics.config_reload_duration_seconds.observe(time.perf_counter() - started)
            metrics = self.services.metrics
            metrics.config_reloads_total.labels(status).inc()
            metrics.config_last_reload_time_seconds.set(time.time())
            metrics.config_last_reload_status.set(1 if status == "success" else 0)
            if status != "success":
                log.error(
                    "config reload rejected (%s): %s; the running configuration is kept", status, detail
                )
                await self._audit(False, {"trigger": trigger, "status": status, "error": detail})
            return status == "success"

    async def _reload(self, trigger: str) -> tuple[str, str]:
        services = self.services
        old = services.config
        try:
            raw = await asyncio.to_thread(read_file, self.path)
        except ConfigError as exc:
            return "error_load", str(exc)
        unknown = unknown_keys(raw)
        if unknown:
            log.warning("ignoring unknown config keys: %s", ", ".join(unknown))
        try:
            new = await asyncio.to_thread(load_config, self.path, insecure_http=old.insecure_http)
        except ConfigError as exc:
            return "error_validation", str(exc)
        restart = [key for key in RESTART_KEYS if _lookup(old, key) != _lookup(new, key)]
        if restart:
            return "error_restart_required", f"{', '.join(restart)} changed and needs a restart"
        changed = changed_keys(old, new)
        pending = [key for key in changed if not _is_live(key)]
        if pending:
            log.warning("config keys changed that take effect after a restart: %s", ", ".join(pending))
        running = effective_config(old, new)
        services.config = running
        summary = await self._apply(old, running)
        live = [key for key in changed if _is_live(key)]
        log.info(
            "configuration reloaded (%s): %s",
            trigger,
            ", ".join(_summarise(live)) if live else "no live changes",
        )
        services.bus.emit("config_reload", {"message": "Configuration reloaded"})
        activity = services.domains.get("activity")
        if activity is not None:
            try:
                await activity.add(
                    "config_reload", "Configuration reloaded", icon="RefreshCw", key=str(int(time.time()))
                )
            except Exception:
                log.warning("could not record the config_reload activity", exc_info=True)
        await self._audit(
            True,
            {
                "trigger": trigger,
                "changed": _summarise(live),
                "restartPending": pending,
                **{k: v for k, v in summary.items() if v},
            },
        )
        return "success", ""

    async def _audit(self, success: bool, details: dict[str, Any]) -> None:
        audit = self.services.domains.get("audit")
        if audit is None:
            return
        try:
            await audit.record(
                "config.reloaded", actor="system", target=self.path, details=details, success=success
            )
        except Exception:
            log.warning("could not audit the config reload", exc_info=True)

    async def _apply(self, old: Config, new: Config) -> dict[str, Any]:
        """Push the new values into the running objects; one failing step does not stop the others."""
        services = self.services
        summary: dict[str, Any] = {}

        def step(name: str, action: Callable[[], Any]) -> Any:
            try:
                return action()
            except Exception:
                log.exception("applying %s after a config reload failed", name)
                return None

        services.trusted_proxies = parse_networks(new.server.trusted_proxies)
        services.local_networks = parse_networks(new.auth.local_networks)
        changed_limits = step("rate_limits", lambda: services.limiter.reconfigure(new.rate_limits))
        if changed_limits:
            summary["rateLimitsRebuilt"] = changed_limits

        auth = services.domains.get("auth")
        if auth is not None:
            step("auth", lambda: _apply_auth(auth, new))

        proxy: Any = services.proxy
        if proxy is not None:
            step("proxy", lambda: _apply_proxy(proxy, new))

        catalog = services.domains.get("catalog")
        if catalog is not None and hasattr(catalog, "apply_config"):
            try:
                summary.update(await catalog.apply_config(new.apps, new.routes))
            except Exception:
                log.exception("applying routes/apps after a config reload failed")

        checker = services.domains.get("catalog_health")
        if checker is not None and hasattr(checker, "reconfigure"):
            step("health_checks", lambda: checker.reconfigure(new.health_checks))

        for listener in list(self._listeners):
            try:
                result = listener(old, new)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("config reload listener failed")
        return summary


def _apply_auth(auth: Any, new: Config) -> None:
    auth.default_scopes = tuple(dict.fromkeys(new.auth.default_scopes))
    auth.refresh_grace = new.auth.refresh_grace
    auth.codec.ttl = new.auth.token_ttl
    auth.pairing.permanent_tokens = tuple(t for t in new.bootstrap.tokens if t)
    auth.metrics.auth_bootstrap_tokens_active.set(auth.pairing.active_tokens())


def _apply_proxy(proxy: Any, new: Config) -> None:
    # The proxy caches "is this peer trusted" per address and the default scopes per compiled route.
    cache = getattr(proxy, "_ip_cache", None)
    if isinstance(cache, dict):
        cache.clear()
    if hasattr(proxy, "default_scopes"):
        proxy.default_scopes = tuple(new.auth.default_scopes)
        proxy.rebuild()


def _summarise(keys: list[str]) -> list[str]:
    """Collapse `routes`/`apps`/`rate_limits.auth.rate`... into readable top-level names."""
    out: list[str] = []
    for key in keys:
        top = key.split(".")[0]
        name = top if top in ("routes", "apps", "health_checks", "rate_limits") else key
        if name not in out:
            out.append(name)
    return out


def install(_api: FastAPI, services: Services) -> None:
    """Hot reload runs only when the server was started with a config file path."""
    if not services.config_path:
        return
    reloader = ConfigReloader(services, services.config_path)
    services.domains["config_reload"] = reloader

    async def start() -> None:
        reloader.start()

    services.on_startup("config_reload", start)
    services.on_shutdown("config_reload", reloader.stop)
