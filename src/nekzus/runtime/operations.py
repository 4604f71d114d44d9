"""Container operations behind the HTTP routes and the WebSocket log stream.

Single actions (start, stop, restart) answer 202 at once and run as jobs of kind `container.<action>` on
the job runner (recorded, listed at `/api/v1/jobs`, cancellable there); the outcome is published on the
bus to the requester and every dashboard connection as `container.<action>.completed|failed`, so a client
learns how an accepted action ended. Bulk and batch operations answer when they are done (their
per-container work is part of the request). Bulk operations skip Nekzus' own container and containers
labelled `nekzus.skip=true`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from nekzus.auth.principal import Principal
from nekzus.events.bus import EventBus
from nekzus.events.types import container_outcome
from nekzus.jobs import JobContext, JobFailed, JobRunner
from nekzus.runtime.base import (
    AlreadyInState,
    ContainerInfo,
    ContainerNotFound,
    ContainerRuntime,
    RuntimeErrorBase,
    RuntimeUnavailable,
    valid_container_id,
)
from nekzus.runtime.manager import RuntimeManager
from nekzus.tasks import Spawn

if TYPE_CHECKING:
    from nekzus.auth.audit import AuditService
    from nekzus.catalog.service import CatalogService

log = logging.getLogger("nekzus.containers")

Action = Literal["start", "stop", "restart"]
ACTIONS: tuple[str, ...] = ("start", "stop", "restart")
_PAST = {"start": "started", "stop": "stopped", "restart": "restarted"}
_DEADLINE = {"start": 30.0, "stop": 60.0, "restart": 60.0}
_FAILED_CODE = {
    "start": "CONTAINER_START_FAILED",
    "stop": "CONTAINER_STOP_FAILED",
    "restart": "CONTAINER_RESTART_FAILED",
}
BULK_CONCURRENCY = 5
BULK_TOTAL_SECONDS = 120.0
LOG_TAIL_DEFAULT = 100
LOG_TAIL_MAX = 1000


def _now() -> int:
    return int(time.time())


class ContainerService:
    def __init__(
        self,
        manager: RuntimeManager,
        *,
        bus: EventBus,
        spawn: Spawn,
        jobs: JobRunner,
        catalog: CatalogService | None = None,
        audit: AuditService | None = None,
    ) -> None:
        self.manager = manager
        self.bus = bus
        self.spawn = spawn
        self.jobs = jobs
        self.catalog = catalog
        self.audit = audit
        # (connection id, container id or `namespace/pod`, pod's container or "") -> log streaming task
        self._log_streams: dict[StreamKey, asyncio.Task[Any]] = {}

    # -- queries ---------------------------------------------------------------------------------

    async def list_containers(
        self, runtime: str | None = None, namespace: str | None = None
    ) -> list[ContainerInfo]:
        if runtime:
            items = await self.manager.get(runtime).list(all=True, namespace=namespace)
        else:
            items = []
            for rt in self.manager.runtimes.values():
                try:
                    items.extend(await rt.list(all=True, namespace=namespace))
                except RuntimeUnavailable:
                    if len(self.manager.runtimes) == 1:
                        raise
                    log.warning("runtime %s unavailable; skipped in list", rt.name)
        if namespace:
            items = [c for c in items if c.namespace == namespace]
        return items

    async def inspect(self, container_id: str, runtime: str | None = None) -> dict[str, Any]:
        return await self.manager.get(runtime).inspect(container_id)

    async def stats(self, container_id: str, runtime: str | None = None) -> dict[str, Any]:
        rt = self.manager.get(runtime)
        info = await rt.inspect(container_id)
        if not (info.get("State") or {}).get("Running"):
            raise AlreadyInState("container is not running", "CONTAINER_NOT_RUNNING")
        return await rt.stats(str(info.get("Id") or container_id))

    async def all_stats(
        self, include_all: bool = False, runtime: str | None = None, namespace: str | None = None
    ) -> list[dict[str, Any]]:
        """Stats of running containers that back catalog apps (or every running one with `all`).

        Kubernetes pods come from one list of the metrics API; without it this raises
        MetricsUnavailable (503) instead of answering an empty list that would look like idle pods."""
        rt = self.manager.get(runtime)
        running = [c for c in await rt.list(all=False, namespace=namespace) if c.state == "running"]
        if not include_all:
            running = [c for c in running if c.labels.get("nekzus.app.id")]
            catalog = self.catalog
            if catalog is not None:
                with contextlib.suppress(Exception):
                    app_ids = {str(a.get("id")) for a in await catalog.list_apps()}
                    running = [c for c in running if c.labels.get("nekzus.app.id") in app_ids]
        pod_stats = getattr(rt, "pod_stats", None)  # the Kubernetes runtime (not imported here: lazy)
        if pod_stats is not None:
            wanted = {(c.namespace, c.name) for c in running}
            usage: list[dict[str, Any]] = await pod_stats(namespace)
            return [u for u in usage if (u["namespace"], u["containerId"]) in wanted]
        sem = asyncio.Semaphore(BULK_CONCURRENCY)

        async def one(info: ContainerInfo) -> dict[str, Any] | None:
            async with sem:
                try:
                    return await rt.stats(info.full_id or info.id)
                except RuntimeErrorBase:
                    return None

        results = await asyncio.gather(*(one(c) for c in running))
        return [r for r in results if r is not None]

    # -- single actions --------------------------------------------------------------------------

    async def accept_action(
        self,
        principal: Principal,
        action: Action,
        container_id: str,
        timeout: int | None,
        runtime: str | None = None,
    ) -> dict[str, Any]:
        """Check the container exists, then run the action as a job (202 semantics); a full queue of
        the action's kind is 503 QUEUE_FULL."""
        rt = self.manager.get(runtime)
        info = await rt.inspect(container_id)
        precheck = getattr(rt, "precheck", None)
        if precheck is not None:  # runtimes that can refuse up front (Kubernetes bare pods)
            await precheck(action, container_id)

        async def work(_ctx: JobContext) -> None:
            await self._run_action(rt, principal, action, container_id, info, timeout)

        job = await self.jobs.submit(
            f"container.{action}",
            work,
            # A backstop only: the action has its own deadline, reported as a failed action first.
            timeout=_DEADLINE[action] + (timeout or 0) + 30,
            triggered_by=principal.id,
        )
        out: dict[str, Any] = {
            "status": "accepted",
            "containerId": container_id,
            "message": f"Container {action} initiated",
            "timestamp": _now(),
            "runtime": rt.name,
            "jobId": job.id,
        }
        if "/" in container_id:  # Kubernetes `namespace/pod`
            out["namespace"], out["containerId"] = container_id.split("/", 1)
        if timeout is not None and action != "start":
            out["timeout"] = timeout
        return out

    async def _do(self, rt: ContainerRuntime, action: str, cid: str, timeout: int | None) -> None:
        if action == "start":
            await rt.start(cid)
        elif action == "stop":
            await rt.stop(cid, timeout)
        else:
            await rt.restart(cid, timeout)

    async def _run_action(
        self,
        rt: ContainerRuntime,
        principal: Principal,
        action: str,
        container_id: str,
        info: dict[str, Any],
        timeout: int | None,
    ) -> None:
        deadline = _DEADLINE[action] + (timeout or 0)
        audience = {"device_id": principal.id, "include_admins": True}
        try:
            async with asyncio.timeout(deadline):
                await self._do(rt, action, str(info.get("Id") or container_id), timeout)
        except (Exception, asyncio.CancelledError) as exc:
            code, message = self._failure(action, exc)
            log.info("container %s %s failed: %s", container_id, action, message)
            self.bus.emit(
                container_outcome(action, ok=False),
                {"containerId": container_id, "error": code, "message": message, "timestamp": _now()},
                **audience,
            )
            await self._audit(principal, action, container_id, success=False, error=message)
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise JobFailed(message, code=code) from None
        if action == "stop":
            self._mark_stopped(info)
        self.bus.emit(
            container_outcome(action, ok=True),
            {
                "containerId": container_id,
                "status": _PAST[action],
                "message": f"Container {_PAST[action]} successfully",
                "timestamp": _now(),
            },
            **audience,
        )
        await self._audit(principal, action, container_id, success=True)

    @staticmethod
    def _failure(action: str, exc: BaseException) -> tuple[str, str]:
        if isinstance(exc, TimeoutError):
            return _FAILED_CODE[action], f"container {action} timed out"
        if isinstance(exc, asyncio.CancelledError):
            return _FAILED_CODE[action], f"container {action} cancelled"
        if isinstance(exc, ContainerNotFound | AlreadyInState | RuntimeUnavailable):
            return exc.code, exc.message
        if isinstance(exc, RuntimeErrorBase):
            return _FAILED_CODE[action], exc.message
        return _FAILED_CODE[action], f"container {action} failed"

    def _mark_stopped(self, info: dict[str, Any]) -> None:
        labels = (info.get("Config") or {}).get("Labels") or {}
        app_id = labels.get("nekzus.app.id")
        catalog = self.catalog
        if app_id and catalog is not None:
            try:
                catalog.mark_unhealthy(app_id, "Container stopped")
            except Exception:
                log.warning("could not mark app %s unhealthy", app_id, exc_info=True)

    async def _audit(
        self, principal: Principal, action: str, container_id: str, *, success: bool, error: str = ""
    ) -> None:
        if self.audit is not None:
            await self.audit.record(
                f"container.{action}",
                actor=principal.id,
                target=container_id,
                details={"error": error} if error else None,
                success=success,
            )

    # -- bulk and batch --------------------------------------------------------------------------

    def _protected(self, info: ContainerInfo) -> bool:
        return self.manager.is_self(info.full_id or info.id, info.name) or (
            info.labels.get("nekzus.skip", "").lower() == "true"
        )

    async def bulk(self, action: Action, timeout: int | None) -> dict[str, Any]:
        rt = self.manager.get(None)
        containers = [c for c in await rt.list(all=True) if not self._protected(c)]
        if action == "start":
            targets = [c for c in containers if c.state != "running"]
        elif action == "stop":
            targets = [c for c in containers if c.state == "running"]
        else:
            targets = containers
        items = [(c.full_id or c.id, c.name) for c in targets]
        result = await self._run_many(rt, action, items, timeout)
        result["message"] = f"{action.capitalize()} all operation completed"
        return result

    async def batch(self, action: Action, ids: list[str], timeout: int | None) -> dict[str, Any]:
        rt = self.manager.get(None)
        items: list[tuple[str, str]] = []
        refused: list[dict[str, Any]] = []
        for cid in ids:
            name = cid
            with contextlib.suppress(RuntimeErrorBase):
                info = await rt.inspect(cid)
                name = str(info.get("Name", "")).lstrip("/") or cid
                if self.manager.is_self(str(info.get("Id", "")), name):
                    refused.append(
                        {
                            "id": cid[:12],
                            "name": name,
                            "success": False,
                            "error": "refusing to act on Nekzus itself",
                        }
                    )
                    continue
            items.append((cid, name))
        result = await self._run_many(rt, action, items, timeout)
        result["results"] = refused + result["results"]
        result["total"] += len(refused)
        result["failed"] += len(refused)
        result["message"] = "Batch operation completed"
        return result

    async def _run_many(
        self, rt: ContainerRuntime, action: str, items: list[tuple[str, str]], timeout: int | None
    ) -> dict[str, Any]:
        sem = asyncio.Semaphore(BULK_CONCURRENCY)
        per_item = 10.0 + (timeout if timeout is not None else 10) + 10.0

        async def one(cid: str, name: str) -> dict[str, Any]:
            async with sem:
                try:
                    async with asyncio.timeout(per_item):
                        await self._do(rt, action, cid, timeout)
                except Exception as exc:
                    _, message = self._failure(action, exc)
                    return {"id": cid[:12], "name": name, "success": False, "error": message}
                return {"id": cid[:12], "name": name, "success": True}

        tasks = [self.spawn(one(cid, name), f"container-{action}-{cid[:12]}") for cid, name in items]
        results: list[dict[str, Any]] = []
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=BULK_TOTAL_SECONDS)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5.0)
            for task, (cid, name) in zip(tasks, items, strict=True):
                if task in done and not task.cancelled():
                    results.append(task.result())
                else:
                    results.append({"id": cid[:12], "name": name, "success": False, "error": "timed out"})
        success = sum(1 for r in results if r["success"])
        return {
            "total": len(results),
            "success": success,
            "failed": len(results) - success,
            "results": results,
        }

    # -- logs over the WebSocket -----------------------------------------------------------------

    def register_ws(self, hub: Any) -> None:
        for name in ("container.logs.subscribe", "container.logs.start"):
            hub.register_handler(name, self._ws_subscribe)
        for name in ("container.logs.unsubscribe", "container.logs.stop"):
            hub.register_handler(name, self._ws_unsubscribe)

    async def _ws_subscribe(self, client: Any, data: Any) -> None:
        data = data if isinstance(data, dict) else {}
        cid = str(data.get("containerId") or data.get("container_id") or "")
        # Logs routinely print secrets: the same write:* the raw inspect details need.
        if not client.principal.allows(LOGS_SCOPE):
            await _send(
                client,
                "container.logs.error",
                _log_error(cid, "FORBIDDEN", f"Missing required scope: {LOGS_SCOPE}"),
            )
            return
        target, (code, message) = _log_target(data)
        if target is None:
            await _send(client, "container.logs.error", _log_error(cid, code, message))
            return
        cid = target.cid
        try:
            tail = int(data.get("tail", LOG_TAIL_DEFAULT))
        except (TypeError, ValueError):
            tail = LOG_TAIL_DEFAULT
        tail = LOG_TAIL_DEFAULT if tail <= 0 else min(tail, LOG_TAIL_MAX)
        follow = _truthy(data.get("follow", True))
        timestamps = _truthy(data.get("timestamps", False))
        runtime = target.runtime
        try:
            rt = self.manager.get(str(runtime) if runtime else None)
            await rt.inspect(cid)
        except ContainerNotFound:
            await _send(
                client, "container.logs.error", _log_error(cid, "CONTAINER_NOT_FOUND", "container not found")
            )
            return
        except RuntimeUnavailable as exc:
            await _send(client, "container.logs.error", _log_error(cid, "RUNTIME_UNAVAILABLE", exc.message))
            return
        except Exception:
            await _send(
                client, "container.logs.error", _log_error(cid, "INTERNAL_ERROR", "could not open logs")
            )
            return
        key = (str(client.id), cid, target.container)
        previous = self._log_streams.pop(key, None)
        if previous is not None:
            previous.cancel()
        if not any(k[0] == key[0] for k in self._log_streams):
            _on_close(client, lambda *_client: self._close_client(key[0]))
        task = self.spawn(
            self._stream(client, rt, cid, target.container, tail, follow, timestamps),
            f"logs-{key[0]}-{cid[:12]}",
        )
        self._log_streams[key] = task
        task.add_done_callback(lambda t, k=key: self._forget(k, t))  # type: ignore[misc]

    def _forget(self, key: StreamKey, task: asyncio.Task[Any]) -> None:
        if self._log_streams.get(key) is task:
            del self._log_streams[key]

    def _close_client(self, client_id: str) -> None:
        for key in [k for k in self._log_streams if k[0] == client_id]:
            task = self._log_streams.pop(key)
            task.cancel()

    async def _ws_unsubscribe(self, client: Any, data: Any) -> None:
        """Stop the streams named like the subscribe named them: no containerId stops all of this
        client's streams, a container (or pod) all of its streams, a pod's container just that one."""
        data = data if isinstance(data, dict) else {}
        client_id = str(client.id)
        if not (data.get("containerId") or data.get("container_id")):
            keys = [k for k in self._log_streams if k[0] == client_id]
        else:
            target, _problem = _log_target(data)
            if target is None:
                return
            keys = [
                k
                for k in self._log_streams
                if k[:2] == (client_id, target.cid) and (not target.container or k[2] == target.container)
            ]
        for key in keys:
            task = self._log_streams.pop(key)
            task.cancel()

    async def _stream(
        self,
        client: Any,
        rt: ContainerRuntime,
        cid: str,
        container: str,
        tail: int,
        follow: bool,
        timestamps: bool,
    ) -> None:
        shown, where = cid, {}
        if "/" in cid:  # a Kubernetes pod: frames name the pod and its namespace separately
            where["namespace"], shown = cid.split("/", 1)
        if container:
            where["container"] = container
        await _send(client, "container.logs.started", {"containerId": shown, **where, "timestamp": _now()})
        reason, message = ("container_stopped" if follow else "completed"), ""
        try:
            lines = rt.logs(cid, tail=tail, follow=follow, timestamps=timestamps, container=container or None)
            async for item in lines:
                frame: dict[str, Any] = {
                    "containerId": shown,
                    **where,
                    "stream": item.stream,
                    "line": item.line,
                    "message": item.line,
                    "timestamp": _now(),
                }
                if item.log_timestamp:
                    frame["logTimestamp"] = item.log_timestamp
                if not await _send(client, "container.logs.data", frame):
                    return  # the client is gone
                # The same line under the name older dashboards listen for.
                if not await _send(client, "container.logs", frame):
                    return
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(
                    _send(
                        client,
                        "container.logs.ended",
                        {"containerId": shown, **where, "reason": "stopped", "timestamp": _now()},
                    )
                )
            raise
        except ContainerNotFound:
            reason, message = "container_stopped", "container removed"
        except RuntimeErrorBase as exc:
            reason, message = "error", exc.message
        except Exception as exc:
            reason, message = "error", type(exc).__name__
        ended: dict[str, Any] = {"containerId": shown, **where, "reason": reason, "timestamp": _now()}
        if message:
            ended["message"] = message
        await _send(client, "container.logs.ended", ended)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


