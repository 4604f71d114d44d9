"""Export containers to Docker Compose. Docker only.

Previews and exports return the same JSON; batch export can also be a zip with the compose file and
`.env.example`. Exporting with `sanitize_secrets=false` reveals secrets, so it needs `write:*`.
"""

from __future__ import annotations

import io
import zipfile
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Body, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from nekzus.api.containers import _check_id, install_catch_all
from nekzus.api.deps import services_of
from nekzus.api.models import ERROR_RESPONSES
from nekzus.api.security import require
from nekzus.auth.principal import Principal
from nekzus.http.errors import ApiError
from nekzus.services import Services

if TYPE_CHECKING:
    from nekzus.runtime.docker import DockerRuntime

router = APIRouter(prefix="/api/v1/containers", tags=["export"], responses=ERROR_RESPONSES)


class ExportIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    sanitize_secrets: bool = Field(True, validation_alias=AliasChoices("sanitize_secrets", "sanitizeSecrets"))
    include_volumes: bool = Field(True, validation_alias=AliasChoices("include_volumes", "includeVolumes"))
    include_networks: bool = Field(True, validation_alias=AliasChoices("include_networks", "includeNetworks"))


class BatchExportIn(ExportIn):
    container_ids: list[str] = Field(validation_alias=AliasChoices("container_ids", "containerIds"))
    stack_name: str = Field("exported-stack", validation_alias=AliasChoices("stack_name", "stackName"))


class ExportOut(BaseModel):
    format: str
    content: str
    filename: str
    warnings: list[str]
    env_content: str | None = None
    env_filename: str | None = None
    envContent: str | None = None
    envFilename: str | None = None


def _parse(model: type[BaseModel], body: Any) -> Any:
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise ApiError(400, "INVALID_REQUEST_BODY", "Request body must be a JSON object")
    try:
        return model.model_validate(body)
    except Exception as exc:
        first: dict[str, Any] = getattr(exc, "errors", lambda: [{}])()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise ApiError(400, "INVALID_REQUEST_BODY", f"{where}: {first.get('msg', 'invalid')}") from None


def _guard_secrets(request: Request, principal: Principal, options: ExportIn) -> None:
    if not options.sanitize_secrets and not principal.allows("write:*"):
        raise ApiError(403, "FORBIDDEN", "Exporting unsanitized secrets requires write:* scope")


def _docker(request: Request) -> DockerRuntime:
    manager = services_of(request).domains.runtime
    docker = manager.docker if manager is not None else None
    if docker is None:
        raise ApiError(503, "RUNTIME_UNAVAILABLE", "Export needs the Docker runtime")
    return docker


def _result(result: Any, filename: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "format": "compose",
        "content": result.content,
        "filename": filename,
        "warnings": result.warnings,
    }
    if result.env_content:
        out.update(
            env_content=result.env_content,
            env_filename=".env.example",
            envContent=result.env_content,
            envFilename=".env.example",
        )
    return out


async def _batch(
    request: Request, principal: Principal, body: Any
) -> tuple[Any, BatchExportIn, list[str], int]:
    options: BatchExportIn = _parse(BatchExportIn, body)
    if not options.container_ids:
        raise ApiError(400, "EMPTY_CONTAINER_LIST", "container_ids cannot be empty")
    if len(options.container_ids) > 100:
        raise ApiError(400, "INVALID_REQUEST_BODY", "at most 100 containers per export")
    for cid in options.container_ids:
        _check_id(cid)
    _guard_secrets(request, principal, options)
    from nekzus.runtime.compose import ExportOptions
    from nekzus.runtime.export import export_many

    ids = list(dict.fromkeys(options.container_ids))
    export = ExportOptions(options.sanitize_secrets, options.include_volumes, options.include_networks)
    result, failures = await export_many(_docker(request), ids, export, options.stack_name)
    return result, options, failures, 206 if failures else 200


@router.post("/batch/export/preview", response_model=ExportOut, summary="Preview a multi-container export")
async def batch_preview(
    request: Request, body: Any = Body(None), principal: Principal = Depends(require())
) -> JSONResponse:
    result, options, _, status = await _batch(request, principal, body)
    from nekzus.runtime.compose import project_name

    return JSONResponse(
        _result(result, f"{project_name(options.stack_name)}-compose.yml"), status_code=status
    )


@router.post("/batch/export", response_model=ExportOut, summary="Export several containers (JSON or zip)")
async def batch_export(
    request: Request,
    format: str | None = Query(None, description="zip for a zip archive"),
    body: Any = Body(None),
    principal: Principal = Depends(require()),
) -> Response:
    if format not in (None, "", "json", "zip"):
        raise ApiError(400, "INVALID_FORMAT", "format must be 'json' or 'zip'")
    result, options, _, status = await _batch(request, principal, body)
    from nekzus.runtime.compose import project_name

    stack = project_name(options.stack_name)
    if format != "zip":
        return JSONResponse(_result(result, f"{stack}-compose.yml"), status_code=status)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("docker-compose.yml", result.content)
        if result.env_content:
            archive.writestr(".env.example", result.env_content)
        if result.warnings:
            archive.writestr("WARNINGS.txt", "\n".join(result.warnings) + "\n")
    return Response(
        buffer.getvalue(),
        status_code=status,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{stack}.zip"'},
    )


async def _single(request: Request, principal: Principal, container_id: str, body: Any) -> dict[str, Any]:
    from nekzus.runtime.compose import ExportOptions
    from nekzus.runtime.export import export_one

    _check_id(container_id)
    options: ExportIn = _parse(ExportIn, body)
    _guard_secrets(request, principal, options)
    export = ExportOptions(options.sanitize_secrets, options.include_volumes, options.include_networks)
    result, name = await export_one(_docker(request), container_id, export)
    return _result(result, f"{name}-compose.yml")


@router.get(
    "/{containerId}/export/preview",
    response_model=ExportOut,
    response_model_exclude_none=True,
    summary="Preview a container export",
)
async def preview_get(
    request: Request,
    containerId: str,
    sanitize_secrets: bool = Query(True),
    include_volumes: bool = Query(True),
    include_networks: bool = Query(True),
    principal: Principal = Depends(require()),
) -> dict[str, Any]:
    body = {
        "sanitize_secrets": sanitize_secrets,
        "include_volumes": include_volumes,
        "include_networks": include_networks,
    }
    return await _single(request, principal, containerId, body)


@router.post(
    "/{containerId}/export/preview",
    response_model=ExportOut,
    response_model_exclude_none=True,
    summary="Preview a container export",
)
async def preview_post(
    request: Request, containerId: str, body: Any = Body(None), principal: Principal = Depends(require())
) -> dict[str, Any]:
    return await _single(request, principal, containerId, body)


@router.post(
    "/{containerId}/export",
    response_model=ExportOut,
    response_model_exclude_none=True,
    summary="Export a container to Compose",
)
async def export(
    request: Request, containerId: str, body: Any = Body(None), principal: Principal = Depends(require())
) -> dict[str, Any]:
    return await _single(request, principal, containerId, body)


def install(api: FastAPI, services: Services) -> None:
    if services.domains.runtime is None:
        return
    api.include_router(router)
    install_catch_all(api)
