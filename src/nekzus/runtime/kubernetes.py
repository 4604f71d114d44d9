"""The Kubernetes runtime: pods as containers, through the official async client (kubernetes_asyncio).

A pod has no start/stop of its own, so lifecycle goes through the workload that owns it: *stop* scales
the owning Deployment (found via its ReplicaSet) or StatefulSet to 0 replicas, *start* scales it back to
1, *restart* deletes the pod so its controller creates a fresh one. A bare pod (no controller) can only
be stopped (deleted): starting or restarting it would be a lie, so those are refused with 409 up front.

Workloads scaled to zero have no pod to show, so the list carries them as `stopped` entries named after
the workload; `start` on that name scales it up again. Container ids here are `namespace/pod` (or a bare
name, looked up in the configured namespaces).

A kubeconfig that is missing, broken or points at an unreachable server never stops Nekzus: every call
then raises RuntimeUnavailable (503) and the next call tries again.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import aiohttp

from nekzus.runtime.base import (
    AlreadyInState,
    ContainerInfo,
    ContainerNotFound,
    LogLine,
    OperationFailed,
    PortMapping,
    RuntimeErrorBase,
    RuntimeEvent,
    RuntimeUnavailable,
)

log = logging.getLogger("nekzus.runtime.kubernetes")

REQUEST_TIMEOUT = 15  # seconds for one ordinary API call
_PHASE_STATE = {
    "Running": "running",
    "Pending": "pending",
    "Succeeded": "exited",
    "Failed": "failed",
    "Unknown": "failed",
}
_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_SUFFIX = {
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "": 1.0,
    "k": 1e3,
    "K": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
}


NOT_SERVED = "The metrics API (metrics.k8s.io) is not served by this cluster: is metrics-server installed?"


class MetricsUnavailable(RuntimeErrorBase):
    code = "METRICS_UNAVAILABLE"
    status = 503


def quantity(value: Any) -> float:
    """A Kubernetes resource quantity (`250m`, `64Mi`, `1.5`, `12345n`) as a number; 0 when unreadable."""
    match = _QUANTITY.match(str(value or "").strip())
    if not match or match.group(2) not in _SUFFIX:
        return 0.0
    try:
        return float(match.group(1)) * _SUFFIX[match.group(2)]
    except ValueError:
        return 0.0


def _epoch(value: Any) -> int:
    if not value:
        return 0
    try:
        return int(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


async def load_api_client(kubeconfig: str, context: str, in_cluster: bool) -> Any:
    """An ApiClient for the configured cluster: in-cluster service account, else the kubeconfig file
    (`kubeconfig` or the client's default `~/.kube/config`) with an optional context."""
    from kubernetes_asyncio import client, config

    configuration = client.Configuration()
    try:
        if in_cluster:
            # the client ships no type information for this one function
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            await config.load_kube_config(
                config_file=kubeconfig or None,
                context=context or None,
                client_configuration=configuration,
                persist_config=False,
            )
    except Exception as exc:  # the loader raises ConfigException, OSError, yaml errors, ...
        raise RuntimeUnavailable(f"Kubernetes configuration unusable: {type(exc).__name__}: {exc}") from None
    return client.ApiClient(configuration=configuration)


def map_api_error(exc: BaseException, what: str = "") -> Exception:
    """Client exceptions as runtime errors: 404 is not-found, transport trouble is unavailable."""
    from kubernetes_asyncio.client.exceptions import ApiException

    if isinstance(exc, RuntimeErrorBase):
        return exc
    if isinstance(exc, ApiException):
        if exc.status == 404:
            return ContainerNotFound(f"not found: {what}" if what else "not found")
        if exc.status in (401, 403):
            return RuntimeUnavailable(f"Kubernetes API refused access ({exc.status})")
        return OperationFailed(f"Kubernetes API error {exc.status}: {exc.reason}")
    if isinstance(exc, aiohttp.ClientError | OSError | TimeoutError):
        return RuntimeUnavailable(f"Kubernetes API unreachable: {type(exc).__name__}")
    return OperationFailed(str(exc) or type(exc).__name__)


class KubeConnection:
    """One lazily created, retried ApiClient shared by the runtime and discovery."""

    def __init__(self, kubeconfig: str = "", context: str = "", in_cluster: bool = False) -> None:
        self.kubeconfig, self.context, self.in_cluster = kubeconfig, context, in_cluster
        self._client: Any = None
        self._lock = asyncio.Lock()

    async def api(self) -> Any:
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    self._client = await load_api_client(self.kubeconfig, self.context, self.in_cluster)
        return self._client

    async def core(self) -> Any:
        from kubernetes_asyncio import client

        return client.CoreV1Api(await self.api())

    async def apps(self) -> Any:
        from kubernetes_asyncio import client

        return client.AppsV1Api(await self.api())

    async def networking(self) -> Any:
        from kubernetes_asyncio import client

        return client.NetworkingV1Api(await self.api())

    async def custom(self) -> Any:
        from kubernetes_asyncio import client

        return client.CustomObjectsApi(await self.api())

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()


async def read_json(response: Any) -> Any:
    """Body of a `_preload_content=False` call as plain JSON (no model objects: cheaper and total)."""
    from kubernetes_asyncio.client.exceptions import ApiException

    try:
        body = await response.read()
        if not 200 <= response.status <= 299:
            raise ApiException(status=response.status, reason=str(response.reason or ""))
        return json.loads(body)
    finally:
        response.release()


def _pod_state(pod: dict[str, Any]) -> tuple[str, str]:
    status = pod.get("status") or {}
    phase = str(status.get("phase") or "Unknown")
    state = _PHASE_STATE.get(phase, "failed")
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for s in statuses if s.get("ready"))
    waiting = [
        str(((s.get("state") or {}).get("waiting") or {}).get("reason") or "")
        for s in statuses
        if (s.get("state") or {}).get("waiting")
    ]
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return "stopped", "Terminating"
    if phase == "Running" and any(w == "CrashLoopBackOff" for w in waiting):
        return "restarting", "CrashLoopBackOff"
    text = phase
    if statuses:
        text = f"{phase} ({ready}/{len(statuses)} ready)"
    if waiting and waiting[0]:
        text += f", {waiting[0]}"
    return state, text


