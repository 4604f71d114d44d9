"""Compose export of existing containers: inspect each one and its image, then render one document.

A batch export renders what it can: a container that vanished or could not be inspected becomes a warning
at the top of the result (and the caller answers 206), while an unreachable daemon fails the whole export,
as does a batch in which no container could be read.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from nekzus.errors import NotFound
from nekzus.runtime.base import ContainerNotFound, RuntimeErrorBase, RuntimeUnavailable
from nekzus.runtime.compose import ComposeResult, ExportOptions, render, service_name

if TYPE_CHECKING:
    from nekzus.runtime.docker import DockerRuntime

Inspected = tuple[dict[str, Any], dict[str, Any] | None]


async def _inspect_with_image(docker: DockerRuntime, container_id: str) -> Inspected:
    info = await docker.inspect(container_id)
    try:
        image_info: dict[str, Any] | None = await docker.image_inspect(str(info.get("Image") or ""))
    except RuntimeErrorBase:
        image_info = None  # a removed image only costs the comparison with its defaults
    return info, image_info


async def export_one(
    docker: DockerRuntime, container_id: str, options: ExportOptions
) -> tuple[ComposeResult, str]:
    """The compose document of one container and its service name."""
    info, image_info = await _inspect_with_image(docker, container_id)
    result = render([(info, image_info)], options)
    return result, service_name(str(info.get("Name", "")) or container_id)


async def export_many(
    docker: DockerRuntime, container_ids: list[str], options: ExportOptions, stack: str
) -> tuple[ComposeResult, list[str]]:
    """One compose document for several containers, and the ones that could not be exported."""
    outcomes = await asyncio.gather(
        *(_inspect_with_image(docker, c) for c in container_ids), return_exceptions=True
    )
    items: list[Inspected] = []
    failures: list[str] = []
    for cid, outcome in zip(container_ids, outcomes, strict=True):
        if isinstance(outcome, RuntimeUnavailable):
            raise outcome
        if isinstance(outcome, ContainerNotFound):
            failures.append(f"{cid}: container not found")
        elif isinstance(outcome, BaseException):
            failures.append(f"{cid}: could not inspect container")
        else:
            items.append(outcome)
    if not items:
        raise NotFound("None of the containers could be exported", code="ALL_CONTAINERS_FAILED")
    result = render(items, options, stack=stack)
    result.warnings = failures + result.warnings
    return result, failures
