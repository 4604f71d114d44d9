"""A small Kubernetes API server emulator on loopback, for tests (no kube-apiserver can run here).

It speaks enough of the real REST protocol for `kubernetes_asyncio` to drive it unchanged: list with
label selectors, `limit`/`continue` pagination and a monotonically increasing `resourceVersion`; watch
streams (`?watch=true`) that honour `resourceVersion` and `timeoutSeconds`, answer `410 Gone` (as an
ERROR event, like the real server) once the requested version has been compacted, and can be cut
mid-stream; the Deployment/StatefulSet `scale` subresource with a tiny controller that creates and
deletes the owned pods; pod logs (plain text, optionally followed) and, when switched on,
metrics-server's `PodMetrics`.

It runs its own event loop in a thread so synchronous tests can change objects while a Nekzus
subprocess watches them.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

# (group path prefix, plural) -> kind
KINDS: dict[tuple[str, str], str] = {
    ("api/v1", "namespaces"): "Namespace",
    ("api/v1", "pods"): "Pod",
    ("api/v1", "services"): "Service",
    ("apis/apps/v1", "deployments"): "Deployment",
    ("apis/apps/v1", "replicasets"): "ReplicaSet",
    ("apis/apps/v1", "statefulsets"): "StatefulSet",
    ("apis/networking.k8s.io/v1", "ingresses"): "Ingress",
}
API_VERSION = {
    "Namespace": "v1",
    "Pod": "v1",
    "Service": "v1",
    "Deployment": "apps/v1",
    "ReplicaSet": "apps/v1",
    "StatefulSet": "apps/v1",
    "Ingress": "networking.k8s.io/v1",
}
HISTORY = 5000  # events kept for watches; older resourceVersions are "compacted" (410 Gone)


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Equality (`=`, `==`, `!=`), set (`in`, `notin`) and existence (`k`, `!k`) requirements."""
    if not selector:
        return True
    parts: list[str] = []
    depth, current = 0, ""
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    for raw in parts:
        req = raw.strip()
        if not req:
            continue
        if " notin " in req:
            key, values = req.split(" notin ", 1)
            allowed = {v.strip() for v in values.strip()[1:-1].split(",")}
            if labels.get(key.strip()) in allowed:
                return False
        elif " in " in req:
            key, values = req.split(" in ", 1)
            allowed = {v.strip() for v in values.strip()[1:-1].split(",")}
            if labels.get(key.strip()) not in allowed:
                return False
        elif "!=" in req:
            key, value = req.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in req:
            key, value = req.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif req.startswith("!"):
            if req[1:].strip() in labels:
                return False
        elif req not in labels:
            return False
    return True