def pod_info(pod: dict[str, Any]) -> ContainerInfo:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    containers = spec.get("containers") or []
    ports: list[PortMapping] = []
    for c in containers:
        for p in c.get("ports") or []:
            if isinstance(p.get("containerPort"), int):
                ports.append(
                    PortMapping(private_port=p["containerPort"], type=str(p.get("protocol") or "TCP").lower())
                )
    state, status = _pod_state(pod)
    namespace = str(meta.get("namespace") or "default")
    name = str(meta.get("name") or "")
    return ContainerInfo(
        id=name,
        name=name,
        image=str(containers[0].get("image", "")) if containers else "",
        state=state,
        status=status,
        created=_epoch(meta.get("creationTimestamp")),
        ports=ports,
        labels={str(k): str(v) for k, v in (meta.get("labels") or {}).items()},
        runtime="kubernetes",
        namespace=namespace,
        full_id=f"{namespace}/{name}",
    )


def workload_info(obj: dict[str, Any]) -> ContainerInfo:
    """A Deployment/StatefulSet scaled to zero, listed as a stopped entry named after the workload."""
    meta = obj.get("metadata") or {}
    template = (obj.get("spec") or {}).get("template") or {}
    containers = (template.get("spec") or {}).get("containers") or []
    namespace = str(meta.get("namespace") or "default")
    name = str(meta.get("name") or "")
    labels = {str(k): str(v) for k, v in ((template.get("metadata") or {}).get("labels") or {}).items()}
    return ContainerInfo(
        id=name,
        name=name,
        image=str(containers[0].get("image", "")) if containers else "",
        state="stopped",
        status=f"Scaled to 0 ({obj.get('kind', 'Deployment')})",
        created=_epoch(meta.get("creationTimestamp")),
        ports=[
            PortMapping(private_port=p["containerPort"], type=str(p.get("protocol") or "TCP").lower())
            for c in containers
            for p in c.get("ports") or []
            if isinstance(p.get("containerPort"), int)
        ],
        labels=labels,
        runtime="kubernetes",
        namespace=namespace,
        full_id=f"{namespace}/{name}",
    )


