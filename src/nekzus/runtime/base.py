"""The container-runtime interface every runtime (Docker now, Kubernetes next) implements.

Handlers and discovery speak only to this interface, so a second runtime slots in beside Docker
without touching them. Errors are typed so the HTTP layer maps them to the API's error codes in one place.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from nekzus.errors import NekzusError

ContainerState = Literal[
    "running", "stopped", "paused", "restarting", "pending", "failed", "created", "exited"
]

# Docker ids are hex, names `[a-zA-Z0-9][a-zA-Z0-9_.-]*`; Kubernetes names are DNS labels. Anything
# else (slashes, dots-only, control characters) never reaches a runtime.
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,253}$")


def valid_container_id(value: str) -> bool:
    return bool(_ID_RE.fullmatch(value)) and ".." not in value


class RuntimeErrorBase(NekzusError):
    """Base of the container runtimes' errors; each subclass names its status and code."""

    code = "RUNTIME_ERROR"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message, code=self.code)


class RuntimeUnavailable(RuntimeErrorBase):
    code = "RUNTIME_UNAVAILABLE"
    status = 503


class ContainerNotFound(RuntimeErrorBase):
    """The caller is told only "container not found" (which ids or namespaces exist beyond its view is
    not its business); `detail` says which lookup failed, for logs."""

    code = "CONTAINER_NOT_FOUND"
    status = 404

    def __init__(self, detail: str = "") -> None:
        super().__init__("container not found")
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.code}: {self.detail or self.message}"


class AlreadyInState(RuntimeErrorBase):
    """Start of a running container / stop of a stopped one."""

    status = 409

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class OperationFailed(RuntimeErrorBase):
    code = "OPERATION_FAILED"
    status = 500


@dataclass(slots=True)
class PortMapping:
    private_port: int
    type: str = "tcp"
    ip: str | None = None
    public_port: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"privatePort": self.private_port, "type": self.type}
        if self.ip is not None:
            out["ip"] = self.ip
        if self.public_port is not None:
            out["publicPort"] = self.public_port
        return out


@dataclass(slots=True)
class ContainerInfo:
    """One container as the API's container list shows it."""

    id: str  # short (12 chars for Docker)
    name: str
    image: str
    state: str
    status: str
    created: int
    ports: list[PortMapping] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    runtime: str = "docker"
    namespace: str = ""
    full_id: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "image": self.image,
            "state": self.state,
            "status": self.status,
            "created": self.created,
            "ports": [p.to_json() for p in self.ports],
            "labels": dict(sorted(self.labels.items())),
            "runtime": self.runtime,
            "namespace": self.namespace,
        }


@dataclass(slots=True)
class LogLine:
    stream: Literal["stdout", "stderr"]
    line: str
    log_timestamp: str | None = None


@dataclass(slots=True)
class RuntimeEvent:
    """A container lifecycle event: action is Docker's (`start`, `die`, `stop`, `destroy`, ...)."""

    action: str
    container_id: str
    name: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    time: float = 0.0


@runtime_checkable
class ContainerRuntime(Protocol):
    """What every runtime offers. Ids are the runtime's own (Docker: id, short id or name)."""

    name: str

    async def ping(self) -> dict[str, Any]: ...

    async def list(self, *, all: bool = True, namespace: str | None = None) -> list[ContainerInfo]: ...

    async def inspect(self, container_id: str) -> dict[str, Any]: ...

    async def start(self, container_id: str) -> None: ...

    async def stop(self, container_id: str, timeout: int | None = None) -> None: ...

    async def restart(self, container_id: str, timeout: int | None = None) -> None: ...

    async def stats(self, container_id: str) -> dict[str, Any]: ...

    def logs(
        self,
        container_id: str,
        *,
        tail: int = 100,
        follow: bool = True,
        timestamps: bool = False,
        container: str | None = None,
    ) -> AsyncIterator[LogLine]:
        """Log lines; `container` picks one container of a Kubernetes pod (Docker ignores it)."""
        ...

    def events(self) -> AsyncIterator[RuntimeEvent]: ...

    async def close(self) -> None: ...
