"""The config reloader: watches the config file (and SIGHUP), reloads and checks it with the rules of
`nekzus.config.reload`, then hands the new config to each domain's `reconfigure(old, new)` hook.

It lives outside the `config` package because it talks to the bus, the audit log and the activity feed;
`config` itself stays a leaf every domain can import.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from nekzus.config.loader import ConfigError, load_config, read_file, unknown_keys
from nekzus.config.model import Config
from nekzus.config.reload import (
    DEBOUNCE,
    POLL_INTERVAL,
    RESTART_KEYS,
    _is_live,
    _lookup,
    _summarise,
    changed_keys,
    effective_config,
    file_signature,
)
from nekzus.events.types import EventType
from nekzus.tasks import Spawn, cancel_and_wait

if TYPE_CHECKING:
    from nekzus.auth.activity import ActivityService
    from nekzus.auth.audit import AuditService
    from nekzus.events.bus import EventBus
    from nekzus.metrics import Metrics

log = logging.getLogger("nekzus.config")

# A domain's reload hook: `reconfigure(old, new)`; it may be async and may return a summary of what it
# changed (merged into the audit record of the reload).
Listener = Callable[[Config, Config], "Awaitable[dict[str, Any] | None] | dict[str, Any] | None"]


class ConfigReloader:
    """`services.domains.reloader`: watches the file, reloads, hands the new config to each domain's
    `reconfigure(old, new)` hook (registered with `on_reload`, in registration order), announces."""

    def __init__(
        self,
        path: str,
        *,
        current: Callable[[], Config],
        install: Callable[[Config], None],
        bus: EventBus,
        metrics: Metrics,
        spawn: Spawn,
        audit: AuditService,
        activity: ActivityService,
    ) -> None:
        self.path = path
        self.current = current
        self.install = install
        self.bus = bus
        self.metrics = metrics
        self.spawn = spawn
        self.audit = audit
        self.activity = activity
        self.poll_interval = POLL_INTERVAL
        self.debounce = DEBOUNCE
        self._lock = asyncio.Lock()
        self._listeners: list[tuple[str, Listener]] = []
        self._signature = file_signature(path)
        self._task: asyncio.Task[Any] | None = None
        self._sighup = False

    def on_reload(self, name: str, listener: Listener) -> None:
        """Call `listener(old, new)` after each accepted reload; a failing hook does not stop the others."""
        self._listeners.append((name, listener))

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = self.spawn(self._watch(), "config-watcher")
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
            await cancel_and_wait(self._task)
            self._task = None

    def _on_sighup(self) -> None:
        log.info("SIGHUP received: reloading %s", self.path)
        self.spawn(self.reload("sighup"), "config-reload")

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
                self.metrics.config_reload_duration_seconds.observe(time.perf_counter() - started)
            metrics = self.metrics
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
        old = self.current()
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
        self.install(running)
        summary = await self._apply(old, running)
        live = [key for key in changed if _is_live(key)]
        log.info(
            "configuration reloaded (%s): %s",
            trigger,
            ", ".join(_summarise(live)) if live else "no live changes",
        )
        self.bus.emit(EventType.CONFIG_RELOAD, {"message": "Configuration reloaded"})
        try:
            await self.activity.add(
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
        await self.audit.record(
            "config.reloaded", actor="system", target=self.path, details=details, success=success
        )

    async def follow(self, skip: frozenset[str] = frozenset()) -> None:
        """Apply the file another worker process has just reloaded: the same hooks (except `skip`),
        without a second event, activity entry or audit record (they happened there)."""
        async with self._lock:
            old = self.current()
            try:
                new = await asyncio.to_thread(load_config, self.path, insecure_http=old.insecure_http)
            except ConfigError as exc:
                log.warning("could not follow the reloaded configuration: %s", exc)
                return
            if any(_lookup(old, key) != _lookup(new, key) for key in RESTART_KEYS):
                return
            self._signature = file_signature(self.path)
            running = effective_config(old, new)
            self.install(running)
            await self._apply(old, running, skip)

    async def _apply(self, old: Config, new: Config, skip: frozenset[str] = frozenset()) -> dict[str, Any]:
        """Run every domain's reload hook; one failing hook does not stop the others."""
        summary: dict[str, Any] = {}
        for name, listener in list(self._listeners):
            if name in skip:
                continue
            try:
                result = listener(old, new)
                if inspect.isawaitable(result):
                    result = await result
            except Exception:
                log.exception("applying %s after a config reload failed", name)
                continue
            if isinstance(result, dict):
                summary.update(result)
        return summary