LOGS_SCOPE = "write:*"


StreamKey = tuple[str, str, str]


@dataclass(frozen=True)
class LogTarget:
    """The log stream a WebSocket message names; subscribe and unsubscribe read it the same way."""

    cid: str  # a container id, or `namespace/pod` for a Kubernetes pod
    container: str  # one container of a pod ("" = the pod's default container)
    runtime: str | None


def _log_target(data: dict[str, Any]) -> tuple[LogTarget | None, tuple[str, str]]:
    """(target, ("", "")) or (None, (error code, message)) for `containerId`, `namespace`, `container`."""
    cid = str(data.get("containerId") or data.get("container_id") or "")
    if not cid or not valid_container_id(cid):
        return None, ("INVALID_CONTAINER_ID", "invalid containerId")
    runtime = str(data["runtime"]) if data.get("runtime") else None
    namespace = str(data.get("namespace") or "")
    if namespace:  # a pod: `namespace/pod` for the Kubernetes runtime
        if not valid_container_id(namespace):
            return None, ("INVALID_NAMESPACE", "invalid namespace")
        runtime, cid = runtime or "kubernetes", f"{namespace}/{cid}"
    container = str(data.get("container") or "")
    if container and not valid_container_id(container):
        return None, ("INVALID_CONTAINER", "invalid container")
    return LogTarget(cid, container, runtime), ("", "")


def _log_error(cid: str, code: str, message: str) -> dict[str, Any]:
    return {"containerId": cid, "error": code, "message": message, "timestamp": _now()}


async def _send(client: Any, type_: str, data: dict[str, Any]) -> bool:
    """Send to a WebSocket client; False when it is gone (a frame dropped under back-pressure is not)."""
    try:
        result = client.send(type_, data)
        if inspect.isawaitable(result):
            await result
    except Exception:
        return False
    return not bool(getattr(client, "closing", False))


def _on_close(client: Any, callback: Callable[..., None]) -> None:
    register = getattr(client, "on_close", None)
    if register is not None:
        register(callback)