class KubernetesRuntime:
    name = "kubernetes"

    def __init__(
        self,
        kubeconfig: str = "",
        context: str = "",
        in_cluster: bool = False,
        namespaces: list[str] | None = None,
        metrics_cache_ttl: float = 30.0,
        metrics_server: bool = True,
    ) -> None:
        self.conn = KubeConnection(kubeconfig, context, in_cluster)
        self.namespaces = [n for n in (namespaces or []) if n]
        self.metrics_cache_ttl = metrics_cache_ttl
        # False: the cluster runs no metrics-server, so usage is never asked for (a clear 503 instead).
        self.metrics_server = metrics_server
        self._metrics_missing_until = 0.0
        self._metrics_missing_reason = ""

    # -- helpers -------------------------------------------------------------------------------------

    async def _call(self, what: str, coro_factory: Any) -> Any:
        try:
            return await coro_factory()
        except Exception as exc:
            raise map_api_error(exc, what) from None

    def _allowed(self, namespace: str) -> bool:
        return not self.namespaces or namespace in self.namespaces

    def _split(self, container_id: str) -> tuple[list[str], str]:
        """(namespaces to look in, name) for `ns/name` or a bare name."""
        if "/" in container_id:
            namespace, name = container_id.split("/", 1)
            if not self._allowed(namespace):
                raise ContainerNotFound(f"namespace {namespace} is not managed by Nekzus")
            return [namespace], name
        return (self.namespaces or ["default"]), container_id

    async def _pod(self, container_id: str) -> dict[str, Any] | None:
        namespaces, name = self._split(container_id)
        core = await self.conn.core()
        for ns in namespaces:
            try:
                pod: dict[str, Any] = await self._call(
                    name,
                    lambda ns=ns: _json(
                        core.read_namespaced_pod(
                            name, ns, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
                        )
                    ),
                )
            except ContainerNotFound:
                continue
            return pod
        return None

    async def _workload(self, namespace: str, name: str) -> dict[str, Any] | None:
        apps = await self.conn.apps()
        for reader in (apps.read_namespaced_deployment, apps.read_namespaced_stateful_set):
            try:
                workload: dict[str, Any] = await self._call(
                    name,
                    lambda reader=reader: _json(
                        reader(name, namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT)
                    ),
                )
            except ContainerNotFound:
                continue
            return workload
        return None

    async def _owner(self, pod: dict[str, Any]) -> dict[str, Any] | None:
        """The Deployment (through its ReplicaSet) or StatefulSet that controls a pod, if any."""
        meta = pod.get("metadata") or {}
        namespace = str(meta.get("namespace") or "default")
        apps = await self.conn.apps()
        for ref in meta.get("ownerReferences") or []:
            kind, name = ref.get("kind"), str(ref.get("name") or "")
            if kind == "StatefulSet":
                return await self._workload(namespace, name)
            if kind == "ReplicaSet":
                try:
                    rs = await self._call(
                        name,
                        lambda name=name: _json(
                            apps.read_namespaced_replica_set(
                                name, namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
                            )
                        ),
                    )
                except ContainerNotFound:
                    return None
                for rs_ref in (rs.get("metadata") or {}).get("ownerReferences") or []:
                    if rs_ref.get("kind") == "Deployment":
                        return await self._workload(namespace, str(rs_ref.get("name") or ""))
        return None

    async def _resolve(self, container_id: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """(pod, owning workload) for an id; a stopped workload's name gives (None, workload)."""
        pod = await self._pod(container_id)
        if pod is not None:
            return pod, await self._owner(pod)
        namespaces, name = self._split(container_id)
        for ns in namespaces:
            workload = await self._workload(ns, name)
            if workload is not None:
                return None, workload
        raise ContainerNotFound(f"container not found: {container_id}")

    async def _scale(self, workload: dict[str, Any], replicas: int) -> None:
        meta = workload.get("metadata") or {}
        apps = await self.conn.apps()
        patch = (
            apps.patch_namespaced_deployment_scale
            if workload.get("kind", "Deployment") == "Deployment"
            else apps.patch_namespaced_stateful_set_scale
        )
        await self._call(
            str(meta.get("name")),
            lambda: patch(
                meta.get("name"),
                meta.get("namespace"),
                {"spec": {"replicas": replicas}},
                _request_timeout=REQUEST_TIMEOUT,
            ),
        )

    # -- ContainerRuntime ----------------------------------------------------------------------------

    async def ping(self) -> dict[str, Any]:
        from kubernetes_asyncio import client

        api = await self.conn.api()
        version = await self._call(
            "version",
            lambda: client.VersionApi(api).get_code(_request_timeout=5),
        )
        return {"status": "ok", "version": getattr(version, "git_version", "")}

    async def list(self, *, all: bool = True, namespace: str | None = None) -> list[ContainerInfo]:
        if namespace and not self._allowed(namespace):
            return []
        core = await self.conn.core()
        apps = await self.conn.apps()
        scopes: list[str | None] = [namespace] if namespace else (list(self.namespaces) or [None])
        pods: list[dict[str, Any]] = []
        workloads: list[dict[str, Any]] = []
        for ns in scopes:
            if ns is None:
                calls = [
                    (pods, core.list_pod_for_all_namespaces),
                    (workloads, apps.list_deployment_for_all_namespaces),
                    (workloads, apps.list_stateful_set_for_all_namespaces),
                ]
                for sink, fn in calls:
                    body = await self._call(
                        "list",
                        lambda fn=fn: _json(fn(_preload_content=False, _request_timeout=REQUEST_TIMEOUT)),
                    )
                    sink.extend(_items(body, fn))
            else:
                ns_calls = [
                    (pods, core.list_namespaced_pod),
                    (workloads, apps.list_namespaced_deployment),
                    (workloads, apps.list_namespaced_stateful_set),
                ]
                for sink, fn in ns_calls:
                    body = await self._call(
                        "list",
                        lambda fn=fn, ns=ns: _json(
                            fn(ns, _preload_content=False, _request_timeout=REQUEST_TIMEOUT)
                        ),
                    )
                    sink.extend(_items(body, fn))
        items = [pod_info(p) for p in pods]
        if not all:
            items = [c for c in items if c.state == "running"]
        else:
            for w in workloads:
                if int((w.get("spec") or {}).get("replicas", 1) or 0) == 0:
                    items.append(workload_info(w))
        items.sort(key=lambda c: (c.namespace, c.name))
        return items

    async def inspect(self, container_id: str) -> dict[str, Any]:
        """Normalized pod details (not the raw object). `State`/`Config` mirror Docker's inspect keys so
        shared code (stats, stop bookkeeping) reads both runtimes alike."""
        pod, owner = await self._resolve(container_id)
        info = pod_info(pod) if pod is not None else workload_info(owner or {})
        details: dict[str, Any] = {
            "Id": info.full_id,
            "Name": info.name,
            "id": info.id,
            "name": info.name,
            "runtime": "kubernetes",
            "namespace": info.namespace,
            "image": info.image,
            "state": info.state,
            "status": info.status,
            "created": info.created,
            "labels": info.labels,
            "ports": [p.to_json() for p in info.ports],
            "owner": (
                {"kind": owner.get("kind", ""), "name": (owner.get("metadata") or {}).get("name", "")}
                if owner
                else None
            ),
            "State": {"Running": info.state == "running", "Status": info.state},
            "Config": {"Labels": info.labels, "Image": info.image},
        }
        if pod is not None:
            status = pod.get("status") or {}
            details.update(
                {
                    "node": (pod.get("spec") or {}).get("nodeName", ""),
                    "podIP": status.get("podIP", ""),
                    "phase": status.get("phase", ""),
                    "annotations": (pod.get("metadata") or {}).get("annotations") or {},
                    "containers": [
                        {
                            "name": s.get("name", ""),
                            "image": s.get("image", ""),
                            "ready": bool(s.get("ready")),
                            "restartCount": int(s.get("restartCount") or 0),
                        }
                        for s in status.get("containerStatuses") or []
                    ],
                }
            )
        return details

    async def precheck(self, action: str, container_id: str) -> None:
        """Refuse at once what cannot work (a clear 409 instead of a failure event later)."""
        pod, owner = await self._resolve(container_id)
        if owner is None and action in ("start", "restart"):
            verb = "started" if action == "start" else "restarted"
            raise AlreadyInState(
                f"pod {container_id} is not managed by a Deployment or StatefulSet and cannot be {verb}",
                "BARE_POD",
            )
        replicas = int(((owner or {}).get("spec") or {}).get("replicas", 1) or 0)
        if action == "start" and pod is not None and replicas > 0:
            raise AlreadyInState("container is already running", "CONTAINER_ALREADY_STARTED")
        if action == "stop" and pod is None:
            raise AlreadyInState("container is already stopped", "CONTAINER_ALREADY_STOPPED")
        if action == "restart" and pod is None:
            raise AlreadyInState("container is stopped; start it instead", "CONTAINER_NOT_RUNNING")

    async def start(self, container_id: str) -> None:
        pod, owner = await self._resolve(container_id)
        if owner is None:
            raise AlreadyInState(f"pod {container_id} has no controller and cannot be started", "BARE_POD")
        if int((owner.get("spec") or {}).get("replicas", 1) or 0) > 0 and pod is not None:
            raise AlreadyInState("container is already running", "CONTAINER_ALREADY_STARTED")
        await self._scale(owner, 1)

    async def stop(self, container_id: str, timeout: int | None = None) -> None:
        pod, owner = await self._resolve(container_id)
        if owner is not None:
            if int((owner.get("spec") or {}).get("replicas", 1) or 0) == 0:
                raise AlreadyInState("container is already stopped", "CONTAINER_ALREADY_STOPPED")
            await self._scale(owner, 0)
            return
        assert pod is not None
        await self._delete_pod(pod, timeout)

    async def restart(self, container_id: str, timeout: int | None = None) -> None:
        pod, owner = await self._resolve(container_id)
        if pod is None:
            raise AlreadyInState("container is stopped; start it instead", "CONTAINER_NOT_RUNNING")
        if owner is None:
            raise AlreadyInState(f"pod {container_id} has no controller and cannot be restarted", "BARE_POD")
        await self._delete_pod(pod, timeout)

    async def _delete_pod(self, pod: dict[str, Any], timeout: int | None) -> None:
        meta = pod.get("metadata") or {}
        core = await self.conn.core()
        kwargs: dict[str, Any] = {"_request_timeout": REQUEST_TIMEOUT}
        if timeout is not None:
            kwargs["grace_period_seconds"] = timeout
        await self._call(
            str(meta.get("name")),
            lambda: core.delete_namespaced_pod(meta.get("name"), meta.get("namespace"), **kwargs),
        )

    def _metrics_gate(self) -> None:
        """Refuse before calling the cluster when usage is switched off or was just found missing."""
        if not self.metrics_server:
            raise MetricsUnavailable(
                "Pod metrics are switched off (runtimes.kubernetes.metrics_server is false)"
            )
        if time.monotonic() < self._metrics_missing_until:
            raise MetricsUnavailable(self._metrics_missing_reason)

    async def _metrics_call(self, call: Any, not_served: str = NOT_SERVED) -> Any:
        """One metrics.k8s.io read. The group is absent (404) when no metrics-server is installed and
        answers 503 while its APIService is registered but its pods are down: both are "not available",
        remembered for a while so a page showing many pods does not ask again for each."""
        from kubernetes_asyncio.client.exceptions import ApiException

        try:
            return await call()
        except ApiException as exc:
            if exc.status == 404:
                reason = not_served
            elif exc.status == 503:
                reason = "metrics-server is registered but not answering (503 from metrics.k8s.io)"
            else:
                raise map_api_error(exc, "podmetrics") from None
        except Exception as exc:
            raise map_api_error(exc, "podmetrics") from None
        self._metrics_missing_reason = reason
        self._metrics_missing_until = time.monotonic() + min(self.metrics_cache_ttl, 30.0)
        raise MetricsUnavailable(reason)

    async def stats(self, container_id: str) -> dict[str, Any]:
        """Usage from metrics-server (CPU in cores and % of the pods' limits; no network figures)."""
        pod = await self._pod(container_id)
        if pod is None:
            raise ContainerNotFound(f"container not found: {container_id}")
        meta = pod.get("metadata") or {}
        self._metrics_gate()
        custom = await self.conn.custom()
        # One pod's read answers 404 both without metrics-server and before its first sample.
        usage = await self._metrics_call(
            lambda: custom.get_namespaced_custom_object(
                "metrics.k8s.io",
                "v1beta1",
                meta.get("namespace"),
                "pods",
                meta.get("name"),
                _request_timeout=REQUEST_TIMEOUT,
            ),
            "No usage for this pod from the metrics API (metrics.k8s.io): metrics-server is not installed, "
            "or has no sample of the pod yet",
        )
        return pod_usage(pod, usage)

    async def pod_stats(self, namespace: str | None = None) -> builtins.list[dict[str, Any]]:
        """Usage of every running pod Nekzus manages (optionally in one namespace): one list of the
        metrics API per namespace scope, joined with the pods' limits."""
        if namespace and not self._allowed(namespace):
            return []
        self._metrics_gate()
        core = await self.conn.core()
        custom = await self.conn.custom()
        scopes: list[str | None] = [namespace] if namespace else (list(self.namespaces) or [None])
        samples: builtins.list[dict[str, Any]] = []
        pods: dict[tuple[str, str], dict[str, Any]] = {}
        for ns in scopes:
            if ns is None:
                body = await self._metrics_call(
                    lambda: custom.list_cluster_custom_object(
                        "metrics.k8s.io", "v1beta1", "pods", _request_timeout=REQUEST_TIMEOUT
                    )
                )
                listed = await self._call(
                    "list",
                    lambda: _json(
                        core.list_pod_for_all_namespaces(
                            _preload_content=False, _request_timeout=REQUEST_TIMEOUT
                        )
                    ),
                )
            else:
                body = await self._metrics_call(
                    lambda ns=ns: custom.list_namespaced_custom_object(
                        "metrics.k8s.io", "v1beta1", ns, "pods", _request_timeout=REQUEST_TIMEOUT
                    )
                )
                listed = await self._call(
                    "list",
                    lambda ns=ns: _json(
                        core.list_namespaced_pod(ns, _preload_content=False, _request_timeout=REQUEST_TIMEOUT)
                    ),
                )
            samples.extend(i for i in (body or {}).get("items") or [] if isinstance(i, dict))
            for pod in (listed or {}).get("items") or []:
                meta = pod.get("metadata") or {}
                pods[(str(meta.get("namespace")), str(meta.get("name")))] = pod
        out: builtins.list[dict[str, Any]] = []
        for sample in samples:
            meta = sample.get("metadata") or {}
            pod = pods.get((str(meta.get("namespace")), str(meta.get("name"))))
            if pod is not None and (pod.get("status") or {}).get("phase") == "Running":
                out.append(pod_usage(pod, sample))
        out.sort(key=lambda s: (s["namespace"], s["containerId"]))
        return out

    async def logs(
        self,
        container_id: str,
        *,
        tail: int = 100,
        follow: bool = True,
        timestamps: bool = False,
        container: str | None = None,
    ) -> AsyncIterator[LogLine]:
        """The pod's log stream: plain text lines (Kubernetes does not multiplex like Docker)."""
        pod = await self._pod(container_id)
        if pod is None:
            raise ContainerNotFound(f"container not found: {container_id}")
        meta = pod.get("metadata") or {}
        core = await self.conn.core()
        response = await self._call(
            "log",
            lambda: core.read_namespaced_pod_log(
                meta.get("name"),
                meta.get("namespace"),
                follow=follow,
                tail_lines=tail,
                timestamps=timestamps,
                _preload_content=False,
                **({"container": container} if container else {}),
            ),
        )
        if not 200 <= response.status <= 299:
            response.release()
            raise ContainerNotFound(f"container not found: {container_id}")
        try:
            while True:
                try:
                    raw = await response.content.readline()
                except (aiohttp.ClientError, OSError) as exc:
                    raise map_api_error(exc) from None
                if not raw:
                    return
                if len(raw) > 1 << 20:
                    continue
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                stamp = None
                if timestamps and " " in line:
                    stamp, line = line.split(" ", 1)
                yield LogLine("stdout", line, stamp)
        finally:
            response.release()

    async def events(self) -> AsyncIterator[RuntimeEvent]:
        """Pod lifecycle is watched by Kubernetes discovery itself; the runtime emits nothing."""
        return
        yield  # pragma: no cover

    async def close(self) -> None:
        await self.conn.close()


def pod_usage(pod: dict[str, Any], sample: dict[str, Any]) -> dict[str, Any]:
    """A PodMetrics sample in the container-stats shape: usage summed over the pod's containers, as a
    percentage of the summed limits (0 when a pod sets none: then `totalCores`/`limit` are 0 too)."""
    meta = pod.get("metadata") or {}
    containers = sample.get("containers") or []
    cpu_used = sum(quantity((c.get("usage") or {}).get("cpu")) for c in containers)
    mem_used = sum(quantity((c.get("usage") or {}).get("memory")) for c in containers)
    limits = [
        ((c.get("resources") or {}).get("limits") or {})
        for c in (pod.get("spec") or {}).get("containers") or []
    ]
    cpu_limit = sum(quantity(lim.get("cpu")) for lim in limits)
    mem_limit = sum(quantity(lim.get("memory")) for lim in limits)
    return {
        "containerId": str(meta.get("name")),
        "namespace": str(meta.get("namespace")),
        "runtime": "kubernetes",
        "cpu": {
            "usage": round(cpu_used / cpu_limit * 100, 2) if cpu_limit else 0.0,
            "coresUsed": round(cpu_used, 4),
            "totalCores": round(cpu_limit, 4),
        },
        "memory": {
            "usage": round(mem_used / mem_limit * 100, 2) if mem_limit else 0.0,
            "used": int(mem_used),
            "limit": int(mem_limit),
            "available": int(max(mem_limit - mem_used, 0)),
        },
        "network": {"rx": 0, "tx": 0},
        "timestamp": int(time.time()),
    }


async def _json(call: Any) -> Any:
    return await read_json(await call)


def _items(body: Any, fn: Any) -> list[dict[str, Any]]:
    """Items of a list answer, with `kind` filled in (list items carry none)."""
    kind = "StatefulSet" if "stateful_set" in getattr(fn, "__name__", "") else None
    if kind is None and "deployment" in getattr(fn, "__name__", ""):
        kind = "Deployment"
    out: list[dict[str, Any]] = []
    for item in (body or {}).get("items") or []:
        if isinstance(item, dict):
            if kind:
                item.setdefault("kind", kind)
            out.append(item)
    return out
