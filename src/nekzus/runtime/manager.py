"""The runtime manager (`services.domains.runtime`): which runtimes are configured, which is primary,
and which container is Nekzus itself (bulk operations must never touch it).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, cast

from nekzus.errors import Invalid
from nekzus.runtime.base import ContainerRuntime, RuntimeUnavailable

if TYPE_CHECKING:
    from nekzus.runtime.docker import DockerRuntime

log = logging.getLogger("nekzus.runtime")

_CGROUP_ID = re.compile(r"(?:docker[/-]|libpod-|crio-|containerd-|kubepods[^\n]*/)([0-9a-f]{64})")
_MOUNT_ID = re.compile(r"/(?:docker|containers)/containers/([0-9a-f]{64})/")


class UnknownRuntime(Invalid):
    """A runtime name other than the ones Nekzus drives."""

    def __init__(self, name: str) -> None:
        super().__init__("runtime must be 'docker' or 'kubernetes'", code="INVALID_RUNTIME")
        self.name = name


def detect_self(
    cgroup_path: str = "/proc/self/cgroup",
    mountinfo_path: str = "/proc/self/mountinfo",
    hostname: str | None = None,
) -> tuple[set[str], set[str]]:
    """Ids (or id prefixes) and names that identify the container Nekzus runs in, if any."""
    ids: set[str] = set()
    names: set[str] = set()
    for path, pattern in ((cgroup_path, _CGROUP_ID), (mountinfo_path, _MOUNT_ID)):
        try:
            text = Path(path).read_text(errors="replace")
        except OSError:
            continue
        ids.update(pattern.findall(text))
    host = os.environ.get("HOSTNAME", "") if hostname is None else hostname
    host = host.strip()
    if re.fullmatch(r"[0-9a-f]{12,64}", host):
        ids.add(host)
    elif host:
        names.add(host)
    return ids, names


class RuntimeManager:
    """Holds every configured runtime; the first registered one is primary."""

    def __init__(self, primary: str = "") -> None:
        self.runtimes: dict[str, ContainerRuntime] = {}
        self.primary: str = ""
        self.preferred = primary  # `runtimes.primary`; the first registered one when it is not there
        self.self_ids, self.self_names = detect_self()
        if self.self_ids or self.self_names:
            log.debug("own container candidates: ids=%s names=%s", self.self_ids, self.self_names)

    def add(self, runtime: ContainerRuntime) -> None:
        self.runtimes[runtime.name] = runtime
        if not self.primary or runtime.name == self.preferred:
            self.primary = runtime.name

    def get(self, name: str | None = None) -> ContainerRuntime:
        key = name or self.primary
        if key not in ("docker", "kubernetes"):
            raise UnknownRuntime(key)
        runtime = self.runtimes.get(key)
        if runtime is None:
            raise RuntimeUnavailable(f"{key} runtime is not enabled")
        return runtime

    @property
    def docker(self) -> DockerRuntime | None:
        return cast("DockerRuntime | None", self.runtimes.get("docker"))

    def is_self(self, container_id: str, name: str = "") -> bool:
        """True for Nekzus' own container (by id prefix either way, or by exact name)."""
        cid = container_id.lower()
        for own in self.self_ids:
            if cid and (own.startswith(cid) or cid.startswith(own)):
                return True
        return bool(name) and name.lstrip("/") in self.self_names

    async def close(self) -> None:
        for runtime in self.runtimes.values():
            await runtime.close()