class KubeEmulator:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.rv = 100
        self.events: list[tuple[int, str, str, dict[str, Any]]] = []  # (rv, kind, type, object)
        self.compacted = 0
        self.metrics_enabled = False
        self.metrics_down = False  # the APIService is registered but metrics-server does not answer: 503
        # (namespace, pod) -> container name -> usage as metrics-server writes it ("12345678n", "2560Ki");
        # containers not listed use 250m CPU and 64Mi memory.
        self.pod_usage: dict[tuple[str, str], dict[str, dict[str, str]]] = {}
        self.pod_logs: dict[tuple[str, str], list[str]] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) for assertions
        self.watch_count = 0
        self.forbidden: set[str] = set()  # request paths answered 403
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None
        self._drop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> KubeEmulator:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self._serve())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup() if self._runner else asyncio.sleep(0))
            loop.close()

        self._thread = threading.Thread(target=run, name="kube-emulator", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("emulator did not start")
        return self

    async def _serve(self) -> None:
        self._changed = asyncio.Event()
        self._drop = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    def stop(self) -> None:
        if self._loop is not None:
            loop = self._loop

            async def shutdown() -> None:
                if self._drop is not None:
                    self._drop.set()  # end open watches and followed logs
                if self._runner is not None:
                    await self._runner.cleanup()
                    self._runner = None
                current = asyncio.current_task()
                for task in asyncio.all_tasks():
                    if task is not current:
                        task.cancel()

            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_kubeconfig(self, path: Path, context: str = "emulator") -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "emu", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": "test-token"}}],
            "contexts": [{"name": context, "context": {"cluster": "emu", "user": "tester"}}],
            "current-context": context,
        }
        path.write_text(json.dumps(config))
        return path

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the emulator's loop (all state changes happen there) and return its result."""
        assert self._loop is not None

        async def wrapper() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), self._loop).result(10)

    # -- state changes (thread-safe entry points) ----------------------------------------------------

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.call(lambda: self._put(copy.deepcopy(obj)))
        return result

    def apply_many(self, objs: list[dict[str, Any]]) -> None:
        self.call(lambda: [self._put(copy.deepcopy(o)) for o in objs])

    def delete(self, kind: str, namespace: str, name: str) -> None:
        self.call(lambda: self._remove(kind, namespace, name))

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self.call(lambda: self.objects.get((kind, namespace, name)))
        return copy.deepcopy(obj) if obj else None

    def list_kind(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        def pick() -> list[dict[str, Any]]:
            return [
                copy.deepcopy(o)
                for (k, ns, _), o in self.objects.items()
                if k == kind and (namespace is None or ns == namespace)
            ]

        result: list[dict[str, Any]] = self.call(pick)
        return result

    def compact(self) -> None:
        """Forget all watch history: any watch resuming from an older resourceVersion gets 410 Gone."""

        def run() -> None:
            self.compacted = self.rv
            self.events.clear()

        self.call(run)

    def drop_watches(self) -> None:
        """Cut every open watch stream mid-flight (as a proxy or apiserver restart would)."""

        def run() -> None:
            assert self._drop is not None
            self._drop.set()
            self._drop = asyncio.Event()

        self.call(run)

    def set_logs(self, namespace: str, pod: str, lines: list[str]) -> None:
        self.pod_logs[(namespace, pod)] = list(lines)

    # -- internals (emulator loop only) --------------------------------------------------------------

    def _next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def _put(self, obj: dict[str, Any], *, notify: bool = True) -> dict[str, Any]:
        kind = obj["kind"]
        obj.setdefault("apiVersion", API_VERSION[kind])
        meta = obj.setdefault("metadata", {})
        namespace = "" if kind == "Namespace" else meta.setdefault("namespace", "default")
        key = (kind, namespace, meta["name"])
        existing = self.objects.get(key)
        meta.setdefault("labels", {})
        meta.setdefault("annotations", {})
        if existing is None:
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            event = "ADDED"
        else:
            meta["uid"] = existing["metadata"]["uid"]
            meta["creationTimestamp"] = existing["metadata"]["creationTimestamp"]
            event = "MODIFIED"
        rv = self._next_rv()
        meta["resourceVersion"] = str(rv)
        self.objects[key] = obj
        self._record(rv, kind, event, obj)
        if kind in ("Deployment", "StatefulSet", "ReplicaSet"):
            self._reconcile(obj)
        return copy.deepcopy(obj)

    def _remove(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self.objects.pop((kind, namespace, name), None)
        if obj is None:
            return None
        rv = self._next_rv()
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(rv)
        self._record(rv, kind, "DELETED", obj)
        if kind == "Pod":
            owner = self._owner(obj)
            if owner is not None:
                self._reconcile(owner)  # a controller replaces a deleted pod
        elif kind in ("Deployment", "StatefulSet", "ReplicaSet"):
            for (k, ns, n), child in list(self.objects.items()):
                if ns == namespace and any(
                    ref.get("name") == name and ref.get("kind") == kind
                    for ref in child["metadata"].get("ownerReferences") or []
                ):
                    self._remove(k, ns, n)
        return obj

    def _record(self, rv: int, kind: str, event: str, obj: dict[str, Any]) -> None:
        self.events.append((rv, kind, event, copy.deepcopy(obj)))
        if len(self.events) > HISTORY:
            dropped = self.events[: len(self.events) - HISTORY]
            self.compacted = dropped[-1][0]
            del self.events[: len(self.events) - HISTORY]
        if self._changed is not None:
            # Wake every watcher: each holds the event that was current when it last looked.
            self._changed.set()
            self._changed = asyncio.Event()

    def _owner(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        for ref in obj["metadata"].get("ownerReferences") or []:
            owner = self.objects.get((ref.get("kind", ""), obj["metadata"]["namespace"], ref.get("name", "")))
            if owner is not None:
                return owner
        return None

    def _reconcile(self, owner: dict[str, Any]) -> None:
        """A miniature controller: Deployment -> one ReplicaSet -> N pods; StatefulSet -> N pods."""
        kind = owner["kind"]
        ns = owner["metadata"]["namespace"]
        name = owner["metadata"]["name"]
        replicas = int((owner.get("spec") or {}).get("replicas", 1))
        if kind == "Deployment":
            rs_name = f"{name}-{owner['metadata']['uid'][:10].replace('-', '')}"
            rs = self.objects.get(("ReplicaSet", ns, rs_name))
            template = copy.deepcopy((owner.get("spec") or {}).get("template") or {})
            if rs is None or rs["spec"].get("replicas") != replicas:
                self._put(
                    {
                        "kind": "ReplicaSet",
                        "metadata": {
                            "name": rs_name,
                            "namespace": ns,
                            "labels": dict((template.get("metadata") or {}).get("labels") or {}),
                            "ownerReferences": [
                                {
                                    "apiVersion": "apps/v1",
                                    "kind": "Deployment",
                                    "name": name,
                                    "uid": owner["metadata"]["uid"],
                                    "controller": True,
                                }
                            ],
                        },
                        "spec": {"replicas": replicas, "template": template},
                    }
                )
            status = {"replicas": replicas, "readyReplicas": replicas}
            if owner.get("status") != status:
                owner["status"] = status
            return
        pods = [
            o
            for (k, n_s, _), o in self.objects.items()
            if k == "Pod"
            and n_s == ns
            and any(r.get("name") == name for r in o["metadata"].get("ownerReferences") or [])
        ]
        pods.sort(key=lambda p: p["metadata"]["name"])
        template = (owner.get("spec") or {}).get("template") or {}
        while len(pods) > replicas:
            victim = pods.pop()
            self._remove("Pod", ns, victim["metadata"]["name"])
        index = 0
        while len(pods) < replicas:
            if kind == "StatefulSet":
                pod_name = f"{name}-{index}"
                index += 1
                if ("Pod", ns, pod_name) in self.objects:
                    continue
            else:
                pod_name = f"{name}-{uuid.uuid4().hex[:5]}"
            pod = {
                "kind": "Pod",
                "metadata": {
                    "name": pod_name,
                    "namespace": ns,
                    "labels": dict((template.get("metadata") or {}).get("labels") or {}),
                    "ownerReferences": [
                        {
                            "apiVersion": "apps/v1",
                            "kind": kind,
                            "name": name,
                            "uid": owner["metadata"]["uid"],
                            "controller": True,
                        }
                    ],
                },
                "spec": copy.deepcopy(template.get("spec") or {"containers": []}),
                "status": running_status(template.get("spec") or {}),
            }
            pods.append(self._put(pod))

    # -- HTTP ----------------------------------------------------------------------------------------

    def _route(self, path: str) -> tuple[str, str | None, str | None, str | None] | None:
        """(kind, namespace, name, subresource) for a REST path, or None."""
        parts = [p for p in path.strip("/").split("/") if p]
        for (prefix, plural), kind in KINDS.items():
            pre = prefix.split("/")
            if parts[: len(pre)] != pre:
                continue
            rest = parts[len(pre) :]
            if rest[:1] == [plural]:
                if kind == "Namespace" and len(rest) == 2:
                    return kind, None, rest[1], None
                if len(rest) == 1:
                    return kind, None, None, None
            if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] == plural:
                name = rest[3] if len(rest) > 3 else None
                sub = rest[4] if len(rest) > 4 else None
                return kind, rest[1], name, sub
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        path = request.path
        if path in self.forbidden:  # RBAC without access to this collection
            return web.json_response(_status(403, "Forbidden", f"cannot list {path}"), status=403)
        if path.rstrip("/") == "/version":
            return web.json_response(
                {
                    "major": "1",
                    "minor": "31",
                    "gitVersion": "v1.31.0-emulator",
                    "gitCommit": "0" * 40,
                    "gitTreeState": "clean",
                    "buildDate": "2026-01-01T00:00:00Z",
                    "goVersion": "go1.22.0",
                    "compiler": "gc",
                    "platform": "linux/amd64",
                }
            )
        if path.startswith("/apis/metrics.k8s.io/"):
            return self._metrics(path)
        route = self._route(path)
        if route is None:
            return web.json_response(
                _status(404, "NotFound", f"the server could not find {path}"), status=404
            )
        kind, namespace, name, sub = route
        if request.method == "GET" and name is None:
            if request.query.get("watch", "").lower() in ("true", "1"):
                return await self._watch(request, kind, namespace)
            return self._list(request, kind, namespace)
        key = (kind, namespace or "", name or "")
        obj = self.objects.get(key)
        if obj is None:
            return web.json_response(
                _status(404, "NotFound", f'{kind.lower()}s "{name}" not found'), status=404
            )
        if sub == "log" and request.method == "GET":
            return await self._logs(request, namespace or "", name or "")
        if sub == "scale":
            if request.method in ("PATCH", "PUT"):
                body = await request.json()
                replicas = int(((body or {}).get("spec") or {}).get("replicas", 0))
                updated = copy.deepcopy(obj)
                updated.setdefault("spec", {})["replicas"] = replicas
                self._put(updated)
                obj = self.objects[key]
            return web.json_response(
                {
                    "kind": "Scale",
                    "apiVersion": "autoscaling/v1",
                    "metadata": {"name": name, "namespace": namespace},
                    "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 0)},
                    "status": {"replicas": (obj.get("spec") or {}).get("replicas", 0)},
                }
            )
        if request.method == "GET":
            return web.json_response(obj)
        if request.method == "DELETE":
            gone = self._remove(kind, namespace or "", name or "")
            return web.json_response(gone)
        return web.json_response(_status(405, "MethodNotAllowed", "not supported"), status=405)

    def _matching(self, request: web.Request, kind: str, namespace: str | None) -> list[dict[str, Any]]:
        selector = request.query.get("labelSelector", "")
        out = [
            o
            for (k, ns, _), o in self.objects.items()
            if k == kind
            and (namespace is None or ns == namespace)
            and _selector_matches(selector, o["metadata"].get("labels") or {})
        ]
        out.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        return out

    def _list(self, request: web.Request, kind: str, namespace: str | None) -> web.Response:
        items = self._matching(request, kind, namespace)
        start = int(request.query.get("continue") or 0)
        limit = int(request.query.get("limit") or 0)
        meta: dict[str, Any] = {"resourceVersion": str(self.rv)}
        if limit > 0:
            page = items[start : start + limit]
            if start + limit < len(items):
                meta["continue"] = str(start + limit)
                meta["remainingItemCount"] = len(items) - start - limit
        else:
            page = items
        body = {"kind": f"{kind}List", "apiVersion": API_VERSION[kind], "metadata": meta, "items": page}
        return web.Response(text=json.dumps(body), content_type="application/json")

    async def _watch(self, request: web.Request, kind: str, namespace: str | None) -> web.StreamResponse:
        assert self._changed is not None and self._drop is not None
        self.watch_count += 1
        selector = request.query.get("labelSelector", "")
        timeout = min(float(request.query.get("timeoutSeconds") or 300), 300.0)
        since = int(request.query.get("resourceVersion") or 0) or self.rv
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        if since < self.compacted:
            err = _status(410, "Expired", f"too old resource version: {since} ({self.compacted})")
            await response.write((json.dumps({"type": "ERROR", "object": err}) + "\n").encode())
            return response
        deadline = time.monotonic() + timeout
        drop = self._drop
        while True:
            changed = self._changed
            for rv, k, event, obj in list(self.events):
                if rv <= since or k != kind:
                    continue
                since = rv
                if namespace is not None and obj["metadata"].get("namespace") != namespace:
                    continue
                if not _selector_matches(selector, obj["metadata"].get("labels") or {}):
                    continue
                await response.write((json.dumps({"type": event, "object": obj}) + "\n").encode())
            if since < self.compacted:
                err = _status(410, "Expired", "too old resource version")
                await response.write((json.dumps({"type": "ERROR", "object": err}) + "\n").encode())
                return response
            remaining = deadline - time.monotonic()
            if remaining <= 0 or drop.is_set():
                if drop.is_set() and request.transport is not None:
                    request.transport.close()  # an abrupt cut, not a clean end of stream
                return response
            waiters = {asyncio.ensure_future(changed.wait()), asyncio.ensure_future(drop.wait())}
            await asyncio.wait(waiters, timeout=min(remaining, 1.0), return_when="FIRST_COMPLETED")
            for task in waiters:
                task.cancel()

    async def _logs(self, request: web.Request, namespace: str, name: str) -> web.StreamResponse:
        lines = self.pod_logs.get((namespace, name), [])
        tail = request.query.get("tailLines")
        if tail:
            lines = lines[-int(tail) :]
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        for line in lines:
            await response.write((line + "\n").encode())
        if request.query.get("follow", "").lower() in ("true", "1"):
            # Followed logs stay open while the pod exists (bounded: 60 s).
            for _ in range(600):
                if ("Pod", namespace, name) not in self.objects or (self._drop and self._drop.is_set()):
                    break
                await asyncio.sleep(0.1)
        return response

    def _pod_metrics(self, pod: dict[str, Any]) -> dict[str, Any]:
        """One `PodMetrics` as metrics-server serves it (quantities in its own units)."""
        meta = pod.get("metadata") or {}
        ns, name = meta.get("namespace", "default"), meta.get("name", "")
        usage = self.pod_usage.get((ns, name), {})
        containers = [
            {
                "name": c.get("name", "main"),
                "usage": usage.get(c.get("name", "main"), {"cpu": "250m", "memory": "64Mi"}),
            }
            for c in (pod.get("spec") or {}).get("containers") or []
        ]
        return {
            "kind": "PodMetrics",
            "apiVersion": "metrics.k8s.io/v1beta1",
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": dict(meta.get("labels") or {}),
                "creationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "window": "15s",
            "containers": containers,
        }

    def _metrics(self, path: str) -> web.Response:
        if not self.metrics_enabled:
            # No metrics-server: the aggregated group is not registered at all.
            return web.json_response(
                _status(404, "NotFound", "the server could not find the requested resource"), status=404
            )
        if self.metrics_down:
            return web.json_response(
                _status(503, "ServiceUnavailable", "the server is currently unable to handle the request"),
                status=503,
            )
        parts = path.strip("/").split("/")
        # apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods/{name}
        if len(parts) == 7 and parts[3] == "namespaces" and parts[5] == "pods":
            ns, name = parts[4], parts[6]
            pod = self.objects.get(("Pod", ns, name))
            if pod is None or (pod.get("status") or {}).get("phase") != "Running":
                return web.json_response(
                    _status(404, "NotFound", f'podmetrics.metrics.k8s.io "{ns}/{name}" not found'), status=404
                )
            return web.json_response(self._pod_metrics(pod))
        # apis/metrics.k8s.io/v1beta1/pods and apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods: only
        # running pods have samples.
        if parts[3:] == ["pods"] or (len(parts) == 6 and parts[3] == "namespaces" and parts[5] == "pods"):
            only = parts[4] if len(parts) == 6 else None
            items = [
                self._pod_metrics(obj)
                for (kind, ns, _name), obj in sorted(self.objects.items())
                if kind == "Pod"
                and (only is None or ns == only)
                and (obj.get("status") or {}).get("phase") == "Running"
            ]
            return web.json_response(
                {
                    "kind": "PodMetricsList",
                    "apiVersion": "metrics.k8s.io/v1beta1",
                    "metadata": {},
                    "items": items,
                }
            )
        return web.json_response(_status(404, "NotFound", "not found"), status=404)


def running_status(spec: dict[str, Any]) -> dict[str, Any]:
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "phase": "Running",
        "podIP": "10.244.0.10",
        "startTime": started,
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [
            {
                "name": c.get("name", "main"),
                "image": c.get("image", ""),
                "ready": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": started}},
            }
            for c in spec.get("containers") or []
        ],
    }
