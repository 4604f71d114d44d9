"""The Docker runtime over the Engine API (aiodocker as the HTTP transport; never the CLI).

Only the plain Engine endpoints are used, so dockerd and Podman's Docker-compatible service both work.
aiodocker's public methods serve the plain reads; the few calls that need what those methods hide (the
304 "already in that state" answer of start/stop, stdout vs stderr of a log frame, the raw event
stream) go through `_engine`, which sends the request on the client's public `session`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, cast

import aiohttp
from aiodocker import Docker
from aiodocker.exceptions import DockerError
from yarl import URL

from nekzus.runtime.base import (
    AlreadyInState,
    ContainerInfo,
    ContainerNotFound,
    LogLine,
    OperationFailed,
    PortMapping,
    RuntimeEvent,
    RuntimeUnavailable,
)

log = logging.getLogger("nekzus.runtime.docker")

MAX_FRAME = 1 << 20  # log frames above 1 MiB are skipped (a runaway line must not fill memory)
_SHORT = aiohttp.ClientTimeout(total=30)
_STREAM = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=None)


def docker_url(socket_path: str) -> str:
    """Turn `unix:///x.sock`, `/x.sock` or `tcp://host:port` into what aiodocker expects."""
    value = (socket_path or "").strip() or "unix:///var/run/docker.sock"
    if value.startswith("/"):
        return "unix://" + value
    if value.startswith("tcp://"):
        return "http://" + value[len("tcp://") :]
    return value


def short_id(container_id: str) -> str:
    return container_id[:12]


def _map_error(exc: BaseException, container_id: str = "") -> Exception:
    if isinstance(exc, DockerError):
        if exc.status == 404:
            return ContainerNotFound(f"container not found: {container_id}" if container_id else exc.message)
        if exc.status == 900:
            return RuntimeUnavailable(f"Docker daemon unreachable: {exc.message}")
        if exc.status in (409, 500) and "is not running" in exc.message:
            return AlreadyInState(exc.message, "CONTAINER_NOT_RUNNING")
        return OperationFailed(exc.message)
    if isinstance(exc, aiohttp.ClientError | OSError | TimeoutError):
        return RuntimeUnavailable(f"Docker daemon unreachable: {type(exc).__name__}")
    return OperationFailed(str(exc) or type(exc).__name__)


# What a container listing needs from each entry of `GET /containers/json`.
_LIST_KEYS = ("Id", "Names", "Image", "State", "Status", "Created", "Ports", "Labels")


def container_name(raw: dict[str, Any]) -> str:
    names = raw.get("Names") or []
    if names:
        return str(names[0]).lstrip("/")
    return str(raw.get("Name", "")).lstrip("/")


def _info_from_list(raw: dict[str, Any]) -> ContainerInfo:
    ports: list[PortMapping] = []
    seen: set[tuple[Any, ...]] = set()
    for p in raw.get("Ports") or []:
        key = (p.get("IP"), p.get("PrivatePort"), p.get("PublicPort"), p.get("Type"))
        if key in seen:
            continue
        seen.add(key)
        ports.append(
            PortMapping(
                private_port=int(p.get("PrivatePort") or 0),
                type=str(p.get("Type") or "tcp"),
                ip=p.get("IP") or None,
                public_port=int(p["PublicPort"]) if p.get("PublicPort") else None,
            )
        )
    ports.sort(key=lambda m: (m.private_port, m.type, m.ip or "", m.public_port or 0))
    return ContainerInfo(
        id=short_id(str(raw.get("Id", ""))),
        full_id=str(raw.get("Id", "")),
        name=container_name(raw),
        image=str(raw.get("Image", "")),
        state=str(raw.get("State", "")),
        status=str(raw.get("Status", "")),
        created=int(raw.get("Created") or 0),
        ports=ports,
        labels={str(k): str(v) for k, v in (raw.get("Labels") or {}).items()},
        runtime="docker",
        namespace="",
    )


def compute_stats(container_id: str, first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """Container stats from two consecutive samples: CPU from the deltas, memory and network raw."""
    cpu1, cpu2 = first.get("cpu_stats") or {}, second.get("cpu_stats") or {}
    total1 = (cpu1.get("cpu_usage") or {}).get("total_usage") or 0
    total2 = (cpu2.get("cpu_usage") or {}).get("total_usage") or 0
    sys1, sys2 = cpu1.get("system_cpu_usage") or 0, cpu2.get("system_cpu_usage") or 0
    percpu = (cpu2.get("cpu_usage") or {}).get("percpu_usage") or []
    cores = len(percpu) or int(cpu2.get("online_cpus") or 0) or 1
    cpu_delta, sys_delta = total2 - total1, sys2 - sys1
    usage = cores_used = 0.0
    if cpu_delta > 0 and sys_delta > 0:
        cores_used = cpu_delta / sys_delta * cores
        usage = cores_used * 100.0
    mem = second.get("memory_stats") or {}
    used = int(mem.get("usage") or 0)
    limit = int(mem.get("limit") or 0)
    rx = tx = 0
    for net in (second.get("networks") or {}).values():
        rx += int(net.get("rx_bytes") or 0)
        tx += int(net.get("tx_bytes") or 0)
    return {
        "containerId": short_id(container_id),
        "cpu": {"usage": round(usage, 2), "coresUsed": round(cores_used, 4), "totalCores": float(cores)},
        "memory": {
            "usage": round(used / limit * 100.0, 2) if limit else 0.0,
            "used": used,
            "limit": limit,
            "available": max(limit - used, 0),
        },
        "network": {"rx": rx, "tx": tx},
        "timestamp": int(time.time()),
    }


class DockerRuntime:
    """`ContainerRuntime` for a Docker (or Docker-API) daemon."""

    name = "docker"

    def __init__(self, socket_path: str = "") -> None:
        self.url = docker_url(socket_path)
        self._docker: Docker | None = None

    @property
    def docker(self) -> Docker:
        if self._docker is None:
            self._docker = Docker(url=self.url, api_version="v1.41")
        return self._docker

    async def close(self) -> None:
        if self._docker is not None:
            with contextlib.suppress(Exception):
                await self._docker.close()
            self._docker = None

    @contextlib.asynccontextmanager
    async def _engine(
        self, method: str, path: str, *, params: dict[str, str] | None = None, timeout: aiohttp.ClientTimeout
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """One Engine API request on the client's session; an error status raises `DockerError` (as
        aiodocker's own methods do), an unreachable daemon `DockerError(900)`."""
        docker = self.docker
        url = URL(f"{docker.docker_host}/{docker.api_version}/{path}")
        try:
            response = await docker.session.request(method, url, params=params, timeout=timeout)
        except aiohttp.ClientConnectionError as exc:
            raise DockerError(900, f"Cannot connect to Docker Engine [{exc}]") from exc
        try:
            if response.status >= 400:
                body = await response.read()
                try:
                    message = str(json.loads(body).get("message") or "")
                except (ValueError, AttributeError):
                    message = body.decode("utf-8", "replace")
                raise DockerError(response.status, message or f"HTTP {response.status}")
            yield response
        finally:
            response.release()

    async def _call(self, what: Any, container_id: str = "") -> Any:
        """Await one aiodocker call within the short timeout, mapping its errors to runtime errors."""
        try:
            async with asyncio.timeout(_SHORT.total):
                return await what
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise _map_error(exc, container_id) from exc

    async def _action(
        self, container_id: str, action: str, params: dict[str, str], timeout: aiohttp.ClientTimeout
    ) -> int:
        """POST an action; returns the HTTP status (304 = already in that state)."""
        try:
            async with self._engine(
                "POST", f"containers/{container_id}/{action}", params=params, timeout=timeout
            ) as response:
                await response.read()
                return response.status
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise _map_error(exc, container_id) from exc

    async def ping(self) -> dict[str, Any]:
        version = await self._call(self.docker.version())
        return {
            "version": version.get("Version", ""),
            "apiVersion": version.get("ApiVersion", ""),
            "os": version.get("Os", ""),
        }

    async def list(self, *, all: bool = True, namespace: str | None = None) -> list[ContainerInfo]:
        found = await self._call(self.docker.containers.list(all=all))
        infos = [_info_from_list({k: c[k] for k in _LIST_KEYS if k in c}) for c in found]
        infos.sort(key=lambda c: (c.name, c.id))
        return infos

    async def inspect(self, container_id: str) -> dict[str, Any]:
        data = await self._call(self.docker.containers.container(container_id).show(), container_id)
        return dict(data)

    async def image_inspect(self, image: str) -> dict[str, Any]:
        return dict(await self._call(self.docker.images.inspect(image), image))

    async def start(self, container_id: str) -> None:
        status = await self._action(container_id, "start", {}, _SHORT)
        if status == 304:
            raise AlreadyInState("container is already running", "CONTAINER_ALREADY_STARTED")

    async def stop(self, container_id: str, timeout: int | None = None) -> None:
        params = {"t": str(timeout)} if timeout is not None else {}
        wait = aiohttp.ClientTimeout(total=(timeout if timeout is not None else 10) + 30)
        status = await self._action(container_id, "stop", params, wait)
        if status == 304:
            raise AlreadyInState("container is already stopped", "CONTAINER_ALREADY_STOPPED")

    async def restart(self, container_id: str, timeout: int | None = None) -> None:
        params = {"t": str(timeout)} if timeout is not None else {}
        wait = aiohttp.ClientTimeout(total=(timeout if timeout is not None else 10) + 30)
        await self._action(container_id, "restart", params, wait)

    async def stats(self, container_id: str) -> dict[str, Any]:
        """Two consecutive samples of the stats stream (Docker samples once a second)."""
        samples: list[dict[str, Any]] = []
        try:
            async with asyncio.timeout(5.0):
                # aiodocker types the stream as an iterator; it is an async generator, closed here so the
                # daemon's stats connection ends as soon as two samples are in.
                stream = cast(
                    AsyncGenerator[dict[str, Any], None],
                    self.docker.containers.container(container_id).stats(stream=True, timeout=_STREAM),
                )
                async with contextlib.aclosing(stream):
                    async for sample in stream:
                        samples.append(sample)
                        if len(samples) >= 2:
                            break
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            if not samples:
                raise OperationFailed("timed out reading container stats") from None
        except Exception as exc:
            raise _map_error(exc, container_id) from exc
        if not samples:
            raise OperationFailed("no stats sample returned")
        first = samples[0]
        second = samples[1] if len(samples) > 1 else samples[0]
        if len(samples) == 1 and first.get("precpu_stats"):
            first = {"cpu_stats": first["precpu_stats"]}
        return compute_stats(str(second.get("id") or container_id), first, second)

    async def logs(
        self,
        container_id: str,
        *,
        tail: int = 100,
        follow: bool = True,
        timestamps: bool = False,
        container: str | None = None,
    ) -> AsyncIterator[LogLine]:
        info = await self.inspect(container_id)
        tty = bool((info.get("Config") or {}).get("Tty"))
        params = {
            "stdout": "1",
            "stderr": "1",
            "follow": "1" if follow else "0",
            "tail": str(tail),
            "timestamps": "1" if timestamps else "0",
        }
        try:
            async with self._engine(
                "GET", f"containers/{info['Id']}/logs", params=params, timeout=_STREAM
            ) as response:
                reader = response.content
                if tty:
                    async for raw in reader:
                        yield _log_line("stdout", raw, timestamps)
                    return
                pending: dict[str, bytes] = {"stdout": b"", "stderr": b""}
                while True:
                    try:
                        header = await reader.readexactly(8)
                    except asyncio.IncompleteReadError:
                        break
                    kind, size = header[0], struct.unpack(">I", header[4:8])[0]
                    payload = await reader.readexactly(size) if size <= MAX_FRAME else None
                    if payload is None:
                        await _skip(reader, size)
                        continue
                    stream = "stderr" if kind == 2 else "stdout"
                    data = pending[stream] + payload
                    *lines, rest = data.split(b"\n")
                    pending[stream] = rest
                    for raw in lines:
                        yield _log_line(stream, raw, timestamps)
                for stream, rest in pending.items():
                    if rest:
                        yield _log_line(stream, rest, timestamps)
        except asyncio.CancelledError:
            raise
        except (ContainerNotFound, RuntimeUnavailable, OperationFailed):
            raise
        except Exception as exc:
            raise _map_error(exc, container_id) from exc

    async def events(self) -> AsyncIterator[RuntimeEvent]:
        """Container events until the stream ends or the daemon goes away (callers reconnect)."""
        params = {"filters": json.dumps({"type": ["container"]})}
        try:
            async with self._engine("GET", "events", params=params, timeout=_STREAM) as response:
                async for raw in response.content:
                    if not raw.strip():
                        continue
                    try:
                        item = json.loads(raw)
                    except ValueError:
                        continue
                    actor = item.get("Actor") or {}
                    attributes = dict(actor.get("Attributes") or {})
                    name = str(attributes.pop("name", ""))
                    attributes.pop("image", None)
                    action = str(item.get("Action") or item.get("status") or "")
                    yield RuntimeEvent(
                        action=action.split(":", 1)[0],
                        container_id=str(actor.get("ID") or item.get("id") or ""),
                        name=name,
                        labels={str(k): str(v) for k, v in attributes.items()},
                        time=float(item.get("time") or time.time()),
                    )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise _map_error(exc) from exc


async def _skip(reader: aiohttp.StreamReader, size: int) -> None:
    while size > 0:
        chunk = await reader.read(min(size, 65536))
        if not chunk:
            return
        size -= len(chunk)


def _log_line(stream: str, raw: bytes, timestamps: bool) -> LogLine:
    text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
    stamp: str | None = None
    if timestamps:
        head, sep, rest = text.partition(" ")
        if sep and head[:4].isdigit() and "T" in head:
            stamp, text = head, rest
    return LogLine(stream="stderr" if stream == "stderr" else "stdout", line=text, log_timestamp=stamp)
